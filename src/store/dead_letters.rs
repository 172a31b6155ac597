//! Records a projection could not apply.

use chrono::{DateTime, Utc};

use crate::{Error, Store, StoreTx};

/// A record set aside, with the reason and everything needed to look at it again.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDeadLetter {
    pub projection: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub record_key: Option<String>,
    pub event_id: Option<String>,
    pub event_type: Option<String>,
    /// `undecodable`, `invalid` or `rejected`.
    pub reason_kind: &'static str,
    pub reason: String,
    pub payload: Option<Vec<u8>>,
    /// Kafka headers as a JSON object of strings.
    pub headers: serde_json::Value,
    /// The Kafka record's timestamp.
    pub record_time: Option<DateTime<Utc>>,
}

/// A stored dead letter.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub id: i64,
    pub projection: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub record_key: Option<String>,
    pub event_id: Option<String>,
    pub event_type: Option<String>,
    pub reason_kind: String,
    pub reason: String,
    pub created_at: DateTime<Utc>,
}

/// A stored dead letter with the record as it was read, to show or to apply again.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadRecord {
    pub letter: DeadLetter,
    pub payload: Option<Vec<u8>>,
    pub headers: serde_json::Value,
    pub record_time: Option<DateTime<Utc>>,
}

/// A dead letter's row with its record, as read.
struct DeadRecordRow {
    id: i64,
    projection: String,
    topic: String,
    partition: i32,
    offset: i64,
    record_key: Option<String>,
    event_id: Option<String>,
    event_type: Option<String>,
    reason_kind: String,
    reason: String,
    created_at: DateTime<Utc>,
    payload: Option<Vec<u8>>,
    headers: serde_json::Value,
    record_time: Option<DateTime<Utc>>,
}

impl From<DeadRecordRow> for DeadRecord {
    fn from(r: DeadRecordRow) -> Self {
        Self {
            letter: DeadLetter {
                id: r.id,
                projection: r.projection,
                topic: r.topic,
                partition: r.partition,
                offset: r.offset,
                record_key: r.record_key,
                event_id: r.event_id,
                event_type: r.event_type,
                reason_kind: r.reason_kind,
                reason: r.reason,
                created_at: r.created_at,
            },
            payload: r.payload,
            headers: r.headers,
            record_time: r.record_time,
        }
    }
}

/// Which dead letters to list; every field narrows.
#[derive(Debug, Clone, Default)]
pub struct DeadLetterFilter {
    pub projection: Option<String>,
    pub key: Option<String>,
    /// `undecodable`, `invalid`, `rejected` or `parked`.
    pub kind: Option<String>,
    /// Text the reason contains (case-insensitive).
    pub reason_contains: Option<String>,
    /// Dead-lettered at or after this time.
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    pub limit: i64,
}

impl StoreTx {
    /// Stores dead letters; one already stored for the same record is kept as it was.
    pub async fn insert_dead_letters(&mut self, letters: &[NewDeadLetter]) -> Result<(), Error> {
        if letters.is_empty() {
            return Ok(());
        }
        let column =
            |f: fn(&NewDeadLetter) -> Option<String>| -> Vec<Option<String>> { letters.iter().map(f).collect() };
        let projections: Vec<String> = letters.iter().map(|l| l.projection.clone()).collect();
        let topics: Vec<String> = letters.iter().map(|l| l.topic.clone()).collect();
        let partitions: Vec<i32> = letters.iter().map(|l| l.partition).collect();
        let offsets: Vec<i64> = letters.iter().map(|l| l.offset).collect();
        let kinds: Vec<String> = letters.iter().map(|l| l.reason_kind.to_string()).collect();
        let reasons: Vec<String> = letters.iter().map(|l| l.reason.clone()).collect();
        let payloads: Vec<Option<Vec<u8>>> = letters.iter().map(|l| l.payload.clone()).collect();
        let headers: Vec<serde_json::Value> = letters.iter().map(|l| l.headers.clone()).collect();
        let times: Vec<Option<DateTime<Utc>>> = letters.iter().map(|l| l.record_time).collect();
        sqlx::query!(
            r#"INSERT INTO eventline_dead_letters
                 (projection, topic, partition, "offset", record_key, event_id, event_type, reason_kind, reason, payload,
                  headers, record_time)
               SELECT * FROM UNNEST($1::text[], $2::text[], $3::int4[], $4::int8[], $5::text[], $6::text[], $7::text[],
                                    $8::text[], $9::text[], $10::bytea[], $11::jsonb[], $12::timestamptz[])
               ON CONFLICT (projection, topic, partition, "offset") DO NOTHING"#,
            &projections,
            &topics,
            &partitions,
            &offsets,
            &column(|l| l.record_key.clone()) as &[Option<String>],
            &column(|l| l.event_id.clone()) as &[Option<String>],
            &column(|l| l.event_type.clone()) as &[Option<String>],
            &kinds,
            &reasons,
            &payloads as &[Option<Vec<u8>>],
            &headers,
            &times as &[Option<DateTime<Utc>>],
        )
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }
}

impl Store {
    /// The dead letters of `projection`, oldest first.
    pub async fn dead_letters(&self, projection: &str) -> Result<Vec<DeadLetter>, Error> {
        Ok(sqlx::query_as!(
            DeadLetter,
            r#"SELECT id, projection, topic, partition, "offset", record_key, event_id, event_type, reason_kind, reason, created_at
               FROM eventline_dead_letters WHERE projection = $1 ORDER BY id"#,
            projection
        )
        .fetch_all(&self.pool)
        .await?)
    }
}

impl Store {
    /// Dead letters matching `filter`, oldest first.
    pub async fn find_dead_letters(&self, filter: &DeadLetterFilter) -> Result<Vec<DeadLetter>, Error> {
        Ok(sqlx::query_as!(
            DeadLetter,
            r#"SELECT id, projection, topic, partition, "offset", record_key, event_id, event_type, reason_kind, reason, created_at
               FROM eventline_dead_letters
               WHERE ($1::text IS NULL OR projection = $1)
                 AND ($2::text IS NULL OR record_key = $2)
                 AND ($3::text IS NULL OR reason_kind = $3)
                 AND ($4::text IS NULL OR strpos(lower(reason), lower($4)) > 0)
                 AND ($6::timestamptz IS NULL OR created_at >= $6)
               ORDER BY id LIMIT $5"#,
            filter.projection,
            filter.key,
            filter.kind,
            filter.reason_contains,
            filter.limit,
            filter.since,
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// One dead letter with its record, if it exists.
    pub async fn dead_record(&self, id: i64) -> Result<Option<DeadRecord>, Error> {
        let row = sqlx::query_as!(
            DeadRecordRow,
            r#"SELECT id, projection, topic, partition, "offset", record_key, event_id, event_type, reason_kind, reason,
                      created_at, payload, headers, record_time
               FROM eventline_dead_letters WHERE id = $1"#,
            id
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(DeadRecord::from))
    }
}

impl StoreTx {
    /// The dead letters of one key (or, with `key` `None`, the one letter `id`), in offset
    /// order, locked until the transaction ends.
    pub async fn lock_dead_records(
        &mut self,
        projection: &str,
        key: Option<&str>,
        id: i64,
    ) -> Result<Vec<DeadRecord>, Error> {
        let rows = sqlx::query_as!(
            DeadRecordRow,
            r#"SELECT id, projection, topic, partition, "offset", record_key, event_id, event_type, reason_kind, reason,
                      created_at, payload, headers, record_time
               FROM eventline_dead_letters
               WHERE projection = $1 AND (CASE WHEN $2::text IS NULL THEN id = $3 ELSE record_key = $2 END)
               ORDER BY topic, partition, "offset" FOR UPDATE"#,
            projection,
            key,
            id
        )
        .fetch_all(&mut *self.tx)
        .await?;
        Ok(rows.into_iter().map(DeadRecord::from).collect())
    }

    /// Locks a parked key for update (a worker reading it waits), returning its parking reason.
    pub async fn lock_parked_key(&mut self, projection: &str, key: &str) -> Result<Option<String>, Error> {
        Ok(sqlx::query_scalar!(
            "SELECT reason FROM eventline_parked_keys WHERE projection = $1 AND record_key = $2 FOR UPDATE",
            projection,
            key
        )
        .fetch_optional(&mut *self.tx)
        .await?)
    }

    pub async fn unpark_key(&mut self, projection: &str, key: &str) -> Result<(), Error> {
        sqlx::query!("DELETE FROM eventline_parked_keys WHERE projection = $1 AND record_key = $2", projection, key)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    pub async fn delete_dead_letters(&mut self, ids: &[i64]) -> Result<u64, Error> {
        if ids.is_empty() {
            return Ok(0);
        }
        Ok(sqlx::query!("DELETE FROM eventline_dead_letters WHERE id = ANY($1)", ids)
            .execute(&mut *self.tx)
            .await?
            .rows_affected())
    }

    /// Records why a dead letter is still dead after a retry.
    pub async fn update_dead_letter_reason(&mut self, id: i64, kind: &str, reason: &str) -> Result<(), Error> {
        sqlx::query!("UPDATE eventline_dead_letters SET reason_kind = $2, reason = $3 WHERE id = $1", id, kind, reason)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    /// Deletes the dead letters matching `filter` (its limit ignored) and unparks the keys left
    /// without any; returns the deleted letters.
    pub async fn purge_dead_letters(&mut self, filter: &DeadLetterFilter) -> Result<Vec<DeadLetter>, Error> {
        let deleted = sqlx::query_as!(
            DeadLetter,
            r#"DELETE FROM eventline_dead_letters
               WHERE projection = $1
                 AND ($2::text IS NULL OR record_key = $2)
                 AND ($3::text IS NULL OR reason_kind = $3)
                 AND ($4::text IS NULL OR strpos(lower(reason), lower($4)) > 0)
                 AND ($5::timestamptz IS NULL OR created_at >= $5)
               RETURNING id, projection, topic, partition, "offset", record_key, event_id, event_type, reason_kind, reason, created_at"#,
            filter.projection,
            filter.key,
            filter.kind,
            filter.reason_contains,
            filter.since,
        )
        .fetch_all(&mut *self.tx)
        .await?;
        sqlx::query!(
            "DELETE FROM eventline_parked_keys p WHERE p.projection = $1
               AND NOT EXISTS (SELECT 1 FROM eventline_dead_letters d
                               WHERE d.projection = p.projection AND d.record_key = p.record_key)",
            filter.projection
        )
        .execute(&mut *self.tx)
        .await?;
        let mut sorted = deleted;
        sorted.sort_by_key(|l| l.id);
        Ok(sorted)
    }
}
