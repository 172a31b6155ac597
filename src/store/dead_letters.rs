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
        sqlx::query!(
            r#"INSERT INTO eventline_dead_letters
                 (projection, topic, partition, "offset", record_key, event_id, event_type, reason_kind, reason, payload, headers)
               SELECT * FROM UNNEST($1::text[], $2::text[], $3::int4[], $4::int8[], $5::text[], $6::text[], $7::text[],
                                    $8::text[], $9::text[], $10::bytea[], $11::jsonb[])
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
