//! # eventline-store
//!
//! The store layer: the only crate that writes SQL. It knows tables, rows and transactions;
//! it knows nothing of Kafka clients or how events are decoded.
//!
//! # Layout
//! - this file: connecting, creating the database, migrations, the transaction handle, errors.
//! - [`checkpoints`]: the per-partition positions that move with every applied batch.
//! - [`dead_letters`]: records a projection did not apply.
//! - [`runtime`]: applied event ids (idempotency) and parked keys.
//! - [`api_keys`]: the gateway's API keys, as hashes.
//! - [`audit`]: the record of operator actions.
//! - [`declarative`]: declarative projections' migrations, `apply` functions and calls.
//! - [`generations`]: rebuilding a projection beside the live one, switching, resetting.
//! - [`outbox`]: the transactional outbox in an upstream database, read by the relay.
//! - [`tables`]: any declared table's shape and rows, for the query API.
//! - [`diagnostics`]: PostgreSQL's counts of eventline's statements.

pub mod api_keys;
pub mod audit;
pub mod availability;
pub mod checkpoints;
pub mod dead_letters;
pub mod declarative;
pub mod diagnostics;
pub mod erasure;
pub mod generations;
pub mod outbox;
pub mod runtime;
pub mod subject_keys;
pub mod tables;

/// The SQL toolkit a Rust projection of an application's own uses for its queries, at the
/// version eventline is built with (see [`StoreTx::connection`]).
pub use sqlx;

use std::sync::Arc;
use std::time::Duration;

use eventline_core::config::DatabaseUrl;
use sqlx::migrate::MigrateDatabase;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres};

/// The runtime's migrations (`migrations/`), embedded in the binary. A projection's own
/// migrations are applied per projection (see [`declarative`]).
fn migrators() -> Vec<sqlx::migrate::Migrator> {
    let mut runtime = sqlx::migrate!("../../migrations");
    // Databases migrated by an earlier eventline also hold the reference projections' versions
    // in this history; they are not this migrator's to worry about.
    runtime.set_ignore_missing(true);
    vec![runtime]
}

/// The versions of the runtime's own migrations.
pub(crate) fn runtime_migration_versions() -> Vec<i64> {
    migrators().iter().flat_map(|migrator| migrator.iter().map(|migration| migration.version)).collect()
}

/// What can go wrong in the store, split by what the caller should do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot reach PostgreSQL at {url} within {}s: {reason}", timeout.as_secs())]
    Unreachable { url: String, timeout: Duration, reason: String },
    #[error(
        "PostgreSQL at {url} is not the server it should be: {reason} (sslrootcert names the CA to trust, \
         and the URL's host must be a name the server's certificate holds)"
    )]
    Untrusted { url: String, reason: String },
    #[error("database `{0}` does not exist (create it with `eventline migrate`)")]
    MissingDatabase(String),
    #[error("another worker moved {projection} {topic}/{partition} (expected position {expected:?}); this worker no longer owns it")]
    Fenced { projection: String, topic: String, partition: i32, expected: Option<i64> },
    #[error("the database schema is {missing} migration(s) behind this eventline (run `eventline migrate`)")]
    NotMigrated { missing: usize },
    #[error("migration failed")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// The database refused a request, saying why (the message is the whole story).
    #[error("{0}")]
    Refused(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

impl Error {
    /// Whether trying again later may succeed: the database was unreachable, restarting, or
    /// aborted the transaction for concurrency reasons. Anything else is a bug or bad data.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Unreachable { .. } => true,
            Self::Database(error) => match error {
                sqlx::Error::Io(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed => true,
                sqlx::Error::Database(db) => db.code().is_some_and(|code| {
                    // 08: connection exception, 40001/40P01: serialization failure/deadlock,
                    // 57P0x: server shutting down or restarting, 53: insufficient resources.
                    code.starts_with("08")
                        || code == "40001"
                        || code == "40P01"
                        || code.starts_with("57P")
                        || code.starts_with("53")
                }),
                _ => false,
            },
            _ => false,
        }
    }
}

/// A connection pool to eventline's database.
#[derive(Clone)]
pub struct Store {
    pool: PgPool,
    /// The schema of the generation being rebuilt these connections write, if not the live one.
    rebuilding: Option<Arc<str>>,
}

/// An open transaction. Dropping it without [`StoreTx::commit`] rolls it back.
pub struct StoreTx {
    tx: sqlx::Transaction<'static, Postgres>,
    rebuilding: Option<Arc<str>>,
}

impl StoreTx {
    pub async fn commit(self) -> Result<(), Error> {
        Ok(self.tx.commit().await?)
    }

    /// The transaction's connection, for the queries of a Rust projection of an application's
    /// own (through the re-exported [`sqlx`]): what they write commits or rolls back with the
    /// batch and its offsets. During a rebuild its `search_path` puts the generation first, so
    /// unqualified table names reach the generation being built.
    pub fn connection(&mut self) -> &mut sqlx::PgConnection {
        &mut self.tx
    }

    /// Whether this transaction writes a generation being rebuilt rather than the live one. A
    /// handler with effects beyond its own tables (mail, calls) must not repeat them then.
    pub fn rebuilding(&self) -> bool {
        self.rebuilding.is_some()
    }
}

impl Store {
    /// Connects, failing with [`Error::Unreachable`] or [`Error::MissingDatabase`] within `timeout`.
    pub async fn connect(url: &DatabaseUrl, max_connections: u32, timeout: Duration) -> Result<Self, Error> {
        Self::connect_with(url, max_connections, timeout, None).await
    }

    /// Connects like [`Store::connect`], to the generation of a projection being rebuilt in
    /// `schema`: its tables there come first in `search_path`, so the same queries write it.
    pub async fn connect_rebuilding(
        url: &DatabaseUrl,
        max_connections: u32,
        timeout: Duration,
        schema: &str,
    ) -> Result<Self, Error> {
        Self::connect_with(url, max_connections, timeout, Some(schema)).await
    }

    async fn connect_with(
        url: &DatabaseUrl,
        max_connections: u32,
        timeout: Duration,
        schema: Option<&str>,
    ) -> Result<Self, Error> {
        let mut options = connect_options(url)?;
        if let Some(schema) = schema {
            options = options.options([("search_path", format!("{schema},public"))]);
        }
        let pool = PgPoolOptions::new().max_connections(max_connections).acquire_timeout(timeout).connect_with(options);
        let pool = match tokio::time::timeout(timeout, pool).await {
            Ok(Ok(pool)) => pool,
            Ok(Err(error)) => return Err(connect_error(url, timeout, error)),
            Err(_) => return Err(unreachable(url, timeout, "timed out".into())),
        };
        Ok(Self { pool, rebuilding: schema.map(Arc::from) })
    }

    /// The pool, for the reads of an application's own projections (through the re-exported
    /// [`sqlx`]).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub async fn begin(&self) -> Result<StoreTx, Error> {
        Ok(StoreTx { tx: self.pool.begin().await?, rebuilding: self.rebuilding.clone() })
    }

    /// Applies every embedded migration not yet applied.
    pub async fn migrate(&self) -> Result<(), Error> {
        for migrator in migrators() {
            migrator.run(&self.pool).await?;
        }
        Ok(())
    }

    /// Fails with [`Error::NotMigrated`] unless every embedded migration has been applied.
    pub async fn ensure_migrated(&self) -> Result<(), Error> {
        let applied: Vec<i64> = match sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
            .fetch_all(&self.pool)
            .await
        {
            Ok(versions) => versions,
            // 42P01: no migrations table, so nothing was ever applied.
            Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("42P01") => Vec::new(),
            Err(error) => return Err(error.into()),
        };
        let missing = migrators().iter().flat_map(|m| m.iter()).filter(|m| !applied.contains(&m.version)).count();
        if missing > 0 {
            return Err(Error::NotMigrated { missing });
        }
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Creates the database named in `url` when it does not exist; returns whether it did.
pub async fn create_database_if_missing(url: &DatabaseUrl, timeout: Duration) -> Result<bool, Error> {
    let work = async {
        if Postgres::database_exists(url.expose()).await? {
            return Ok(false);
        }
        Postgres::create_database(url.expose()).await?;
        Ok(true)
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(Ok(created)) => Ok(created),
        Ok(Err(error)) => Err(connect_error(url, timeout, error)),
        Err(_) => Err(unreachable(url, timeout, "timed out".into())),
    }
}

/// Drops the database named in `url`, disconnecting its sessions. For tests and demos.
pub async fn drop_database(url: &DatabaseUrl) -> Result<(), Error> {
    if Postgres::database_exists(url.expose()).await? {
        Postgres::force_drop_database(url.expose()).await?;
    }
    Ok(())
}

/// What this process's connections call themselves unless their URL says (`application_name`).
static APPLICATION_NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Names this process's connections to PostgreSQL (`pg_stat_activity`, the origin of audit
/// entries), e.g. `eventline dlq retry`; once per process, before connecting.
pub fn name_connections(name: &str) {
    let _ = APPLICATION_NAME.set(name.to_string());
}

fn connect_options(url: &DatabaseUrl) -> Result<PgConnectOptions, Error> {
    let mut options: PgConnectOptions = url.expose().parse()?;
    if options.get_application_name().is_none() {
        options = options.application_name(APPLICATION_NAME.get().map_or("eventline", String::as_str));
    }
    // Plan each statement with the tables' sizes as they are now. A generic plan cached while a
    // table was new and empty (a sequential scan) otherwise stays in use as the table grows:
    // seen here making the idempotency lookup 50x slower within 30,000 events.
    Ok(options.options([("plan_cache_mode", "force_custom_plan")]))
}

fn connect_error(url: &DatabaseUrl, timeout: Duration, error: sqlx::Error) -> Error {
    if let sqlx::Error::Database(db) = &error {
        if db.code().as_deref() == Some("3D000") {
            return Error::MissingDatabase(url.database_name().to_string());
        }
    }
    if let sqlx::Error::Io(io) = &error {
        if let Some(refused @ rustls::Error::InvalidCertificate(_)) =
            io.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Error::Untrusted { url: url.to_string(), reason: refused.to_string() };
        }
    }
    match error {
        sqlx::Error::PoolTimedOut => unreachable(url, timeout, "timed out".into()),
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) => unreachable(url, timeout, error.to_string()),
        other => Error::Database(other),
    }
}

fn unreachable(url: &DatabaseUrl, timeout: Duration, reason: String) -> Error {
    Error::Unreachable { url: url.to_string(), timeout, reason }
}

/// `identifier` quoted for SQL (a table, column or schema name the store builds a statement with).
pub(crate) fn quoted(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}
