//! The runtime's bookkeeping beside checkpoints and dead letters: which event ids a projection
//! applied (for idempotency) and which keys are parked behind a dead letter.

use std::collections::HashSet;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::{Error, Store, StoreTx};

/// An event a batch is about to apply, and where it was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadEvent<'a> {
    pub event_id: &'a str,
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
}

/// How an applied event id is remembered: the first 16 bytes of its SHA-256. Collisions are out
/// of reach (2^64 ids for an even chance), even for ids chosen to collide.
fn event_digest(event_id: &str) -> [u8; 16] {
    let digest = Sha256::digest(event_id.as_bytes());
    let mut first = [0u8; 16];
    first.copy_from_slice(&digest[..16]);
    first
}

impl StoreTx {
    /// Records these event ids as applied by the projection and says, for each, whether it was
    /// not already (within the retention window): the others are copies of applied events, or of
    /// an earlier event of the same batch. The primary key decides, so no query plan can turn
    /// this into a scan as the table grows.
    pub async fn claim_event_ids(&mut self, projection: &str, events: &[ReadEvent<'_>]) -> Result<Vec<bool>, Error> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let digests: Vec<[u8; 16]> = events.iter().map(|e| event_digest(e.event_id)).collect();
        let digest_bytes: Vec<&[u8]> = digests.iter().map(|d| d.as_slice()).collect();
        let topics: Vec<&str> = events.iter().map(|e| e.topic).collect();
        let partitions: Vec<i32> = events.iter().map(|e| e.partition).collect();
        let offsets: Vec<i64> = events.iter().map(|e| e.offset).collect();
        // Positions (1-based) of the copies; see the function's migration for how it claims.
        let unclaimed: Vec<i64> = sqlx::query_scalar!(
            r#"SELECT eventline_claim_events($1, $2::bytea[], $3::text[], $4::int4[], $5::int8[]) AS "unclaimed!""#,
            projection,
            &digest_bytes as &[&[u8]],
            &topics as &[&str],
            &partitions,
            &offsets
        )
        .fetch_one(&mut *self.tx)
        .await?;
        let mut claimed_now = vec![true; events.len()];
        for position in unclaimed {
            if let Some(claimed) = usize::try_from(position - 1).ok().and_then(|index| claimed_now.get_mut(index)) {
                *claimed = false;
            }
        }
        Ok(claimed_now)
    }

    /// Gives back claimed ids of events that were not applied after all (dead letters), so a
    /// later retry of them is not taken for a copy.
    pub async fn release_event_ids(&mut self, projection: &str, event_ids: &[&str]) -> Result<(), Error> {
        if event_ids.is_empty() {
            return Ok(());
        }
        let digests: Vec<[u8; 16]> = event_ids.iter().map(|id| event_digest(id)).collect();
        let digest_bytes: Vec<&[u8]> = digests.iter().map(|d| d.as_slice()).collect();
        sqlx::query!(
            "DELETE FROM eventline_applied_events a USING UNNEST($2::bytea[]) AS ids(d)
             WHERE a.projection = $1 AND a.event_digest = ids.d",
            projection,
            &digest_bytes as &[&[u8]]
        )
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// Which of these keys are parked for the projection. The rows stay share-locked until the
    /// transaction ends, so an operator's retry of a key (which locks it for update) happens
    /// wholly before or after this batch, never in between.
    pub async fn parked_among(&mut self, projection: &str, keys: &[&str]) -> Result<HashSet<String>, Error> {
        if keys.is_empty() {
            return Ok(HashSet::new());
        }
        let rows = sqlx::query_scalar!(
            "SELECT record_key FROM eventline_parked_keys WHERE projection = $1 AND record_key = ANY($2) FOR SHARE",
            projection,
            keys as &[&str]
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
