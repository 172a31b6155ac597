//! What PostgreSQL counts about eventline's own statements, for benchmarks and operators.

use std::collections::HashMap;

use crate::{Error, Store};

/// One normalised statement as `pg_stat_statements` counts it in this database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementCalls {
    /// The statement's text, with its constants replaced by `$n`.
    pub query: String,
    /// How many times it ran: each one a round trip, since eventline does not pipeline.
    pub calls: i64,
}

impl Store {
    /// Every statement run so far in this database, by `pg_stat_statements`' query id; `None`
    /// when the server did not load the extension (it must be named in
    /// `shared_preload_libraries`, which `scripts/services.sh` does for a cluster it starts).
    pub async fn statement_calls(&self) -> Result<Option<HashMap<i64, StatementCalls>>, Error> {
        let preloaded: String =
            sqlx::query_scalar("SELECT current_setting('shared_preload_libraries')").fetch_one(&self.pool).await?;
        if !preloaded.split(',').any(|library| library.trim() == "pg_stat_statements") {
            return Ok(None);
        }
        sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements").execute(&self.pool).await?;
        let rows: Vec<(Option<i64>, i64, Option<String>)> = sqlx::query_as(
            "SELECT queryid, calls, query FROM pg_stat_statements \
             WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut statements: HashMap<i64, StatementCalls> = HashMap::new();
        for (id, calls, query) in rows {
            // One id may have several rows (one per role, top level or nested): add them up.
            let Some(id) = id else { continue };
            let entry =
                statements.entry(id).or_insert_with(|| StatementCalls { query: query.unwrap_or_default(), calls: 0 });
            entry.calls += calls;
        }
        Ok(Some(statements))
    }
}
