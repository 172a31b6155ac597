//! What declarative projections need from the database: their migration files applied once
//! each (an edited applied file refused, as sqlx does), their `apply` function installed per
//! version in a schema of its own, and that function called with a batch inside the runtime's
//! transaction, behind a savepoint the runtime can roll back to.
//!
//! Versions are blue/green. Each generation records the version that built it and its own
//! migration history; a new version's migrations run in a new generation's schema (see
//! [`crate::generations`]), never on the live tables. The runtime calls the projection's
//! dispatcher (`eventline_apply_<name>`), a one-line function that lives beside the
//! generation's tables and calls the `apply` of the version that built them: it moves with
//! the tables at a cutover or a rollback, so a worker always runs the function its tables were
//! made for, whichever definition its process loaded.
//!
//! The SQL in a definition is the user's data: this module runs it, it does not write it.

use sha2::{Digest, Sha256};
use sqlx::postgres::PgDatabaseError;
use sqlx::{Executor, Row};

use crate::{quoted, Error, Store, StoreTx};

/// One migration file of a declarative projection.
#[derive(Debug, Clone)]
pub struct ProjectionMigration {
    pub version: i64,
    pub description: String,
    /// The file, as the user would find it (for errors).
    pub path: String,
    pub sql: String,
}

/// Why a definition's SQL was refused; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum DefinitionError {
    #[error("{path}: this migration of {projection} was applied with other contents; applied migrations are append-only: add a new file instead")]
    EditedMigration { projection: String, path: String },
    #[error("{projection}: migration {version} was applied but its file is gone")]
    MissingMigration { projection: String, version: i64 },
    #[error("{projection}: {pending} migration(s) not applied yet (run `eventline migrate`)")]
    NotMigrated { projection: String, pending: usize },
    #[error("{path}: {reason}")]
    Sql { path: String, reason: String },
    #[error("{path}: version {version} of {projection} was installed with another apply.sql; a changed apply.sql needs a new version (and a rebuild)")]
    ChangedApply { projection: String, version: i32, path: String },
    #[error("{path}: must define a function apply(batch jsonb) RETURNS TABLE(ord int, reason text); {found}")]
    WrongSignature { path: String, found: String },
    #[error("this definition is version {version}, but the live generation was built by version {live}; deploy version {live} or later (or `eventline rebuild rollback {projection}`)")]
    BehindLive { projection: String, version: i32, live: i32 },
    #[error("{projection}: version {version}'s apply.sql is not installed in this database (run `eventline migrate` with that version's definition)")]
    NotInstalled { projection: String, version: i32 },
    #[error("{path}: table `{table}` {reason}")]
    Table { path: String, table: String, reason: String },
    #[error(transparent)]
    Store(#[from] Error),
}

impl DefinitionError {
    /// Whether trying again later may succeed (see [`Error::is_transient`]).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Store(error) if error.is_transient())
    }
}

impl From<sqlx::Error> for DefinitionError {
    fn from(error: sqlx::Error) -> Self {
        Self::Store(Error::Database(error))
    }
}

fn checksum(sql: &str) -> Vec<u8> {
    Sha256::digest(sql.as_bytes()).to_vec()
}

/// The schema that holds version `version` of `projection`'s `apply` function.
pub fn function_schema(projection: &str, version: i32) -> String {
    format!("eventline_apply_{projection}_v{version}")
}

/// The function the runtime calls for `projection`'s batches, found through `search_path`
/// beside the generation's tables; it calls the `apply` of the version that built them.
pub fn dispatcher(projection: &str) -> String {
    format!("eventline_apply_{projection}")
}

/// What `eventline migrate` did for a versioned projection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Migrated {
    /// The live generation is at this version: its pending migrations ran (how many).
    Ran(usize),
    /// The definition is a newer version than the live generation's: nothing ran on the live
    /// tables; `eventline rebuild start` builds the new version beside them.
    AwaitsRebuild { live: i32 },
}

/// A database error in the user's SQL as the user reads it: the message, the line of `sql` it
/// points at when PostgreSQL says, and the SQLSTATE.
pub fn describe_sql_error(error: &sqlx::Error, sql: &str) -> String {
    let Some(db) = error.as_database_error() else { return error.to_string() };
    let mut reason = db.message().to_string();
    if let Some(pg) = db.try_downcast_ref::<PgDatabaseError>() {
        if let Some(sqlx::postgres::PgErrorPosition::Original(position)) = pg.position() {
            let line = sql.chars().take(position.saturating_sub(1)).filter(|c| *c == '\n').count() + 1;
            reason = format!("line {line}: {reason}");
        }
        if let Some(detail) = pg.detail() {
            reason = format!("{reason} ({detail})");
        }
    }
    if let Some(code) = db.code() {
        reason = format!("{reason} [SQLSTATE {code}]");
    }
    reason
}

impl Store {
    /// Applies the migrations of `projection` not applied to its live generation yet, in version
    /// order, each in its own transaction; refuses an applied file whose contents changed and an
    /// applied one that is gone. A `version`ed projection's live generation records the version
    /// that built it: a newer definition runs nothing on the live tables (it awaits a rebuild),
    /// an older one is refused.
    pub async fn migrate_projection(
        &self,
        projection: &str,
        version: Option<i32>,
        tables: &[String],
        migrations: &[ProjectionMigration],
    ) -> Result<Migrated, DefinitionError> {
        let live = match version {
            Some(version) => Some(self.record_live_version(projection, version, tables).await?),
            None => None,
        };
        if let (Some(version), Some(live)) = (version, live) {
            if version < live {
                return Err(DefinitionError::BehindLive { projection: projection.to_string(), version, live });
            }
        }
        let generation = self.written_generation(projection).await?.0;
        let pending = self.pending_projection_migrations(projection, generation, migrations).await?;
        if let (Some(version), Some(live)) = (version, live) {
            if version > live {
                return Ok(Migrated::AwaitsRebuild { live });
            }
        }
        // An earlier eventline applied the reference projections' migrations through the
        // runtime's history: those count as applied, recorded here without running again. Only
        // versions that are not the runtime's own: a projection's migration numbered like one
        // of them (a timestamp of the same second) is the projection's to run.
        let runtime = crate::runtime_migration_versions();
        let versions: Vec<i64> = pending.iter().map(|m| m.version).filter(|v| !runtime.contains(v)).collect();
        let earlier: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success AND version = ANY($1)")
                .bind(&versions)
                .fetch_all(&self.pool)
                .await?;
        let mut ran = 0;
        for migration in &pending {
            let mut tx = self.pool.begin().await?;
            if !earlier.contains(&migration.version) {
                run_migration(&mut tx, migration).await?;
                ran += 1;
            }
            record_migration(&mut tx, projection, generation, migration).await?;
            tx.commit().await?;
        }
        Ok(Migrated::Ran(ran))
    }

    /// The live generation's version of `projection`, recording `version` (and its `tables`)
    /// for it when none is (a projection migrated for the first time, or by an eventline that
    /// kept no versions).
    async fn record_live_version(&self, projection: &str, version: i32, tables: &[String]) -> Result<i32, Error> {
        let mut tx = self.pool.begin().await?;
        sqlx::query!(
            "INSERT INTO eventline_generations (projection, generation, state, live_since, version, tables)
             SELECT $1, 1, 'live', now(), $2, $3 WHERE NOT EXISTS (SELECT 1 FROM eventline_generations WHERE projection = $1)
             ON CONFLICT DO NOTHING",
            projection,
            version,
            tables
        )
        .execute(&mut *tx)
        .await?;
        let live: Option<i32> = sqlx::query_scalar!(
            "UPDATE eventline_generations
             SET version = coalesce(version, $2),
                 tables = CASE WHEN coalesce(version, $2) = $2 THEN coalesce(tables, $3) ELSE tables END
             WHERE projection = $1 AND state = 'live' RETURNING version",
            projection,
            version,
            tables
        )
        .fetch_optional(&mut *tx)
        .await?
        .flatten();
        tx.commit().await?;
        Ok(live.unwrap_or(version))
    }

    /// The generation this store's connections write (the live one, or the one being rebuilt)
    /// and the version that built it, when recorded.
    pub async fn written_generation(&self, projection: &str) -> Result<(i32, Option<i32>), Error> {
        if let Some(schema) = &self.rebuilding {
            let generation = crate::generations::generation_of_schema(projection, schema)
                .expect("a rebuilding store connects to a generation's schema");
            let version: Option<i32> = sqlx::query_scalar!(
                "SELECT version FROM eventline_generations WHERE projection = $1 AND generation = $2",
                projection,
                generation
            )
            .fetch_optional(&self.pool)
            .await?
            .flatten();
            return Ok((generation, version));
        }
        let live = sqlx::query!(
            "SELECT generation, version FROM eventline_generations WHERE projection = $1 AND state = 'live'",
            projection
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(live.map_or((1, None), |row| (row.generation, row.version)))
    }

    /// Fails unless every migration of `projection` was applied as it is now to the generation
    /// this store writes; the live generation of an older version may lack the new version's
    /// migrations (they run in the rebuild that builds it).
    pub async fn ensure_projection_migrated(
        &self,
        projection: &str,
        version: Option<i32>,
        migrations: &[ProjectionMigration],
    ) -> Result<(), DefinitionError> {
        let (generation, built_by) = self.written_generation(projection).await?;
        let pending = self.pending_projection_migrations(projection, generation, migrations).await?;
        let awaits_rebuild =
            self.rebuilding.is_none() && matches!((version, built_by), (Some(v), Some(live)) if v > live);
        if pending.is_empty() || awaits_rebuild {
            return Ok(());
        }
        Err(DefinitionError::NotMigrated { projection: projection.to_string(), pending: pending.len() })
    }

    async fn pending_projection_migrations(
        &self,
        projection: &str,
        generation: i32,
        migrations: &[ProjectionMigration],
    ) -> Result<Vec<ProjectionMigration>, DefinitionError> {
        let applied = sqlx::query!(
            "SELECT version, checksum FROM eventline_projection_migrations
             WHERE projection = $1 AND generation = $2 ORDER BY version",
            projection,
            generation
        )
        .fetch_all(&self.pool)
        .await?;
        for row in &applied {
            match migrations.iter().find(|m| m.version == row.version) {
                None => {
                    return Err(DefinitionError::MissingMigration {
                        projection: projection.to_string(),
                        version: row.version,
                    })
                }
                Some(file) if checksum(&file.sql) != row.checksum => {
                    return Err(DefinitionError::EditedMigration {
                        projection: projection.to_string(),
                        path: file.path.clone(),
                    })
                }
                Some(_) => {}
            }
        }
        let mut pending: Vec<ProjectionMigration> =
            migrations.iter().filter(|m| !applied.iter().any(|a| a.version == m.version)).cloned().collect();
        pending.sort_by_key(|m| m.version);
        Ok(pending)
    }

    /// Installs version `version` of `projection`'s `apply` function from `sql` (the contents of
    /// `path`) in its own schema, unless it is installed already; refuses an `apply.sql` that
    /// changed under a version a generation was built by, and one that does not define the
    /// expected function.
    /// Returns the function's schema.
    pub async fn install_apply(
        &self,
        projection: &str,
        version: i32,
        path: &str,
        sql: &str,
    ) -> Result<String, DefinitionError> {
        let schema = function_schema(projection, version);
        let sum = checksum(sql);
        // This very `apply.sql` installed: done. Another one under the same version is refused
        // once a generation was built by it (its rows came from the old one); until then the
        // version is still being written, and is installed again.
        let installed = |existing: Option<Installed>| match existing {
            Some(existing) if existing.checksum == sum => Ok(true),
            Some(existing) if existing.in_use => Err(DefinitionError::ChangedApply {
                projection: projection.to_string(),
                version,
                path: path.to_string(),
            }),
            _ => Ok(false),
        };
        if installed(installed_function(&self.pool, projection, version).await?)? {
            return Ok(schema);
        }
        let mut tx = self.pool.begin().await?;
        // Several workers may start at once: one installs, the others wait and find it.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('eventline.apply.' || $1))")
            .bind(projection)
            .execute(&mut *tx)
            .await?;
        if installed(installed_function(&mut *tx, projection, version).await?)? {
            return Ok(schema);
        }
        let prepare = format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}; SET LOCAL search_path = {schema}, public",
            schema = quoted(&schema)
        );
        (&mut *tx).execute(prepare.as_str()).await?;
        (&mut *tx).execute(sql).await.map_err(|error| DefinitionError::Sql {
            path: path.to_string(),
            reason: describe_sql_error(&error, sql),
        })?;
        let result: Option<String> = sqlx::query_scalar(
            "SELECT pg_get_function_result(p.oid) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
             WHERE n.nspname = $1 AND p.proname = 'apply' AND pg_get_function_identity_arguments(p.oid) = 'batch jsonb'",
        )
        .bind(&schema)
        .fetch_optional(&mut *tx)
        .await?;
        match result.as_deref() {
            Some("TABLE(ord integer, reason text)") => {}
            Some(other) => {
                return Err(DefinitionError::WrongSignature {
                    path: path.to_string(),
                    found: format!("it returns {other}"),
                })
            }
            None => {
                return Err(DefinitionError::WrongSignature {
                    path: path.to_string(),
                    found: "no function apply(batch jsonb) was created".into(),
                })
            }
        }
        (&mut *tx).execute("SET LOCAL search_path = public").await?;
        sqlx::query!(
            "INSERT INTO eventline_projection_functions (projection, version, function_schema, checksum)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (projection, version) DO UPDATE SET checksum = excluded.checksum, installed_at = now()",
            projection,
            version,
            schema,
            sum
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(schema)
    }

    /// Creates the dispatcher beside the tables this store writes when it is missing (a database
    /// an earlier eventline migrated), calling the version that built them, or `version` when
    /// none is recorded.
    pub async fn ensure_dispatcher(&self, projection: &str, version: i32) -> Result<(), DefinitionError> {
        let schema = quoted(self.rebuilding.as_deref().unwrap_or("public"));
        let exists: bool = sqlx::query_scalar("SELECT to_regprocedure($1) IS NOT NULL")
            .bind(format!("{schema}.{}(jsonb)", quoted(&dispatcher(projection))))
            .fetch_one(&self.pool)
            .await?;
        if exists {
            return Ok(());
        }
        let built_by = self.written_generation(projection).await?.1;
        let mut connection = self.pool.acquire().await?;
        create_dispatcher(&mut connection, &schema, projection, built_by.unwrap_or(version)).await
    }

    /// Checks that each of `tables` exists in `public` with a primary key (`path` names the
    /// definition in errors).
    pub async fn check_tables(&self, path: &str, tables: &[String]) -> Result<(), DefinitionError> {
        let mut connection = self.pool.acquire().await?;
        check_tables_in(&mut connection, "public", path, tables).await
    }
}

/// Checks that each of `tables` exists in `schema` with a primary key (`path` names the
/// definition in errors).
pub(crate) async fn check_tables_in(
    connection: &mut sqlx::PgConnection,
    schema: &str,
    path: &str,
    tables: &[String],
) -> Result<(), DefinitionError> {
    for table in tables {
        let row = sqlx::query(
            "SELECT c.oid IS NOT NULL AS found,
                    EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conrelid = c.oid AND k.contype = 'p') AS keyed
             FROM (SELECT to_regclass($1)::oid AS oid) c",
        )
        .bind(format!("{}.{}", quoted(schema), quoted(table)))
        .fetch_one(&mut *connection)
        .await?;
        let (found, keyed): (bool, Option<bool>) = (row.get("found"), row.get("keyed"));
        if !found {
            return Err(DefinitionError::Table {
                path: path.to_string(),
                table: table.clone(),
                reason: "is declared but its migrations do not create it".into(),
            });
        }
        if keyed != Some(true) {
            return Err(DefinitionError::Table {
                path: path.to_string(),
                table: table.clone(),
                reason: "has no primary key (rebuilds compare and API reads look up rows by it)".into(),
            });
        }
    }
    Ok(())
}

/// An installed version of a projection's `apply.sql`.
struct Installed {
    checksum: Vec<u8>,
    /// Whether a generation was built by it.
    in_use: bool,
}

async fn installed_function(
    executor: impl sqlx::PgExecutor<'_>,
    projection: &str,
    version: i32,
) -> Result<Option<Installed>, sqlx::Error> {
    sqlx::query_as!(
        Installed,
        r#"SELECT f.checksum, EXISTS (SELECT 1 FROM eventline_generations g
                                      WHERE g.projection = f.projection AND g.version = f.version) AS "in_use!"
           FROM eventline_projection_functions f WHERE f.projection = $1 AND f.version = $2"#,
        projection,
        version
    )
    .fetch_optional(executor)
    .await
}

/// Runs one migration file in `tx` (where its unqualified names land is the connection's
/// `search_path`: `public`, or a new generation's schema first).
pub(crate) async fn run_migration(
    tx: &mut sqlx::PgConnection,
    migration: &ProjectionMigration,
) -> Result<(), DefinitionError> {
    tx.execute(migration.sql.as_str()).await.map_err(|error| DefinitionError::Sql {
        path: migration.path.clone(),
        reason: describe_sql_error(&error, &migration.sql),
    })?;
    Ok(())
}

/// Records `migration` as applied to `generation` of `projection`.
pub(crate) async fn record_migration(
    tx: &mut sqlx::PgConnection,
    projection: &str,
    generation: i32,
    migration: &ProjectionMigration,
) -> Result<(), Error> {
    sqlx::query!(
        "INSERT INTO eventline_projection_migrations (projection, generation, version, description, checksum)
         VALUES ($1, $2, $3, $4, $5)",
        projection,
        generation,
        migration.version,
        migration.description,
        checksum(&migration.sql)
    )
    .execute(tx)
    .await?;
    Ok(())
}

/// Creates `projection`'s dispatcher in `schema` (quoted), calling version `version`'s `apply`;
/// refused when that version was never installed.
pub(crate) async fn create_dispatcher(
    tx: &mut sqlx::PgConnection,
    schema: &str,
    projection: &str,
    version: i32,
) -> Result<(), DefinitionError> {
    if installed_function(&mut *tx, projection, version).await?.is_none() {
        return Err(DefinitionError::NotInstalled { projection: projection.to_string(), version });
    }
    // A single SELECT in SQL: the planner inlines it, so the call costs nothing extra.
    let create = format!(
        "CREATE OR REPLACE FUNCTION {schema}.{dispatcher}(batch jsonb) RETURNS TABLE(ord int, reason text)
         LANGUAGE sql AS $dispatch$ SELECT * FROM {function}.apply(batch) $dispatch$",
        dispatcher = quoted(&dispatcher(projection)),
        function = quoted(&function_schema(projection, version)),
    );
    tx.execute(create.as_str()).await?;
    Ok(())
}

/// What one call of a projection's `apply` returned: each refused event's `ord` and reason.
pub type Refusals = Vec<(i32, Option<String>)>;

impl StoreTx {
    /// Calls `projection`'s dispatcher (so the `apply` of the version that built the tables this
    /// transaction writes) with `batch` (JSON text) behind a savepoint: on
    /// refusals or an error the caller rolls back to it ([`StoreTx::rollback_apply`]); otherwise
    /// what it wrote commits with the transaction (the savepoint is simply left: releasing it
    /// would cost a round trip and change nothing).
    pub async fn call_apply(&mut self, projection: &str, batch: &str) -> Result<Refusals, Error> {
        (&mut *self.tx).execute("SAVEPOINT eventline_apply").await?;
        let rows = sqlx::query(&format!("SELECT ord, reason FROM {}($1::jsonb)", quoted(&dispatcher(projection))))
            .bind(batch)
            .fetch_all(&mut *self.tx)
            .await?;
        Ok(rows.iter().map(|row| (row.get::<i32, _>("ord"), row.get::<Option<String>, _>("reason"))).collect())
    }

    /// Undoes everything the last [`StoreTx::call_apply`] did.
    pub async fn rollback_apply(&mut self) -> Result<(), Error> {
        (&mut *self.tx).execute("ROLLBACK TO SAVEPOINT eventline_apply").await?;
        Ok(())
    }
}

impl Error {
    /// Whether this is an error the user's SQL raised for the data it was given (a constraint,
    /// a bad value, a `RAISE`): a fault of one event, not of the database.
    pub fn is_data_error(&self) -> bool {
        match self {
            Self::Database(sqlx::Error::Database(db)) => db.code().is_some_and(|code| {
                // 22: data exception, 23: integrity constraint violation, P0: PL/pgSQL raise.
                code.starts_with("22") || code.starts_with("23") || code.starts_with("P0")
            }),
            _ => false,
        }
    }

    /// The database's message, for a dead letter's reason.
    pub fn database_message(&self) -> String {
        match self {
            Self::Database(sqlx::Error::Database(db)) => match db.code() {
                Some(code) => format!("{} [SQLSTATE {code}]", db.message()),
                None => db.message().to_string(),
            },
            other => other.to_string(),
        }
    }
}
