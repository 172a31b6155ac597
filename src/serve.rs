//! The HTTP process: the gateway, the query API, or both on one listener (`up`).

use std::sync::Arc;

use crate::App;
use anyhow::Context;
use axum::Router;
use eventline_api::{Api, ProjectionInfo};
use eventline_auth::Auth;
use eventline_core::config::{DatabaseUrl, Settings};
use eventline_http::Readiness;
use eventline_store::availability::wait_out_unavailable;
use eventline_store::Store;
use tokio_util::sync::CancellationToken;

use crate::cli::AuthArgs;
use crate::commands::Outcome;
use crate::ingest;

/// Connections shared by the gateway (API keys) and the query API.
const POOL_SIZE: u32 = 16;

/// One part of the HTTP application.
pub struct Service {
    pub router: Router,
    pub openapi: utoipa::openapi::OpenApi,
    /// What `/readyz` asks of it beyond the database, if anything.
    pub readiness: Option<Arc<dyn Readiness>>,
}

/// Longest a `/readyz` waits for the broker: probes give up after a few seconds themselves.
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// The database every part of the process shares, asked once per `/readyz`.
struct DatabaseReadiness(Store);

impl Readiness for DatabaseReadiness {
    fn not_ready(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = Vec<String>> + Send + '_>> {
        Box::pin(async move {
            match self.0.ensure_migrated().await {
                Ok(()) => Vec::new(),
                Err(error) => vec![format!("the database is not usable: {error}")],
            }
        })
    }
}

/// The workers of this process, asked by `/readyz`: each must have its partition assignment.
struct WorkersReadiness;

impl Readiness for WorkersReadiness {
    fn not_ready(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = Vec<String>> + Send + '_>> {
        Box::pin(async move {
            eventline_consumers::health::awaiting_assignment()
                .into_iter()
                .map(|projection| format!("the {projection} worker has no partition assignment yet"))
                .collect()
        })
    }
}

/// The broker, asked by a worker process's `/readyz`.
struct BrokerReadiness(Settings);

impl Readiness for BrokerReadiness {
    fn not_ready(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = Vec<String>> + Send + '_>> {
        Box::pin(async move {
            let within = self.0.connect_timeout.min(PROBE_TIMEOUT);
            match eventline_kafka::admin::check_reachable(&self.0.kafka, within).await {
                Ok(()) => Vec::new(),
                Err(error) => vec![format!("the broker is not reachable: {error}")],
            }
        })
    }
}

/// Serves `/healthz`, `/readyz` (database, broker, every worker assigned) and `/metrics` for a
/// worker process on `listen`, until `shutdown`.
pub async fn worker_health(settings: &Settings, listen: std::net::SocketAddr, shutdown: CancellationToken) -> Outcome {
    probes(settings, listen, &settings.database_url, true, shutdown).await
}

/// Serves `/healthz`, `/readyz` (the outbox database and the broker) and `/metrics` for an
/// outbox relay on `listen`, until `shutdown`.
pub async fn relay_health(settings: &Settings, listen: std::net::SocketAddr, shutdown: CancellationToken) -> Outcome {
    probes(settings, listen, &settings.outbox_database_url, false, shutdown).await
}

/// The probes of a process without an HTTP service of its own: `/readyz` asks `database`, the
/// broker and, with `workers`, this process's workers.
async fn probes(
    settings: &Settings,
    listen: std::net::SocketAddr,
    database: &DatabaseUrl,
    workers: bool,
    shutdown: CancellationToken,
) -> Outcome {
    let listener =
        tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen} (--listen)"))?;
    let store = Store::connect(database, 2, settings.connect_timeout).await?;
    let mut readiness: Vec<Arc<dyn Readiness>> =
        vec![Arc::new(DatabaseReadiness(store.clone())), Arc::new(BrokerReadiness(settings.clone()))];
    if workers {
        readiness.push(Arc::new(WorkersReadiness));
    }
    let app = eventline_http::app(Router::new(), readiness, Vec::new(), crate::metrics::recorder());
    eventline_http::serve(listener, app, shutdown).await.context("the HTTP server failed")?;
    store.close().await;
    Ok(())
}

/// What an HTTP process runs.
pub struct Parts {
    pub gateway: bool,
    pub api: bool,
    /// The operator console at `/console`.
    pub console: bool,
    /// This process runs workers too: `/readyz` asks them.
    pub workers: bool,
}

/// Serves the gateway and the query API, as `parts` says, on EVENTLINE_HTTP_ADDR until
/// `shutdown`, both behind one authentication.
pub async fn http(
    settings: &Settings,
    app: &App,
    args: &AuthArgs,
    parts: Parts,
    shutdown: CancellationToken,
) -> Outcome {
    let listener = tokio::net::TcpListener::bind(settings.http_addr)
        .await
        .with_context(|| format!("cannot listen on {} (EVENTLINE_HTTP_ADDR)", settings.http_addr))?;
    let store = Store::connect(&settings.database_url, POOL_SIZE, settings.connect_timeout).await?;
    // A dropped connection or a restarting database at start-up is waited out, as workers do.
    let migrated = wait_out_unavailable("checking migrations", &shutdown, || store.ensure_migrated());
    if migrated.await?.is_none() {
        return Ok(());
    }
    let auth = Arc::new(if args.insecure_no_auth {
        tracing::warn!(
            "AUTHENTICATION IS OFF (--insecure-no-auth): anyone who can reach {} may publish any event and read \
             every projection. Development only.",
            settings.http_addr
        );
        Auth::disabled()
    } else {
        Auth::new(store.clone(), settings.jwt.clone())
    });
    // In the background: an identity provider that is slow to answer must not hold up the start.
    tokio::spawn({
        let auth = auth.clone();
        async move { auth.prefetch().await }
    });
    let mut services = Vec::new();
    if parts.gateway {
        services.push(ingest::gateway_service(settings, store.clone(), auth.clone(), shutdown.clone()).await?);
    }
    if parts.api {
        services.push(api_service(settings, app, store.clone(), auth.clone(), shutdown.clone()).await?);
    }
    if parts.console {
        services.push(console_service(settings, app, store.clone(), auth, shutdown.clone())?);
    }
    let mut router = Router::new();
    let mut readiness: Vec<Arc<dyn Readiness>> = vec![Arc::new(DatabaseReadiness(store.clone()))];
    if parts.workers {
        readiness.push(Arc::new(WorkersReadiness));
    }
    let mut openapi = Vec::new();
    for service in services {
        router = router.merge(service.router);
        readiness.extend(service.readiness);
        openapi.push(service.openapi);
    }
    let app = eventline_http::app(router, readiness, openapi, crate::metrics::recorder());
    eventline_http::serve(listener, app, shutdown).await.context("the HTTP server failed")?;
    store.close().await;
    Ok(())
}

/// The operator console over every projection of `app`.
fn console_service(
    settings: &Settings,
    app: &App,
    store: Store,
    auth: Arc<Auth>,
    shutdown: CancellationToken,
) -> Result<Service, crate::Failure> {
    let registry = crate::commands::load_registry(settings)?;
    let watched = app
        .projections()
        .all()
        .iter()
        .map(|p| eventline_api::status::Watched {
            name: p.name().to_string(),
            group: settings.namespace.group_id(p.name()),
            topics: p.topics().iter().map(|t| settings.namespace.topic(t)).collect(),
        })
        .collect();
    let kafka = eventline_api::status::BrokerConnection::new(&settings.kafka)?;
    let snapshots =
        eventline_console::Snapshots::start(store.clone(), kafka, watched, settings.console_refresh, shutdown.clone());
    let console = eventline_console::Console::new(
        auth,
        snapshots,
        store,
        registry,
        app.projections().clone(),
        settings.clone(),
        shutdown,
    );
    let router = eventline_console::router(console);
    // HTML pages, not API operations: nothing to add to /openapi.json.
    Ok(Service { router, openapi: utoipa::openapi::OpenApiBuilder::new().build(), readiness: None })
}

async fn api_service(
    settings: &Settings,
    app: &App,
    store: Store,
    auth: Arc<Auth>,
    shutdown: CancellationToken,
) -> Result<Service, crate::Failure> {
    let projections = app
        .projections()
        .all()
        .iter()
        .map(|p| ProjectionInfo {
            name: p.name().to_string(),
            topics: p.topics().to_vec(),
            tables: p.tables().to_vec(),
            personal_columns: p.personal_columns().to_vec(),
        })
        .collect();
    let keys = crate::commands::key_ring(settings, &store).await?;
    // Where filters on sealed personal columns look (none without a registry to say).
    let blind_indexes = crate::commands::load_registry(settings).map(|r| r.blind_index_names()).unwrap_or_default();
    let (kafka, namespace) =
        (eventline_api::status::BrokerConnection::new(&settings.kafka)?, settings.namespace.clone());
    let api = Api::new(store, keys, kafka, namespace, projections, blind_indexes, shutdown.clone());
    tokio::spawn(eventline_api::gauges::sample(api.clone(), shutdown));
    let (router, openapi) = eventline_api::router(api.clone(), auth, &app.api_routes).await;
    Ok(Service { router, openapi, readiness: None })
}
