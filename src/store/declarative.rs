//! What declarative projections need from the database: their migration files applied once
//! each (an edited applied file refused, as sqlx does), their `apply` function installed per
//! version in a schema of its own, and that function called with a batch inside the runtime's
//! transaction, behind a savepoint the runtime can roll back to.
//!
//! The SQL in a definition is the user's data: this module runs it, it does not write it.

use sha2::{Digest, Sha256};
use sqlx::postgres::PgDatabaseError;
use sqlx::{Executor, Row};

use crate::{Error, Store, StoreTx};

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
    #[error("{path}: table `{table}` {reason}")]
    Table { path: String, table: String, reason: String },
    #[error(transparent)]
    Store(#[from] Error),
}

impl From<sqlx::Error> for DefinitionError {
    fn from(error: sqlx::Error) -> Self {
        Self::Store(Error::Database(error))
    }
}

fn checksum(sql: &str) -> Vec<u8> {
    Sha256::digest(sql.as_bytes()).to_vec()
}

fn quoted(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

/// The schema that holds version `version` of `projection`'s `apply` function.
pub fn function_schema(projection: &str, version: i32) -> String {
    format!("eventline_apply_{projection}_v{version}")
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
    /// Applies the migrations of `projection` not applied yet, in version order, each in its own
    /// transaction; refuses an applied file whose contents changed and an applied one that is
    /// gone. Returns how many ran.
    pub async fn migrate_projection(
        &self,
        projection: &str,
        migrations: &[ProjectionMigration],
    ) -> Result<usize, DefinitionError> {
        let pending = self.pending_projection_migrations(projection, migrations).await?;
        // An earlier eventline applied the reference projections' migrations through the
        // runtime's history: those count as applied, recorded here without running again.
        let versions: Vec<i64> = pending.iter().map(|m| m.version).collect();
        let earlier: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success AND version = ANY($1)")
                .bind(&versions)
                .fetch_all(&self.pool)
                .await?;
        let mut ran = 0;
        for migration in &pending {
            let mut tx = self.pool.begin().await?;
            if !earlier.contains(&migration.version) {
                (&mut *tx).execute(migration.sql.as_str()).await.map_err(|error| DefinitionError::Sql {
                    path: migration.path.clone(),
                    reason: describe_sql_error(&error, &migration.sql),
                })?;
                ran += 1;
            }
            sqlx::query!(
                "INSERT INTO eventline_projection_migrations (projection, version, description, checksum)
                 VALUES ($1, $2, $3, $4)",
                projection,
                migration.version,
                migration.description,
                checksum(&migration.sql)
            )
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        }
        Ok(ran)
    }

    /// Fails unless every migration of `projection` was applied as it is now.
    pub async fn ensure_projection_migrated(
        &self,
        projection: &str,
        migrations: &[ProjectionMigration],
    ) -> Result<(), DefinitionError> {
        let pending = self.pending_projection_migrations(projection, migrations).await?;
        if pending.is_empty() {
            return Ok(());
        }
        Err(DefinitionError::NotMigrated { projection: projection.to_string(), pending: pending.len() })
    }

    async fn pending_projection_migrations(
        &self,
        projection: &str,
        migrations: &[ProjectionMigration],
    ) -> Result<Vec<ProjectionMigration>, DefinitionError> {
        let applied = sqlx::query!(
            "SELECT version, checksum FROM eventline_projection_migrations WHERE projection = $1 ORDER BY version",
            projection
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
    /// changed under the same version and one that does not define the expected function.
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
        // This very `apply.sql` installed: done; another one under the same version: refused.
        let installed = |existing: Option<Vec<u8>>| match existing {
            Some(existing) if existing == sum => Ok(true),
            Some(_) => Err(DefinitionError::ChangedApply {
                projection: projection.to_string(),
                version,
                path: path.to_string(),
            }),
            None => Ok(false),
        };
        if installed(installed_checksum(&self.pool, projection, version).await?)? {
            return Ok(schema);
        }
        let mut tx = self.pool.begin().await?;
        // Several workers may start at once: one installs, the others wait and find it.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('eventline.apply.' || $1))")
            .bind(projection)
            .execute(&mut *tx)
            .await?;
        if installed(installed_checksum(&mut *tx, projection, version).await?)? {
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
             VALUES ($1, $2, $3, $4)",
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

    /// Checks that each of `tables` exists in `public` with a primary key (`path` names the
    /// definition in errors).
    pub async fn check_tables(&self, path: &str, tables: &[String]) -> Result<(), DefinitionError> {
        for table in tables {
            let row = sqlx::query(
                "SELECT c.oid IS NOT NULL AS found,
                        EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conrelid = c.oid AND k.contype = 'p') AS keyed
                 FROM (SELECT to_regclass($1)::oid AS oid) c",
            )
            .bind(format!("public.{}", quoted(table)))
            .fetch_one(&self.pool)
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
}

/// The checksum of the `apply.sql` installed for `version` of `projection`, if any.
async fn installed_checksum(
    executor: impl sqlx::PgExecutor<'_>,
    projection: &str,
    version: i32,
) -> Result<Option<Vec<u8>>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT checksum FROM eventline_projection_functions WHERE projection = $1 AND version = $2",
        projection,
        version
    )
    .fetch_optional(executor)
    .await
}

/// What one call of a projection's `apply` returned: each refused event's `ord` and reason.
pub type Refusals = Vec<(i32, Option<String>)>;

impl StoreTx {
    /// Calls the `apply` function in `schema` with `batch` (JSON text) behind a savepoint: on
    /// refusals or an error the caller rolls back to it ([`StoreTx::rollback_apply`]); otherwise
    /// what it wrote commits with the transaction (the savepoint is simply left: releasing it
    /// would cost a round trip and change nothing).
    pub async fn call_apply(&mut self, schema: &str, batch: &str) -> Result<Refusals, Error> {
        (&mut *self.tx).execute("SAVEPOINT eventline_apply").await?;
        let rows = sqlx::query(&format!("SELECT ord, reason FROM {}.apply($1::jsonb)", quoted(schema)))
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
