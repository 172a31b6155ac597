//! Per-partition positions of each projection.

use crate::{Error, Store, StoreTx};

/// One partition's position: the next offset the projection will apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub projection: String,
    pub topic: String,
    pub partition: i32,
    pub next_offset: i64,
    pub updated_at: chrono::DateTime<chrono::Utc>,
    /// The worker (host:pid) that last moved it.
    pub written_by: Option<String>,
}

impl Store {
    /// The stored positions of `projection` for the given partitions, in the same order;
    /// `None` where the projection has not applied anything from that partition yet.
    pub async fn load_checkpoints(
        &self,
        projection: &str,
        partitions: &[(String, i32)],
    ) -> Result<Vec<Option<i64>>, Error> {
        let topics: Vec<String> = partitions.iter().map(|(t, _)| t.clone()).collect();
        let numbers: Vec<i32> = partitions.iter().map(|(_, p)| *p).collect();
        let rows = sqlx::query!(
            r#"SELECT c.topic AS "topic!", c.partition AS "partition!", c.next_offset AS "next_offset!"
               FROM eventline_checkpoints c
               JOIN UNNEST($2::text[], $3::int4[]) AS wanted(topic, partition)
                 ON wanted.topic = c.topic AND wanted.partition = c.partition
               WHERE c.projection = $1"#,
            projection,
            &topics,
            &numbers,
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(partitions
            .iter()
            .map(|(topic, partition)| {
                rows.iter().find(|r| &r.topic == topic && r.partition == *partition).map(|r| r.next_offset)
            })
            .collect())
    }

    /// Every stored position of `projection`, ordered by topic and partition.
    pub async fn checkpoints(&self, projection: &str) -> Result<Vec<Checkpoint>, Error> {
        Ok(sqlx::query_as!(
            Checkpoint,
            "SELECT projection, topic, partition, next_offset, updated_at, written_by FROM eventline_checkpoints
             WHERE projection = $1 ORDER BY topic, partition",
            projection
        )
        .fetch_all(&self.pool)
        .await?)
    }
}

/// The channel a worker notifies (with the projection's name) when a batch commits.
pub const PROGRESS_CHANNEL: &str = "eventline_progress";

/// Wakes when projections commit batches.
pub struct ProgressListener {
    listener: sqlx::postgres::PgListener,
}

impl ProgressListener {
    /// The name of the next projection that committed a batch.
    pub async fn recv(&mut self) -> Result<String, Error> {
        Ok(self.listener.recv().await?.payload().to_string())
    }
}

impl Store {
    pub async fn progress_listener(&self) -> Result<ProgressListener, Error> {
        let mut listener = sqlx::postgres::PgListener::connect_with(&self.pool).await?;
        listener.listen(PROGRESS_CHANNEL).await?;
        Ok(ProgressListener { listener })
    }

    /// How many dead letters a projection has, and how many keys are parked.
    pub async fn dead_letter_counts(&self, projection: &str) -> Result<(i64, i64), Error> {
        let row = sqlx::query!(
            r#"SELECT (SELECT count(*) FROM eventline_dead_letters WHERE projection = $1) AS "dead!",
                      (SELECT count(*) FROM eventline_parked_keys WHERE projection = $1) AS "parked!""#,
            projection
        )
        .fetch_one(&self.pool)
        .await?;
        Ok((row.dead, row.parked))
    }
}

impl StoreTx {
    /// Tells listeners, when this transaction commits, that `projection` moved.
    pub async fn notify_progress(&mut self, projection: &str) -> Result<(), Error> {
        sqlx::query!("SELECT pg_notify($1, $2)", PROGRESS_CHANNEL, projection).execute(&mut *self.tx).await?;
        Ok(())
    }

    /// Moves a partition's position from `expected` (what the batch started from; `None` when
    /// there was no row) to `next_offset`, noting `written_by`. Fails with [`Error::Fenced`] when
    /// the stored value is not `expected`: another worker applied this partition meanwhile (or an
    /// operator reset it), so this batch must not.
    pub async fn advance_checkpoint(
        &mut self,
        projection: &str,
        (topic, partition): (&str, i32),
        expected: Option<i64>,
        next_offset: i64,
        written_by: &str,
    ) -> Result<(), Error> {
        let moved = match expected {
            Some(expected) => sqlx::query!(
                "UPDATE eventline_checkpoints SET next_offset = $5, updated_at = now(), written_by = $6
                 WHERE projection = $1 AND topic = $2 AND partition = $3 AND next_offset = $4",
                projection,
                topic,
                partition,
                expected,
                next_offset,
                written_by
            )
            .execute(&mut *self.tx)
            .await?
            .rows_affected(),
            None => sqlx::query!(
                "INSERT INTO eventline_checkpoints (projection, topic, partition, next_offset, written_by)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                projection,
                topic,
                partition,
                next_offset,
                written_by
            )
            .execute(&mut *self.tx)
            .await?
            .rows_affected(),
        };
        if moved == 1 {
            Ok(())
        } else {
            Err(Error::Fenced { projection: projection.into(), topic: topic.into(), partition, expected })
        }
    }
}
