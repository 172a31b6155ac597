//! # eventline-api
//!
//! The query API: the projections over HTTP with keyset pagination, read-your-writes through
//! consistency tokens, and every projection's position and lag (`GET /v1/projections`).
//!
//! Every answer carries how fresh it is: `Eventline-Positions` (the projection's next offset per
//! topic and partition, read before the data, so the data is at least that fresh) and
//! `Eventline-Checkpointed-At` (when the projection last committed). With a
//! `consistency_token`, a query first waits until the projection passed every position in it;
//! when `wait_ms` runs out it answers 425 `not-yet-consistent`, never older data as if fresh.

pub mod gauges;
pub mod params;
mod progress;
pub mod query;
pub mod status;
mod tables;

use std::sync::Arc;

use crate::status::BrokerConnection;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Router;
use eventline_auth::Auth;
use eventline_core::cipher;
use eventline_core::config::Namespace;
use eventline_http::Problem;
use eventline_store::audit::NewAuditEntry;
use eventline_store::checkpoints::Checkpoint;
use eventline_store::subject_keys::{KeyRing, KeyRingError};
use eventline_store::Store;
use tokio_util::sync::CancellationToken;

/// Who is asking: every endpoint takes one and hands it to [`Api::freshness`].
pub use eventline_auth::Caller;
pub use params::Consistency;
pub use params::{DEFAULT_LIMIT, MAX_LIMIT, MAX_WAIT_MS};
use progress::Progress;
pub use progress::Requirement;

/// Header naming the projection's next offset per partition: `topic:partition:offset,…`.
pub const POSITIONS_HEADER: HeaderName = HeaderName::from_static("eventline-positions");
/// Header with the time (RFC 3339) the projection last committed a batch.
pub const CHECKPOINTED_AT_HEADER: HeaderName = HeaderName::from_static("eventline-checkpointed-at");

/// A projection the API serves: its name and the topics (without namespace) it reads.
#[derive(Debug, Clone)]
pub struct ProjectionInfo {
    pub name: String,
    pub topics: Vec<String>,
    /// The tables it declares, served at `/v1/tables/<table>`.
    pub tables: Vec<String>,
    /// The columns of those tables holding personal data, as `table.column`.
    pub personal_columns: Vec<String>,
}

/// Shared by every request.
#[derive(Clone)]
pub struct Api(Arc<Inner>);

struct Inner {
    store: Store,
    /// Opens sealed personal data, when a key-encryption key is configured.
    keys: Option<KeyRing>,
    /// The registry's blind indexes, where a filter on a sealed personal column looks.
    blind_indexes: Vec<String>,
    kafka: BrokerConnection,
    projections: Vec<Served>,
    progress: Progress,
    /// Ends the start-up's waits for an unavailable database.
    shutdown: CancellationToken,
}

/// A projection as the API serves it: its name, its consumer group and its topics in this
/// namespace.
struct Served {
    name: String,
    tables: Vec<String>,
    personal_columns: Vec<String>,
    group: String,
    topics: Vec<String>,
}

impl Api {
    /// Starts listening for projection commits (until `shutdown`) and serves `projections`.
    pub fn new(
        store: Store,
        keys: Option<KeyRing>,
        kafka: BrokerConnection,
        namespace: Namespace,
        projections: Vec<ProjectionInfo>,
        blind_indexes: Vec<String>,
        shutdown: CancellationToken,
    ) -> Self {
        let names: Vec<&str> = projections.iter().map(|p| p.name.as_str()).collect();
        let progress = Progress::start(store.clone(), &names, shutdown.clone());
        let projections = projections
            .iter()
            .map(|p| Served {
                name: p.name.clone(),
                tables: p.tables.clone(),
                personal_columns: p.personal_columns.clone(),
                group: namespace.group_id(&p.name),
                topics: p.topics.iter().map(|t| namespace.topic(t)).collect(),
            })
            .collect();
        Self(Arc::new(Inner { store, keys, kafka, projections, progress, blind_indexes, shutdown }))
    }

    /// Each served projection as [`status::collect`] reads it.
    fn served(&self) -> Vec<status::Watched> {
        self.0
            .projections
            .iter()
            .map(|p| status::Watched { name: p.name.clone(), group: p.group.clone(), topics: p.topics.clone() })
            .collect()
    }

    /// The store the API reads (for an application's own endpoints).
    pub fn store(&self) -> &Store {
        &self.0.store
    }

    /// (projection, table) for every table the served projections declare.
    fn declared_tables(&self) -> Vec<(String, String)> {
        self.0.projections.iter().flat_map(|p| p.tables.iter().map(|t| (p.name.clone(), t.clone()))).collect()
    }

    /// The columns of `table` (of `projection`) that hold personal data.
    pub fn personal_columns(&self, projection: &str, table: &str) -> Vec<String> {
        let prefix = format!("{table}.");
        let declared = &self.projection(projection).personal_columns;
        declared.iter().filter_map(|c| c.strip_prefix(&prefix)).map(String::from).collect()
    }

    /// Whether the rows of `table` with these primary `keys`, about to be answered, may show
    /// their personal columns in clear to `caller`: yes for a caller holding the `personal`
    /// scope, once the read is in the audit (who, which table, columns and rows); otherwise the
    /// caller gets them as `null`. A table without personal columns is always clear. When the
    /// audit cannot be written, nothing is answered.
    pub async fn release_personal(
        &self,
        caller: &Caller,
        projection: &str,
        table: &str,
        keys: &[serde_json::Value],
    ) -> Result<Release, Response> {
        let columns = self.personal_columns(projection, table);
        if columns.is_empty() || keys.is_empty() {
            return Ok(Release::Clear(columns));
        }
        if !caller.sees_personal() {
            return Ok(Release::Withheld(columns));
        }
        let entry = NewAuditEntry {
            actor: &caller.id,
            action: "personal.read",
            projection: Some(projection),
            target: serde_json::json!({ "table": table, "columns": columns, "keys": keys }),
            reason: None,
            outcome: serde_json::json!({ "rows": keys.len() }),
        };
        self.0.store.audit_alone(entry).await.map_err(store_failure)?;
        Ok(Release::Clear(columns))
    }

    /// A personal value as a caller allowed to see it gets it: a sealed one opened with its
    /// subject's key, or `null` when that key is gone (the subject was erased) or this process
    /// has no key-encryption key; anything else as it is.
    pub async fn open_personal(&self, value: serde_json::Value) -> Result<serde_json::Value, Response> {
        let Some(text) = value.as_str().filter(|text| text.starts_with(cipher::SEALED_PREFIX)) else {
            return Ok(value);
        };
        let Some(keys) = &self.0.keys else { return Ok(serde_json::Value::Null) };
        let Ok(field) = cipher::SealedField::parse(text) else { return Ok(serde_json::Value::Null) };
        let key = keys.key_for_opening(field.context().subject).await.map_err(key_failure)?;
        Ok(key.and_then(|key| field.open(&key).ok()).unwrap_or(serde_json::Value::Null))
    }

    /// The data subjects whose personal field with any of the registry's blind indexes held
    /// `value`, or `None` when this process seals nothing (values are in clear). Open what is
    /// found to be sure.
    pub async fn subjects_in_blind_indexes(&self, value: &serde_json::Value) -> Result<Option<Vec<String>>, Response> {
        let Some(keys) = &self.0.keys else { return Ok(None) };
        keys.subjects_in_blind_indexes(&self.0.blind_indexes, value).await.map(Some).map_err(key_failure)
    }

    /// The data subjects whose personal field with the blind index `index_name` held `value`
    /// (see the schema annotation `x-blind-index`), or `None` when this process seals nothing
    /// (values are in clear: look the column up). Open what is found to be sure: a subject's
    /// value may have changed since. Only for callers allowed to see personal data.
    pub async fn blind_index_subjects(
        &self,
        index_name: &str,
        value: &serde_json::Value,
    ) -> Result<Option<Vec<String>>, Response> {
        let Some(keys) = &self.0.keys else { return Ok(None) };
        keys.blind_index_subjects(index_name, value).await.map(Some).map_err(key_failure)
    }

    fn projection(&self, name: &str) -> &Served {
        self.0.projections.iter().find(|p| p.name == name).expect("the API is built with every projection it serves")
    }

    /// Checks that `caller` may read `projection`, waits as `consistency` asks, then returns the
    /// projection's freshness (or the 403 or 425 answer). Every endpoint reading a projection
    /// calls it before reading.
    pub async fn freshness(
        &self,
        caller: &Caller,
        projection: &str,
        consistency: &Consistency,
    ) -> Result<Freshness, Response> {
        caller.require_read(projection).map_err(IntoResponse::into_response)?;
        let info = self.projection(projection);
        let Some(token) = &consistency.token else {
            let checkpoints = self.0.store.checkpoints(&info.name).await.map_err(store_failure)?;
            return Ok(Freshness { checkpoints });
        };
        let deadline = tokio::time::Instant::now() + consistency.wait;
        let (checkpoints, missing) = self
            .0
            .progress
            .wait(&self.0.store, &info.name, &info.topics, token, deadline)
            .await
            .map_err(store_failure)?;
        let freshness = Freshness { checkpoints };
        if missing.is_empty() {
            return Ok(freshness);
        }
        let problem = Problem::not_yet_consistent(format!(
            "{} has not yet applied every position of the consistency token after waiting {} ms; try again, or wait longer with wait_ms (at most {MAX_WAIT_MS})",
            info.name,
            consistency.wait.as_millis()
        ))
        .with("projection", serde_json::json!(info.name))
        .with("missing", serde_json::to_value(&missing).expect("requirements serialize"));
        Err((freshness.headers(), problem).into_response())
    }
}

/// What a caller sees of personal columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Release {
    /// In clear (the read is audited): these columns are opened with
    /// [`Api::open_personal`].
    Clear(Vec<String>),
    /// These columns as `null`: the caller does not hold the `personal` scope.
    Withheld(Vec<String>),
}

/// Where a projection stood when an answer was read.
pub struct Freshness {
    checkpoints: Vec<Checkpoint>,
}

impl Freshness {
    pub fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let positions: Vec<String> =
            self.checkpoints.iter().map(|c| format!("{}:{}:{}", c.topic, c.partition, c.next_offset)).collect();
        if let Ok(value) = HeaderValue::from_str(&positions.join(",")) {
            headers.insert(POSITIONS_HEADER, value);
        }
        if let Some(latest) = self.checkpoints.iter().map(|c| c.updated_at).max() {
            let text = latest.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            headers
                .insert(CHECKPOINTED_AT_HEADER, HeaderValue::from_str(&text).expect("a timestamp is a header value"));
        }
        headers
    }
}

/// A key ring's failure as an answer: the database's, or a 500 whose cause is logged.
fn key_failure(error: KeyRingError) -> Response {
    match error {
        KeyRingError::Store(error) => store_failure(error),
        error => {
            tracing::error!(%error, "A data subject's key does not unwrap.");
            Problem::internal("personal data cannot be opened; the server log has the cause").into_response()
        }
    }
}

/// A store failure as an answer: 503 when the database is unreachable, 500 otherwise.
pub fn store_failure(error: eventline_store::Error) -> Response {
    if error.is_transient() {
        tracing::warn!(%error, "Query failed; the database is unavailable.");
        Problem::unavailable("the database is unavailable; try again shortly").into_response()
    } else {
        tracing::error!(%error, "Query failed.");
        Problem::internal("the query failed; the server log has the cause").into_response()
    }
}

/// An application's own query endpoints, added to the API's.
pub type Routes = fn() -> utoipa_axum::router::OpenApiRouter<Api>;

/// The query API's routes and their OpenAPI description: status, every declared table (whose
/// shapes are read from the database now), and the application's own `extra` endpoints, each
/// behind `auth`.
pub async fn router(api: Api, auth: Arc<Auth>, extra: &[Routes]) -> (Router, utoipa::openapi::OpenApi) {
    let mut routes = status::routes();
    for more in extra {
        routes = routes.merge(more());
    }
    let (router, mut openapi) = routes.split_for_parts();
    let shapes = tables::load(&api).await;
    let tables = tables::routes(api.clone(), shapes, &mut openapi);
    eventline_auth::describe_security(&mut openapi, auth.accepts_jwts());
    let router = router
        .with_state(api)
        .merge(tables)
        .layer(axum::middleware::from_fn_with_state(auth, eventline_auth::authenticate_requests));
    (router, openapi)
}
