//! Generations of a projection, for rebuilds beside the live one, and in-place resets (replay).
//!
//! The live generation's tables are in `public`, under the names the migrations gave them, so
//! readers and workers never need to know generations exist. Any other generation lives in its
//! own schema (see [`generation_schema`]) with copies of the projection's tables and of the
//! runtime tables (checkpoints, dead letters, parked keys, applied ids): a worker whose
//! connections put that schema first in `search_path` runs the unchanged runtime against it.
//!
//! A switch (cutover or rollback) is one transaction: writers are frozen first (EXCLUSIVE locks,
//! reads go on), then for a few milliseconds readers wait (ACCESS EXCLUSIVE) while the tables
//! change schema, the runtime rows of both generations trade places and the views over the
//! tables are re-pointed. Running workers see their stored offsets change and re-read from them.

use chrono::{DateTime, Utc};
use sqlx::Row;

use crate::checkpoints::Checkpoint;
use crate::declarative::{
    check_tables_in, create_dispatcher, dispatcher, record_migration, run_migration, DefinitionError,
    ProjectionMigration,
};
use crate::{quoted, Error, Store, StoreTx};

/// The runtime tables every generation has its own rows in.
const RUNTIME_TABLES: &[&str] =
    &["eventline_checkpoints", "eventline_dead_letters", "eventline_parked_keys", "eventline_applied_events"];

/// Columns of a dead letter but its id, which the table a letter moves into assigns.
const DEAD_LETTER_COLUMNS: &str = r#"projection, topic, partition, "offset", record_key, event_id, event_type, reason_kind,
    reason, payload, headers, created_at, record_time"#;

/// The schema holding a generation's tables while it is not live.
pub fn generation_schema(projection: &str, generation: i32) -> String {
    format!("eventline_gen_{projection}_{generation}")
}

/// The generation whose schema is `schema`, if it is one of `projection`'s.
pub fn generation_of_schema(projection: &str, schema: &str) -> Option<i32> {
    schema.strip_prefix(&format!("eventline_gen_{projection}_"))?.parse().ok()
}

/// What a generation is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GenerationState {
    /// Being built beside the live one.
    Building,
    /// Serving readers from `public`.
    Live,
    /// Replaced by a cutover and kept for a rollback.
    Retired,
}

impl GenerationState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Building => "building",
            Self::Live => "live",
            Self::Retired => "retired",
        }
    }

    fn parse(text: &str) -> Self {
        match text {
            "building" => Self::Building,
            "live" => Self::Live,
            _ => Self::Retired,
        }
    }
}

/// One generation of a projection.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    pub projection: String,
    pub generation: i32,
    pub state: GenerationState,
    /// `earliest`, or the RFC 3339 time a mid-stream rebuild started from.
    pub started_from: String,
    pub created_at: DateTime<Utc>,
    pub caught_up_at: Option<DateTime<Utc>>,
    pub live_since: Option<DateTime<Utc>>,
    /// The version of a declarative projection that built it (`None` for a Rust projection,
    /// or one built before versions were recorded).
    pub version: Option<i32>,
}

impl Generation {
    /// Where its tables are while it is not live.
    pub fn schema(&self) -> String {
        generation_schema(&self.projection, self.generation)
    }
}

/// The live generation among a projection's generations: 1 when it was never rebuilt (no rows).
pub fn live_generation(generations: &[Generation]) -> i32 {
    generations.iter().find(|g| g.state == GenerationState::Live).map_or(1, |g| g.generation)
}

/// Row count and checksum of one table in two generations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableDiff {
    pub table: String,
    pub live_rows: i64,
    pub live_checksum: String,
    pub other_rows: i64,
    pub other_checksum: String,
}

impl TableDiff {
    pub fn equal(&self) -> bool {
        self.live_rows == self.other_rows && self.live_checksum == self.other_checksum
    }
}

/// Held while an operator action (rebuild, cutover, rollback, cleanup, replay) runs on a
/// projection, so two never overlap; released when dropped (its connection closes).
pub struct OperationLock {
    _connection: sqlx::PgConnection,
}

/// A position to start a projection at: `None` for the earliest retained record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartPosition {
    pub topic: String,
    pub partition: i32,
    pub next_offset: Option<i64>,
}

/// What a new generation is built from.
#[derive(Debug, Clone, Copy)]
pub struct NewGeneration<'a> {
    pub projection: &'a str,
    /// The tables it owns.
    pub tables: &'a [String],
    /// Where the projection is declared, for errors in its tables.
    pub declared_in: &'a str,
    /// `earliest`, or the RFC 3339 time it starts from.
    pub started_from: &'a str,
    pub positions: &'a [StartPosition],
    /// A declarative projection's version (its `apply` must be installed); `None` for Rust.
    pub version: Option<i32>,
    /// The version's migrations, run in the generation's schema when it is not the live one's.
    pub migrations: &'a [ProjectionMigration],
}

/// What a reset removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ResetCounts {
    pub rows: i64,
    pub dead_letters: u64,
    pub parked_keys: u64,
    pub applied_ids: u64,
}

/// The tables as qualified names in `public`.
fn in_public(tables: &[&str]) -> Vec<String> {
    tables.iter().map(|t| format!("public.{}", quoted(t))).collect()
}

/// Of `tables`, those that exist in `schema` (unquoted), in the order given.
async fn existing_in(
    executor: impl sqlx::PgExecutor<'_>,
    schema: &str,
    tables: &[String],
) -> Result<Vec<String>, Error> {
    Ok(sqlx::query_scalar(
        "SELECT t FROM unnest($2::text[]) WITH ORDINALITY AS u(t, n)
         WHERE to_regclass(format('%I.%I', $1::text, t)) IS NOT NULL ORDER BY n",
    )
    .bind(schema)
    .bind(tables)
    .fetch_all(executor)
    .await?)
}

fn lock_tables_sql(tables: &[&str], mode: &str) -> String {
    format!("LOCK TABLE {} IN {mode} MODE", in_public(tables).join(", "))
}

/// Moves `projection`'s rows of a runtime table from schema `from` to schema `to` (both already
/// quoted), all `columns` (or every column, when the tables' columns line up).
async fn move_rows(
    tx: &mut sqlx::PgConnection,
    table: &str,
    columns: Option<&str>,
    projection: &str,
    from: &str,
    to: &str,
) -> Result<(), Error> {
    let (into, returning) = match columns {
        Some(columns) => (format!("({columns})"), columns),
        None => (String::new(), "*"),
    };
    sqlx::query(&format!(
        "WITH moved AS (DELETE FROM {from}.{table} WHERE projection = $1 RETURNING {returning})
         INSERT INTO {to}.{table} {into} SELECT * FROM moved"
    ))
    .bind(projection)
    .execute(tx)
    .await?;
    Ok(())
}

impl StoreTx {
    /// Takes the write lock every writer of a projection's `tables` takes first (ROW EXCLUSIVE on
    /// each that exists, as named in this connection's `search_path`), so a freeze or a reset
    /// waits for writers already inside and holds back the next ones before they lock any row: no
    /// deadlock.
    pub async fn enter_projection<T: AsRef<str>>(&mut self, tables: &[T]) -> Result<(), Error> {
        if tables.is_empty() {
            return Ok(());
        }
        let names: Vec<&str> = tables.iter().map(AsRef::as_ref).collect();
        sqlx::query("SELECT eventline_enter_projection($1)").bind(&names).execute(&mut *self.tx).await?;
        Ok(())
    }
}

impl Store {
    /// Takes the operations lock of `projection`; `None` when another process holds it.
    pub async fn try_operation_lock(&self, projection: &str) -> Result<Option<OperationLock>, Error> {
        let mut connection = self.pool.acquire().await?.detach();
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext('eventline.operations.' || $1))")
            .bind(projection)
            .fetch_one(&mut connection)
            .await?;
        Ok(locked.then_some(OperationLock { _connection: connection }))
    }

    /// The generations of `projection`, oldest first; empty when it was never rebuilt (then
    /// generation 1 is live).
    pub async fn generations(&self, projection: &str) -> Result<Vec<Generation>, Error> {
        self.generations_of(&[projection.to_string()]).await
    }

    /// The generations of each of `projections`, in one round trip (for status reads of many
    /// projections), ordered by projection and generation.
    pub async fn generations_of(&self, projections: &[String]) -> Result<Vec<Generation>, Error> {
        let rows = sqlx::query!(
            "SELECT projection, generation, state, started_from, created_at, caught_up_at, live_since, version
             FROM eventline_generations WHERE projection = ANY($1) ORDER BY projection, generation",
            projections
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| Generation {
                projection: r.projection,
                generation: r.generation,
                state: GenerationState::parse(&r.state),
                started_from: r.started_from,
                created_at: r.created_at,
                caught_up_at: r.caught_up_at,
                live_since: r.live_since,
                version: r.version,
            })
            .collect())
    }

    /// Creates the next generation of a projection in its own schema, with copies of the
    /// runtime tables and `positions` as its starting checkpoints. Its own tables are empty
    /// copies of the live ones, or, when it is built for a version other than the live
    /// generation's, made by running the version's migrations in its schema (checked like
    /// `eventline migrate` checks the live ones); a versioned one gets the dispatcher to its
    /// version's `apply`.
    pub async fn create_generation(&self, new: &NewGeneration<'_>) -> Result<Generation, DefinitionError> {
        let projection = new.projection;
        let mut tx = self.pool.begin().await?;
        sqlx::query!(
            "INSERT INTO eventline_generations (projection, generation, state, live_since)
             SELECT $1, 1, 'live', now() WHERE NOT EXISTS (SELECT 1 FROM eventline_generations WHERE projection = $1)",
            projection
        )
        .execute(&mut *tx)
        .await?;
        let live = sqlx::query!(
            "SELECT generation, version FROM eventline_generations WHERE projection = $1 AND state = 'live'",
            projection
        )
        .fetch_one(&mut *tx)
        .await?;
        let generation: i32 = sqlx::query_scalar!(
            r#"INSERT INTO eventline_generations (projection, generation, state, started_from, version, tables)
               SELECT $1, max(generation) + 1, 'building', $2, $3, $4 FROM eventline_generations WHERE projection = $1
               RETURNING generation"#,
            projection,
            new.started_from,
            new.version,
            new.tables
        )
        .fetch_one(&mut *tx)
        .await?;
        let schema = generation_schema(projection, generation);
        sqlx::query(&format!("CREATE SCHEMA {}", quoted(&schema))).execute(&mut *tx).await?;
        for table in RUNTIME_TABLES {
            sqlx::query("SELECT eventline_copy_table($1, $2)").bind(table).bind(&schema).execute(&mut *tx).await?;
        }
        let new_version = new.version.is_some() && new.version != live.version;
        if new_version {
            sqlx::query(&format!("SET LOCAL search_path = {}, public", quoted(&schema))).execute(&mut *tx).await?;
            for migration in new.migrations {
                run_migration(&mut tx, migration).await?;
                record_migration(&mut tx, projection, generation, migration).await?;
            }
            sqlx::query("SET LOCAL search_path = public").execute(&mut *tx).await?;
            check_tables_in(&mut tx, &schema, new.declared_in, new.tables).await?;
        } else {
            for table in new.tables {
                sqlx::query("SELECT eventline_copy_table($1, $2)").bind(table).bind(&schema).execute(&mut *tx).await?;
            }
            sqlx::query!(
                "INSERT INTO eventline_projection_migrations (projection, generation, version, description, checksum, applied_at)
                 SELECT projection, $2, version, description, checksum, applied_at
                 FROM eventline_projection_migrations WHERE projection = $1 AND generation = $3",
                projection,
                generation,
                live.generation
            )
            .execute(&mut *tx)
            .await?;
        }
        if let Some(version) = new.version {
            create_dispatcher(&mut tx, &quoted(&schema), projection, version).await?;
        }
        for start in new.positions.iter().filter(|p| p.next_offset.is_some()) {
            sqlx::query(&format!(
                "INSERT INTO {}.eventline_checkpoints (projection, topic, partition, next_offset, written_by)
                 VALUES ($1, $2, $3, $4, 'rebuild start')",
                quoted(&schema)
            ))
            .bind(projection)
            .bind(&start.topic)
            .bind(start.partition)
            .bind(start.next_offset)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        let created = self.generations(projection).await?;
        Ok(created.into_iter().find(|g| g.generation == generation).expect("created in the transaction above"))
    }

    /// The checkpoints of `projection` in a generation's schema.
    pub async fn generation_checkpoints(&self, schema: &str, projection: &str) -> Result<Vec<Checkpoint>, Error> {
        let rows = sqlx::query(&format!(
            "SELECT projection, topic, partition, next_offset, updated_at, written_by
             FROM {}.eventline_checkpoints WHERE projection = $1 ORDER BY topic, partition",
            quoted(schema)
        ))
        .bind(projection)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Checkpoint {
                    projection: r.try_get("projection")?,
                    topic: r.try_get("topic")?,
                    partition: r.try_get("partition")?,
                    next_offset: r.try_get("next_offset")?,
                    updated_at: r.try_get("updated_at")?,
                    written_by: r.try_get("written_by")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Error::from)
    }

    /// Notes when a building generation first caught up with its topics.
    pub async fn mark_caught_up(&self, projection: &str, generation: i32) -> Result<(), Error> {
        sqlx::query!(
            "UPDATE eventline_generations SET caught_up_at = coalesce(caught_up_at, now())
             WHERE projection = $1 AND generation = $2",
            projection,
            generation
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Row counts and checksums of each table, live against the generation in `schema`.
    pub async fn diff_generation(&self, tables: &[&str], schema: &str) -> Result<Vec<TableDiff>, Error> {
        let mut diffs = Vec::new();
        for table in tables {
            let (live_rows, live_checksum) = self.table_checksum("public", table).await?;
            let (other_rows, other_checksum) = self.table_checksum(schema, table).await?;
            diffs.push(TableDiff { table: table.to_string(), live_rows, live_checksum, other_rows, other_checksum });
        }
        Ok(diffs)
    }

    /// Row count and checksum of `table` in `schema`; `(0, "absent")` when that generation has no
    /// such table (a version added or dropped it).
    async fn table_checksum(&self, schema: &str, table: &str) -> Result<(i64, String), Error> {
        if existing_in(&self.pool, schema, &[table.to_string()]).await?.is_empty() {
            return Ok((0, "absent".to_string()));
        }
        let row = sqlx::query("SELECT row_count, checksum FROM eventline_table_checksum($1, $2)")
            .bind(schema)
            .bind(table)
            .fetch_one(&self.pool)
            .await?;
        Ok((row.try_get("row_count")?, row.try_get("checksum")?))
    }

    /// Stops writers of `projection` (its workers wait; readers go on) until the returned
    /// [`Frozen`] switches or is dropped, and reads the live positions it froze.
    pub async fn freeze(&self, projection: &str, tables: &[&str]) -> Result<Frozen, Error> {
        // Every table either side of a switch may have: a version can add or drop one.
        let mut switched: Vec<String> = tables.iter().map(|t| t.to_string()).collect();
        let recorded: Vec<String> = sqlx::query_scalar!(
            r#"SELECT DISTINCT unnest(tables) AS "table!" FROM eventline_generations WHERE projection = $1 ORDER BY 1"#,
            projection
        )
        .fetch_all(&self.pool)
        .await?;
        for table in recorded {
            if !switched.contains(&table) {
                switched.push(table);
            }
        }
        let mut tx = self.begin().await?;
        let live = existing_in(&mut *tx.tx, "public", &switched).await?;
        let live: Vec<&str> = live.iter().map(String::as_str).collect();
        if !live.is_empty() {
            sqlx::query(&lock_tables_sql(&live, "EXCLUSIVE")).execute(&mut *tx.tx).await?;
        }
        // Batches that write no projection row still move checkpoints: hold those rows too.
        let rows = sqlx::query!(
            "SELECT topic, partition, next_offset FROM eventline_checkpoints WHERE projection = $1
             ORDER BY topic, partition FOR UPDATE",
            projection
        )
        .fetch_all(&mut *tx.tx)
        .await?;
        let positions = rows.into_iter().map(|r| (r.topic, r.partition, r.next_offset)).collect();
        Ok(Frozen { tx, projection: projection.to_string(), tables: switched, positions })
    }

    /// Copies into the live runtime the ids a generation applied past `positions` (what the
    /// previous live generation had applied), so copies of those events stay deduplicated.
    /// Outside the switch's transaction: a frozen worker may be claiming the same ids.
    pub async fn copy_applied_since(
        &self,
        schema: &str,
        projection: &str,
        positions: &[(String, i32, i64)],
    ) -> Result<u64, Error> {
        let topics: Vec<String> = positions.iter().map(|p| p.0.clone()).collect();
        let partitions: Vec<i32> = positions.iter().map(|p| p.1).collect();
        let offsets: Vec<i64> = positions.iter().map(|p| p.2).collect();
        let copied = sqlx::query(&format!(
            r#"INSERT INTO public.eventline_applied_events (projection, event_digest, applied_at, topic, partition, "offset")
               SELECT a.projection, a.event_digest, a.applied_at, a.topic, a.partition, a."offset"
               FROM {}.eventline_applied_events a
               LEFT JOIN UNNEST($2::text[], $3::int4[], $4::int8[]) AS live(topic, partition, next_offset)
                 ON live.topic = a.topic AND live.partition = a.partition
               WHERE a.projection = $1 AND a."offset" >= coalesce(live.next_offset, 0)
               ON CONFLICT DO NOTHING"#,
            quoted(schema)
        ))
        .bind(projection)
        .bind(&topics)
        .bind(&partitions)
        .bind(&offsets)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(copied)
    }

    /// Drops what is left of the live generation's own schema after a switch (empty runtime
    /// tables and applied ids already copied): while live, its tables are in `public`.
    pub async fn drop_live_schema(&self, projection: &str, generation: i32) -> Result<(), Error> {
        let live: Option<String> = sqlx::query_scalar!(
            "SELECT state FROM eventline_generations WHERE projection = $1 AND generation = $2 AND state = 'live'",
            projection,
            generation
        )
        .fetch_optional(&self.pool)
        .await?;
        if live.is_some() {
            let schema = generation_schema(projection, generation);
            sqlx::query(&format!("DROP SCHEMA IF EXISTS {} CASCADE", quoted(&schema))).execute(&self.pool).await?;
        }
        Ok(())
    }

    /// Drops a generation that is not live: its schema and its row.
    pub async fn drop_generation(&self, projection: &str, generation: i32) -> Result<(), Error> {
        let mut tx = self.pool.begin().await?;
        let state: Option<String> = sqlx::query_scalar!(
            "DELETE FROM eventline_generations WHERE projection = $1 AND generation = $2 AND state <> 'live' RETURNING state",
            projection,
            generation
        )
        .fetch_optional(&mut *tx)
        .await?;
        if state.is_some() {
            let schema = generation_schema(projection, generation);
            sqlx::query(&format!("DROP SCHEMA IF EXISTS {} CASCADE", quoted(&schema))).execute(&mut *tx).await?;
            sqlx::query!(
                "DELETE FROM eventline_projection_migrations WHERE projection = $1 AND generation = $2",
                projection,
                generation
            )
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Empties `projection` in place and restarts it at `positions` (partitions not listed start
    /// at the earliest record): its rows, parked keys and applied ids go, and its dead letters at
    /// or after the new start (they will be read again). Dead letters before the start stay, as
    /// the record of what failed. The audit entry commits with the reset.
    pub async fn reset_projection(
        &self,
        projection: &str,
        tables: &[&str],
        positions: &[StartPosition],
        audit: crate::audit::NewAuditEntry<'_>,
    ) -> Result<ResetCounts, Error> {
        let mut tx = self.begin().await?;
        // A newer definition may declare a table the live generation does not have yet.
        let declared: Vec<String> = tables.iter().map(|t| t.to_string()).collect();
        let existing = existing_in(&mut *tx.tx, "public", &declared).await?;
        let tables: Vec<&str> = existing.iter().map(String::as_str).collect();
        let tables = tables.as_slice();
        if !tables.is_empty() {
            sqlx::query(&lock_tables_sql(tables, "ACCESS EXCLUSIVE")).execute(&mut *tx.tx).await?;
        }
        sqlx::query!("SELECT 1 AS held FROM eventline_checkpoints WHERE projection = $1 FOR UPDATE", projection)
            .fetch_all(&mut *tx.tx)
            .await?;
        let mut counts = ResetCounts::default();
        for table in tables {
            let rows: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM public.{}", quoted(table)))
                .fetch_one(&mut *tx.tx)
                .await?;
            counts.rows += rows;
        }
        if !tables.is_empty() {
            sqlx::query(&format!("TRUNCATE {}", in_public(tables).join(", "))).execute(&mut *tx.tx).await?;
        }
        sqlx::query!("DELETE FROM eventline_checkpoints WHERE projection = $1", projection)
            .execute(&mut *tx.tx)
            .await?;
        let explicit: Vec<&StartPosition> = positions.iter().filter(|p| p.next_offset.is_some()).collect();
        let topics: Vec<String> = explicit.iter().map(|p| p.topic.clone()).collect();
        let partitions: Vec<i32> = explicit.iter().map(|p| p.partition).collect();
        let offsets: Vec<i64> = explicit.iter().filter_map(|p| p.next_offset).collect();
        sqlx::query!(
            "INSERT INTO eventline_checkpoints (projection, topic, partition, next_offset, written_by)
             SELECT $1, t, p, o, 'replay' FROM UNNEST($2::text[], $3::int4[], $4::int8[]) AS start(t, p, o)",
            projection,
            &topics,
            &partitions,
            &offsets
        )
        .execute(&mut *tx.tx)
        .await?;
        counts.dead_letters = sqlx::query!(
            r#"DELETE FROM eventline_dead_letters d WHERE d.projection = $1
               AND d."offset" >= coalesce((SELECT c.next_offset FROM eventline_checkpoints c
                                          WHERE c.projection = $1 AND c.topic = d.topic AND c.partition = d.partition), 0)"#,
            projection
        )
        .execute(&mut *tx.tx)
        .await?
        .rows_affected();
        counts.parked_keys = sqlx::query!("DELETE FROM eventline_parked_keys WHERE projection = $1", projection)
            .execute(&mut *tx.tx)
            .await?
            .rows_affected();
        counts.applied_ids = sqlx::query!("DELETE FROM eventline_applied_events WHERE projection = $1", projection)
            .execute(&mut *tx.tx)
            .await?
            .rows_affected();
        let mut audit = audit;
        audit.outcome = serde_json::json!({
            "rows_removed": counts.rows,
            "dead_letters_removed": counts.dead_letters,
            "parked_keys_removed": counts.parked_keys,
            "applied_ids_removed": counts.applied_ids,
        });
        tx.audit(audit).await?;
        tx.notify_progress(projection).await?;
        tx.commit().await?;
        Ok(counts)
    }
}

/// A projection whose writers are stopped, ready to switch generations.
pub struct Frozen {
    tx: StoreTx,
    projection: String,
    tables: Vec<String>,
    /// The live positions when writers stopped: (topic, partition, next offset).
    pub positions: Vec<(String, i32, i64)>,
}

impl Frozen {
    /// Its transaction, for statements of other modules run while writers wait.
    pub(crate) fn executor(&mut self) -> &mut sqlx::PgConnection {
        &mut self.tx.tx
    }

    /// Makes `incoming` (building or retired) the live generation and retires `outgoing` (the
    /// live one) into its schema, in this one transaction. With `forget_applied_past`, applied
    /// ids past the incoming generation's positions are forgotten (a rollback: its workers must
    /// apply those events again).
    pub async fn switch(
        mut self,
        incoming: &Generation,
        outgoing: i32,
        forget_applied_past: bool,
        audit: crate::audit::NewAuditEntry<'_>,
    ) -> Result<(), Error> {
        let projection = self.projection.clone();
        let incoming_tables = existing_in(&mut *self.tx.tx, &incoming.schema(), &self.tables).await?;
        let outgoing_tables = existing_in(&mut *self.tx.tx, "public", &self.tables).await?;
        let tables: Vec<&str> = outgoing_tables.iter().map(String::as_str).collect();
        let incoming_schema = quoted(&incoming.schema());
        let outgoing_schema = quoted(&generation_schema(&projection, outgoing));
        let tx = &mut *self.tx.tx;

        sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {outgoing_schema}")).execute(&mut *tx).await?;
        for table in RUNTIME_TABLES {
            let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
                .bind(format!("{outgoing_schema}.{table}"))
                .fetch_one(&mut *tx)
                .await?;
            if !exists {
                sqlx::query("SELECT eventline_copy_table($1, $2)")
                    .bind(table)
                    .bind(generation_schema(&projection, outgoing))
                    .execute(&mut *tx)
                    .await?;
            }
        }
        if forget_applied_past {
            // While only writers wait: this can take a moment on a large table.
            sqlx::query(&format!(
                r#"DELETE FROM public.eventline_applied_events a WHERE a.projection = $1 AND a."offset" IS NOT NULL
                   AND a."offset" >= coalesce((SELECT c.next_offset FROM {incoming_schema}.eventline_checkpoints c
                                               WHERE c.projection = $1 AND c.topic = a.topic AND c.partition = a.partition), 0)"#
            ))
            .bind(&projection)
            .execute(&mut *tx)
            .await?;
        }

        // From here readers wait too, for the few statements that follow.
        if !tables.is_empty() {
            sqlx::query(&lock_tables_sql(&tables, "ACCESS EXCLUSIVE")).execute(&mut *tx).await?;
        }
        let qualified = in_public(&tables);
        // Views over the tables follow a moved table; capture their text to re-point them.
        let views = sqlx::query(
            "SELECT DISTINCT v.oid::regclass::text AS name, pg_get_viewdef(v.oid) AS definition
             FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid JOIN pg_class v ON v.oid = r.ev_class
             WHERE d.classid = 'pg_rewrite'::regclass AND d.refobjid = ANY($1::text[]::regclass[])
               AND v.relkind = 'v' AND v.oid <> d.refobjid",
        )
        .bind(&qualified)
        .fetch_all(&mut *tx)
        .await?;
        for table in &tables {
            let table = quoted(table);
            sqlx::query(&format!("ALTER TABLE public.{table} SET SCHEMA {outgoing_schema}")).execute(&mut *tx).await?;
        }
        for table in &incoming_tables {
            let table = quoted(table);
            sqlx::query(&format!("ALTER TABLE {incoming_schema}.{table} SET SCHEMA public")).execute(&mut *tx).await?;
        }
        // The dispatcher to the version's `apply` goes where its tables go.
        let dispatcher = quoted(&dispatcher(&projection));
        for (from, to) in [("public", outgoing_schema.as_str()), (incoming_schema.as_str(), "public")] {
            let found: bool = sqlx::query_scalar("SELECT to_regprocedure($1) IS NOT NULL")
                .bind(format!("{from}.{dispatcher}(jsonb)"))
                .fetch_one(&mut *tx)
                .await?;
            if found {
                sqlx::query(&format!("ALTER FUNCTION {from}.{dispatcher}(jsonb) SET SCHEMA {to}"))
                    .execute(&mut *tx)
                    .await?;
            }
        }
        for view in &views {
            let name: String = view.try_get("name")?;
            let definition: String = view.try_get("definition")?;
            let definition = definition.trim().trim_end_matches(';');
            sqlx::query(&format!("CREATE OR REPLACE VIEW {name} AS {definition}")).execute(&mut *tx).await?;
        }
        for (table, columns) in [
            ("eventline_checkpoints", None),
            ("eventline_parked_keys", None),
            ("eventline_dead_letters", Some(DEAD_LETTER_COLUMNS)),
        ] {
            move_rows(&mut *tx, table, columns, &projection, "public", &outgoing_schema).await?;
            move_rows(&mut *tx, table, columns, &projection, &incoming_schema, "public").await?;
        }
        sqlx::query!(
            "UPDATE eventline_generations SET state = 'retired' WHERE projection = $1 AND generation = $2",
            projection,
            outgoing
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query!(
            "UPDATE eventline_generations SET state = 'live', live_since = now() WHERE projection = $1 AND generation = $2",
            projection,
            incoming.generation
        )
        .execute(&mut *tx)
        .await?;
        self.tx.audit(audit).await?;
        self.tx.notify_progress(&projection).await?;
        self.tx.commit().await
    }
}
