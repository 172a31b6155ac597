//! The runtime's bookkeeping beside checkpoints and dead letters: which event ids a projection
//! applied (for idempotency) and which keys are parked behind a dead letter.

use std::collections::HashSet;
use std::time::Duration;

use crate::{Error, Store, StoreTx};

impl StoreTx {
    /// Which of these event ids the projection has applied already (within the retention window).
    pub async fn already_applied(&mut self, projection: &str, event_ids: &[String]) -> Result<HashSet<String>, Error> {
        if event_ids.is_empty() {
            return Ok(HashSet::new());
        }
        let rows = sqlx::query_scalar!(
            "SELECT event_id FROM eventline_applied_events WHERE projection = $1 AND event_id = ANY($2)",
            projection,
            event_ids
        )
        .fetch_all(&mut *self.tx)
        .await?;
        Ok(rows.into_iter().collect())
    }

    /// Records that the projection applied these event ids.
    pub async fn record_applied(&mut self, projection: &str, event_ids: &[String]) -> Result<(), Error> {
        if event_ids.is_empty() {
            return Ok(());
        }
        sqlx::query!(
            "INSERT INTO eventline_applied_events (projection, event_id)
             SELECT $1, id FROM UNNEST($2::text[]) AS ids(id)
             ON CONFLICT DO NOTHING",
            projection,
            event_ids
        )
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// Which of these keys are parked for the projection.
    pub async fn parked_among(&mut self, projection: &str, keys: &[String]) -> Result<HashSet<String>, Error> {
        if keys.is_empty() {
            return Ok(HashSet::new());
        }
        let rows = sqlx::query_scalar!(
            "SELECT record_key FROM eventline_parked_keys WHERE projection = $1 AND record_key = ANY($2)",
            projection,
            keys
        )
        .fetch_all(&mut *self.tx)
        .await?;
        Ok(rows.into_iter().collect())
    }

    /// Parks keys: their later events wait in the dead-letter store. A key already parked stays
    /// parked with its first reason.
    pub async fn park_keys(&mut self, projection: &str, keys: &[(String, String)]) -> Result<(), Error> {
        if keys.is_empty() {
            return Ok(());
        }
        let (names, reasons): (Vec<String>, Vec<String>) = keys.iter().cloned().unzip();
        sqlx::query!(
            "INSERT INTO eventline_parked_keys (projection, record_key, reason)
             SELECT $1, k, r FROM UNNEST($2::text[], $3::text[]) AS parked(k, r)
             ON CONFLICT DO NOTHING",
            projection,
            &names,
            &reasons
        )
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }
}

impl Store {
    /// Forgets applied event ids older than `window`; returns how many.
    pub async fn prune_applied(&self, projection: &str, window: Duration) -> Result<u64, Error> {
        let seconds = window.as_secs_f64();
        let deleted = sqlx::query!(
            "DELETE FROM eventline_applied_events
             WHERE projection = $1 AND applied_at < now() - make_interval(secs => $2)",
            projection,
            seconds
        )
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(deleted)
    }

    /// The parked keys of a projection, sorted.
    pub async fn parked_keys(&self, projection: &str) -> Result<Vec<String>, Error> {
        Ok(sqlx::query_scalar!(
            "SELECT record_key FROM eventline_parked_keys WHERE projection = $1 ORDER BY record_key",
            projection
        )
        .fetch_all(&self.pool)
        .await?)
    }
}
