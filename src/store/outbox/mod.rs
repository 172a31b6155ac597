//! The transactional outbox: a table in the upstream service's own database, read by the relay.

use std::time::Duration;

use sqlx::postgres::PgListener;

use crate::{Error, Store, StoreTx};

/// The schema the upstream database needs (also shipped for people's own migration tools).
pub const INSTALL_SQL: &str = include_str!("install.sql");
/// The channel the insert trigger notifies.
pub const CHANNEL: &str = "eventline_outbox";

/// A committed, unpublished row the relay may publish now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    pub id: i64,
    pub event_key: Option<String>,
    /// The event as JSON text.
    pub event: String,
}

impl Store {
    /// Creates the outbox table, its indexes and its notify trigger (idempotent).
    pub async fn install_outbox(&self) -> Result<(), Error> {
        sqlx::raw_sql(INSTALL_SQL).execute(&self.pool).await?;
        Ok(())
    }

    /// A listener woken when outbox rows commit.
    pub async fn outbox_listener(&self) -> Result<OutboxListener, Error> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(CHANNEL).await?;
        Ok(OutboxListener { listener })
    }

    /// Whether this database has an outbox.
    pub async fn has_outbox(&self) -> Result<bool, Error> {
        Ok(sqlx::query_scalar!(r#"SELECT to_regclass('eventline_outbox') IS NOT NULL AS "exists!""#)
            .fetch_one(&self.pool)
            .await?)
    }

    /// The unpublished rows whose event is about `subject`: of a type in `subject_fields` (type,
    /// data field naming its subject) with `subject` in that field.
    pub async fn unpublished_outbox_about(
        &self,
        subject_fields: &[(String, String)],
        subject: &str,
    ) -> Result<Vec<(i64, serde_json::Value)>, Error> {
        let (types, fields): (Vec<String>, Vec<String>) = subject_fields.iter().cloned().unzip();
        let rows = sqlx::query!(
            "SELECT o.id, o.event FROM eventline_outbox o
             WHERE o.published_at IS NULL AND EXISTS (
                 SELECT 1 FROM unnest($1::text[], $2::text[]) AS s(type, field)
                 WHERE o.event ->> 'type' = s.type AND o.event -> 'data' ->> s.field = $3)
             ORDER BY o.id",
            &types,
            &fields,
            subject
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|row| (row.id, row.event)).collect())
    }

    /// Replaces unpublished rows' events (by id) with `events` and sets them aside with `error`:
    /// what erasing their subject left of them, never to be published as they were.
    pub async fn set_outbox_rows_aside(&self, events: &[(i64, serde_json::Value)], error: &str) -> Result<u64, Error> {
        let (ids, events): (Vec<i64>, Vec<serde_json::Value>) = events.iter().cloned().unzip();
        let changed = sqlx::query!(
            "UPDATE eventline_outbox o SET event = r.event, failed_at = coalesce(o.failed_at, now()), last_error = $3
             FROM unnest($1::bigint[], $2::jsonb[]) AS r(id, event) WHERE o.id = r.id AND o.published_at IS NULL",
            &ids,
            &events,
            error
        )
        .execute(&self.pool)
        .await?;
        Ok(changed.rows_affected())
    }

    /// Counts of the outbox's rows: (unpublished, failed).
    pub async fn outbox_backlog(&self) -> Result<(i64, i64), Error> {
        let backlog = self.outbox_pending().await?;
        Ok((backlog.unpublished, backlog.failed))
    }

    /// The rows not yet published (through the partial index: published rows are not read).
    pub async fn outbox_pending(&self) -> Result<OutboxBacklog, Error> {
        let row = sqlx::query!(
            r#"SELECT count(*) AS "unpublished!",
                      count(*) FILTER (WHERE failed_at IS NOT NULL) AS "failed!",
                      EXTRACT(EPOCH FROM now() - min(created_at))::float8 AS oldest_seconds
               FROM eventline_outbox WHERE published_at IS NULL"#
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(OutboxBacklog {
            unpublished: row.unpublished,
            failed: row.failed,
            oldest_seconds: row.oldest_seconds.unwrap_or(0.0).max(0.0),
        })
    }
}

/// Writes events (each a structured-mode CloudEvent) to the outbox on `connection`: in the
/// caller's transaction when it is one, so they are published if and only if it commits.
pub async fn write_outbox(connection: &mut sqlx::PgConnection, events: &[serde_json::Value]) -> Result<(), Error> {
    sqlx::query!("INSERT INTO eventline_outbox (event) SELECT * FROM unnest($1::jsonb[])", events)
        .execute(connection)
        .await?;
    Ok(())
}

/// What waits in the outbox.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OutboxBacklog {
    /// Rows not yet published, failed ones included.
    pub unpublished: i64,
    /// Rows the relay refused, which hold their key's later rows.
    pub failed: i64,
    /// Age of the oldest unpublished row; 0 when there is none.
    pub oldest_seconds: f64,
}

impl StoreTx {
    /// Locks up to `limit` unpublished rows (skipping rows other relays hold) and returns those
    /// that may go out now, in id order: a row waits while an earlier unpublished row of its key is
    /// held by another relay or failed, so each key's rows are published in insertion order.
    pub async fn claim_outbox(&mut self, limit: i64) -> Result<Vec<OutboxRow>, Error> {
        Ok(sqlx::query_as!(
            OutboxRow,
            r#"WITH claimed AS (
                   SELECT id, event_key, event FROM eventline_outbox
                   WHERE published_at IS NULL AND failed_at IS NULL
                   ORDER BY id LIMIT $1
                   FOR UPDATE SKIP LOCKED
               )
               SELECT c.id AS "id!", c.event_key, c.event::text AS "event!"
               FROM claimed c
               WHERE NOT EXISTS (
                   SELECT 1 FROM eventline_outbox e
                   WHERE e.event_key = c.event_key AND e.published_at IS NULL AND e.id < c.id
                     AND e.id NOT IN (SELECT id FROM claimed)
               )
               ORDER BY c.id"#,
            limit
        )
        .fetch_all(&mut *self.tx)
        .await?)
    }

    pub async fn mark_outbox_published(&mut self, ids: &[i64]) -> Result<(), Error> {
        if ids.is_empty() {
            return Ok(());
        }
        sqlx::query!("UPDATE eventline_outbox SET published_at = now() WHERE id = ANY($1)", ids)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    /// Replaces rows' events (by id) with what was published in their place: their personal data
    /// sealed.
    pub async fn replace_outbox_events(&mut self, events: &[(i64, serde_json::Value)]) -> Result<(), Error> {
        if events.is_empty() {
            return Ok(());
        }
        let (ids, events): (Vec<i64>, Vec<serde_json::Value>) = events.iter().cloned().unzip();
        sqlx::query!(
            "UPDATE eventline_outbox o SET event = r.event
             FROM unnest($1::bigint[], $2::jsonb[]) AS r(id, event) WHERE o.id = r.id",
            &ids,
            &events
        )
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// Sets a row aside: it failed validation; its key's later rows wait behind it.
    pub async fn mark_outbox_failed(&mut self, id: i64, error: &str) -> Result<(), Error> {
        sqlx::query!("UPDATE eventline_outbox SET failed_at = now(), last_error = $2 WHERE id = $1", id, error)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }
}

/// Waits for outbox notifications.
pub struct OutboxListener {
    listener: PgListener,
}

impl OutboxListener {
    /// Waits up to `timeout` for rows to commit; true when notified. A dropped connection is
    /// re-established by the listener; the caller polls anyway.
    pub async fn wait(&mut self, timeout: Duration) -> Result<bool, Error> {
        match tokio::time::timeout(timeout, self.listener.recv()).await {
            Ok(Ok(_)) => Ok(true),
            Ok(Err(error)) => Err(error.into()),
            Err(_) => Ok(false),
        }
    }
}
