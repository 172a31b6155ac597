//! The runtime's bookkeeping beside checkpoints and dead letters: which event ids a projection
//! applied (for idempotency) and which keys are parked behind a dead letter.

use std::collections::HashSet;
use std::time::Duration;

use crate::{Error, Store, StoreTx};

/// An event a batch is about to apply, and where it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadEvent {
    pub event_id: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

impl StoreTx {
    /// Records these event ids as applied by the projection and returns those that were not
    /// already (within the retention window): the others are copies of applied events. The
    /// primary key decides, so no query plan can turn this into a scan as the table grows.
    pub async fn claim_event_ids(&mut self, projection: &str, events: &[ReadEvent]) -> Result<HashSet<String>, Error> {
        if events.is_empty() {
            return Ok(HashSet::new());
        }
        let ids: Vec<String> = events.iter().map(|e| e.event_id.clone()).collect();
        let topics: Vec<String> = events.iter().map(|e| e.topic.clone()).collect();
        let partitions: Vec<i32> = events.iter().map(|e| e.partition).collect();
        let offsets: Vec<i64> = events.iter().map(|e| e.offset).collect();
        let claimed = sqlx::query_scalar!(
            r#"INSERT INTO eventline_applied_events (projection, event_id, topic, partition, "offset")
               SELECT $1, id, t, p, o FROM UNNEST($2::text[], $3::text[], $4::int4[], $5::int8[]) AS read(id, t, p, o)
               ON CONFLICT DO NOTHING
               RETURNING event_id"#,
            projection,
            &ids,
            &topics,
            &partitions,
            &offsets
        )
        .fetch_all(&mut *self.tx)
        .await?;
        Ok(claimed.into_iter().collect())
    }

    /// Gives back claimed ids of events that were not applied after all (dead letters), so a
    /// later retry of them is not taken for a copy.
    pub async fn release_event_ids(&mut self, projection: &str, event_ids: &[String]) -> Result<(), Error> {
        if event_ids.is_empty() {
            return Ok(());
        }
        sqlx::query!(
            "DELETE FROM eventline_applied_events a USING UNNEST($2::text[]) AS ids(id)
             WHERE a.projection = $1 AND a.event_id = ids.id",
            projection,
            event_ids
        )
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// Which of these keys are parked for the projection. The rows stay share-locked until the
    /// transaction ends, so an operator's retry of a key (which locks it for update) happens
    /// wholly before or after this batch, never in between.
    pub async fn parked_among(&mut self, projection: &str, keys: &[String]) -> Result<HashSet<String>, Error> {
        if keys.is_empty() {
            return Ok(HashSet::new());
        }
        let rows = sqlx::query_scalar!(
            "SELECT record_key FROM eventline_parked_keys WHERE projection = $1 AND record_key = ANY($2) FOR SHARE",
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
