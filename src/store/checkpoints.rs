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

/// A partition's position as a batch moves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PositionMove<'a> {
    pub topic: &'a str,
    pub partition: i32,
    /// What the batch started from (`None`: no stored position yet).
    pub expected: Option<i64>,
    pub next_offset: i64,
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

    /// Every stored position of each of `projections`, in one round trip (for status reads of
    /// many projections), ordered by projection, topic and partition.
    pub async fn checkpoints_of(&self, projections: &[String]) -> Result<Vec<Checkpoint>, Error> {
        Ok(sqlx::query_as!(
            Checkpoint,
            "SELECT projection, topic, partition, next_offset, updated_at, written_by FROM eventline_checkpoints
             WHERE projection = ANY($1) ORDER BY projection, topic, partition",
            projections
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// [`Store::dead_letter_counts`] of each of `projections`, in one round trip.
    pub async fn dead_letter_counts_of(
        &self,
        projections: &[String],
    ) -> Result<std::collections::HashMap<String, (i64, i64)>, Error> {
        let rows = sqlx::query!(
            r#"SELECT name AS "name!",
                      (SELECT count(*) FROM eventline_dead_letters d WHERE d.projection = name) AS "dead!",
                      (SELECT count(*) FROM eventline_parked_keys k WHERE k.projection = name) AS "parked!"
               FROM unnest($1::text[]) AS name"#,
            projections
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|r| (r.name, (r.dead, r.parked))).collect())
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

    /// Moves the positions of every partition a batch read, as [`StoreTx::advance_checkpoint`]
    /// does for one, and announces the projection's progress ([`StoreTx::notify_progress`]), in
    /// one statement: one round trip per batch instead of one per partition and one more. Fails
    /// with [`Error::Fenced`] for the first partition whose stored position is not the expected
    /// one; the caller rolls back, so nothing moves.
    pub async fn advance_checkpoints(
        &mut self,
        projection: &str,
        moves: &[PositionMove<'_>],
        written_by: &str,
    ) -> Result<(), Error> {
        let topics: Vec<&str> = moves.iter().map(|m| m.topic).collect();
        let partitions: Vec<i32> = moves.iter().map(|m| m.partition).collect();
        let expected: Vec<Option<i64>> = moves.iter().map(|m| m.expected).collect();
        let next: Vec<i64> = moves.iter().map(|m| m.next_offset).collect();
        // Data-modifying CTEs always run to completion; the select list always runs once.
        let fenced = sqlx::query!(
            r#"WITH wanted AS (
                   SELECT * FROM unnest($2::text[], $3::int4[], $4::int8[], $5::int8[])
                       AS w(topic, partition, expected, next_offset)
               ), moved AS (
                   UPDATE eventline_checkpoints c SET next_offset = w.next_offset, updated_at = now(), written_by = $6
                   FROM wanted w
                   WHERE c.projection = $1 AND c.topic = w.topic AND c.partition = w.partition
                     AND c.next_offset = w.expected
                   RETURNING c.topic, c.partition
               ), created AS (
                   INSERT INTO eventline_checkpoints (projection, topic, partition, next_offset, written_by)
                   SELECT $1, w.topic, w.partition, w.next_offset, $6 FROM wanted w WHERE w.expected IS NULL
                   ON CONFLICT DO NOTHING
                   RETURNING topic, partition
               ), fenced AS (
                   SELECT w.topic, w.partition FROM wanted w
                   WHERE NOT EXISTS (SELECT 1 FROM moved m WHERE m.topic = w.topic AND m.partition = w.partition)
                     AND NOT EXISTS (SELECT 1 FROM created k WHERE k.topic = w.topic AND k.partition = w.partition)
               )
               SELECT pg_notify($7, $1)::text AS "notified",
                      (SELECT array_agg(topic ORDER BY topic, partition) FROM fenced) AS "fenced_topics",
                      (SELECT array_agg(partition ORDER BY topic, partition) FROM fenced) AS "fenced_partitions""#,
            projection,
            &topics as &[&str],
            &partitions,
            &expected as &[Option<i64>],
            &next,
            written_by,
            PROGRESS_CHANNEL
        )
        .fetch_one(&mut *self.tx)
        .await?;
        let first = fenced
            .fenced_topics
            .unwrap_or_default()
            .into_iter()
            .zip(fenced.fenced_partitions.unwrap_or_default())
            .next();
        match first {
            None => Ok(()),
            Some((topic, partition)) => {
                let expected =
                    moves.iter().find(|m| m.topic == topic && m.partition == partition).and_then(|m| m.expected);
                Err(Error::Fenced { projection: projection.into(), topic, partition, expected })
            }
        }
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
