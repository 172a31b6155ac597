//! The audit of operator actions: who did what to which projection, when, from where, and what
//! came of it. Entries form a hash chain (see the migration `audit_chain`): [`Store::verify_audit`]
//! finds an entry edited, deleted or slipped in after it was written.

use chrono::{DateTime, Utc};

use crate::{Error, Store, StoreTx};

/// One recorded operator action.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    /// e.g. `dlq.retry`, `dlq.skip`, `dlq.purge`, `replay`, `rebuild.cutover`, `keys.create`.
    pub action: String,
    /// The projection acted on; `None` for actions on API keys.
    pub projection: Option<String>,
    /// What the action was aimed at (a key, dead letter ids, positions).
    pub target: serde_json::Value,
    pub reason: Option<String>,
    pub outcome: serde_json::Value,
    /// The client that recorded it: its application name and address (none before the chain).
    pub origin: Option<String>,
}

/// An action to record, in the same transaction as the action itself.
#[derive(Debug, Clone)]
pub struct NewAuditEntry<'a> {
    pub actor: &'a str,
    pub action: &'a str,
    /// The projection acted on; `None` for actions on something else (an API key).
    pub projection: Option<&'a str>,
    pub target: serde_json::Value,
    pub reason: Option<&'a str>,
    pub outcome: serde_json::Value,
}

impl StoreTx {
    /// Records an action at the head of the chain; it commits or rolls back with the action.
    /// Concurrent actions wait for each other's commit here, so the chain has one order.
    pub async fn audit(&mut self, entry: NewAuditEntry<'_>) -> Result<i64, Error> {
        Ok(sqlx::query_scalar!(
            r#"SELECT eventline_audit_append($1, $2, $3, $4, $5, $6) AS "id!""#,
            entry.actor,
            entry.action,
            entry.projection,
            entry.target,
            entry.reason,
            entry.outcome
        )
        .fetch_one(&mut *self.tx)
        .await?)
    }
}

impl Store {
    /// Records what happens outside the database (a read of personal data), on its own.
    pub async fn audit_alone(&self, entry: NewAuditEntry<'_>) -> Result<i64, Error> {
        let mut tx = self.begin().await?;
        let id = tx.audit(entry).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// The latest `limit` actions (on `projection` when given), oldest first.
    pub async fn audit_log(&self, projection: Option<&str>, limit: i64) -> Result<Vec<AuditEntry>, Error> {
        let mut entries = sqlx::query_as!(
            AuditEntry,
            "SELECT id, at, actor, action, projection, target, reason, outcome, origin FROM eventline_audit
             WHERE ($1::text IS NULL OR projection = $1) ORDER BY id DESC LIMIT $2",
            projection,
            limit
        )
        .fetch_all(&self.pool)
        .await?;
        entries.reverse();
        Ok(entries)
    }
}

/// Which audit entries to read: each filter given narrows them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub projection: Option<String>,
    pub actor: Option<String>,
    /// The action's name starts with this (`dlq.`, `console.`, `rebuild.cutover`).
    pub action_prefix: Option<String>,
    pub limit: i64,
}

impl Store {
    /// The latest `filter.limit` entries the filter keeps, newest first.
    pub async fn find_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, Error> {
        Ok(sqlx::query_as!(
            AuditEntry,
            "SELECT id, at, actor, action, projection, target, reason, outcome, origin FROM eventline_audit
             WHERE ($1::text IS NULL OR projection = $1) AND ($2::text IS NULL OR actor = $2)
               AND ($3::text IS NULL OR starts_with(action, $3))
             ORDER BY id DESC LIMIT $4",
            filter.projection,
            filter.actor,
            filter.action_prefix,
            filter.limit
        )
        .fetch_all(&self.pool)
        .await?)
    }
}

/// What [`Store::verify_audit`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditVerification {
    /// Entries in the chain.
    pub entries: i64,
    /// Entries written before the chain existed, which nothing can verify.
    pub before_the_chain: i64,
    /// The chain's last hash, hex: write it down elsewhere to detect a chain rewritten whole.
    pub head: String,
    /// The first entry that does not verify, and why; `None` when the chain is intact.
    pub broken: Option<AuditBreak>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditBreak {
    /// The entry's id, or `None` where entries are missing after the last one.
    pub id: Option<i64>,
    pub reason: String,
}

impl Store {
    /// Recomputes every chained entry's hash and checks each links to the one before it, in
    /// chain order, and the last to the stored head.
    pub async fn verify_audit(&self) -> Result<AuditVerification, Error> {
        let head =
            sqlx::query!("SELECT seq, hash, legacy_through FROM eventline_audit_head").fetch_one(&self.pool).await?;
        let rows = sqlx::query!(
            r#"SELECT id AS "id!", seq, prev_hash, row_hash,
                      row_hash IS NOT DISTINCT FROM eventline_audit_hash(prev_hash, seq, at, actor, action, projection,
                          target, reason, outcome, origin) AS "intact!"
               FROM eventline_audit WHERE id > $1 ORDER BY seq NULLS LAST, id"#,
            head.legacy_through
        )
        .fetch_all(&self.pool)
        .await?;
        let before_the_chain = sqlx::query_scalar!(
            r#"SELECT count(*) AS "count!" FROM eventline_audit WHERE id <= $1"#,
            head.legacy_through
        )
        .fetch_one(&self.pool)
        .await?;
        let mut previous = (0i64, vec![0u8; 32]);
        let mut broken = None;
        for row in &rows {
            let reason = match (row.seq, &row.prev_hash) {
                (None, _) => Some("it is not in the chain: written around eventline_audit_append".to_string()),
                (Some(seq), _) if seq == previous.0 + 2 => Some(format!("entry {} before it is missing", seq - 1)),
                (Some(seq), _) if seq > previous.0 + 2 => {
                    Some(format!("entries {} to {} before it are missing", previous.0 + 1, seq - 1))
                }
                (_, prev) if prev.as_deref() != Some(previous.1.as_slice()) => {
                    Some("it does not link to the entry before it (one was changed or slipped in)".to_string())
                }
                _ if !row.intact => Some("its contents changed after it was written".to_string()),
                _ => None,
            };
            if let Some(reason) = reason {
                broken = Some(AuditBreak { id: Some(row.id), reason });
                break;
            }
            previous = (row.seq.unwrap_or_default(), row.row_hash.clone().unwrap_or_default());
        }
        if broken.is_none() && (previous.0 != head.seq || previous.1 != head.hash) {
            broken = Some(AuditBreak {
                id: None,
                reason: if previous.0 < head.seq {
                    format!(
                        "the chain ends at entry {} but its head is entry {}: the last entries were removed",
                        previous.0, head.seq
                    )
                } else {
                    format!("the chain ends at entry {} but its head is entry {}: entries were added around eventline_audit_append", previous.0, head.seq)
                },
            });
        }
        Ok(AuditVerification {
            entries: rows.len() as i64,
            before_the_chain,
            head: head.hash.iter().map(|b| format!("{b:02x}")).collect(),
            broken,
        })
    }
}
