//! The audit of operator actions: who did what to which projection, when, and what came of it.

use chrono::{DateTime, Utc};

use crate::{Error, Store, StoreTx};

/// One recorded operator action.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    /// e.g. `dlq.retry`, `dlq.skip`, `dlq.purge`, `replay`, `rebuild.cutover`.
    pub action: String,
    pub projection: String,
    /// What the action was aimed at (a key, dead letter ids, positions).
    pub target: serde_json::Value,
    pub reason: Option<String>,
    pub outcome: serde_json::Value,
}

/// An action to record, in the same transaction as the action itself.
#[derive(Debug, Clone)]
pub struct NewAuditEntry<'a> {
    pub actor: &'a str,
    pub action: &'a str,
    pub projection: &'a str,
    pub target: serde_json::Value,
    pub reason: Option<&'a str>,
    pub outcome: serde_json::Value,
}

impl StoreTx {
    /// Records an action; it commits or rolls back with the action.
    pub async fn audit(&mut self, entry: NewAuditEntry<'_>) -> Result<i64, Error> {
        Ok(sqlx::query_scalar!(
            "INSERT INTO eventline_audit (actor, action, projection, target, reason, outcome)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
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
    /// The latest `limit` actions (on `projection` when given), oldest first.
    pub async fn audit_log(&self, projection: Option<&str>, limit: i64) -> Result<Vec<AuditEntry>, Error> {
        let mut entries = sqlx::query_as!(
            AuditEntry,
            "SELECT id, at, actor, action, projection, target, reason, outcome FROM eventline_audit
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
