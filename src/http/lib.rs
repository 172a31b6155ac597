//! # eventline-http
//!
//! What eventline's HTTP services share: RFC 9457 problem answers with stable types, serving with
//! a graceful stop, and the routes every service has. It knows nothing of events, Kafka or SQL.

pub mod problem;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use eventline_core::telemetry;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use utoipa::openapi::{InfoBuilder, OpenApi, OpenApiBuilder};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use problem::Problem;

/// Longest wait for in-flight requests when stopping.
const DRAIN_FOR: Duration = Duration::from_secs(10);

/// The process's metrics in the Prometheus text format, served at `/metrics`.
pub trait MetricsText: Send + Sync {
    fn render(&self) -> String;
}

/// Something `/readyz` asks: the reasons it is not ready (none when it is).
pub trait Readiness: Send + Sync {
    fn not_ready(&self) -> Pin<Box<dyn Future<Output = Vec<String>> + Send + '_>>;
}

#[derive(Clone)]
struct Shared {
    readiness: Arc<Vec<Arc<dyn Readiness>>>,
    openapi: Arc<Value>,
    metrics: Arc<dyn MetricsText>,
}

/// The whole application: the services' routes, plus `/healthz`, `/readyz` (asking every
/// service), `/metrics`, `/openapi.json` (the services' descriptions and these), and problem
/// answers for unknown paths and methods. Every request is counted and timed by route.
pub fn app(
    routes: Router,
    readiness: Vec<Arc<dyn Readiness>>,
    services: Vec<OpenApi>,
    metrics: Arc<dyn MetricsText>,
) -> Router {
    let (common, common_api) = OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics_text))
        .routes(routes!(openapi_json))
        .split_for_parts();
    let info = InfoBuilder::new()
        .title("eventline")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some("Kafka events projected effectively-once into PostgreSQL read models: the ingestion gateway, the query API and status."))
        .build();
    let mut openapi = OpenApiBuilder::new().info(info).build();
    for service in services {
        openapi.merge(service);
    }
    openapi.merge(common_api);
    let openapi = serde_json::to_value(&openapi).expect("the OpenAPI document serializes");
    let shared = Shared { readiness: Arc::new(readiness), openapi: Arc::new(openapi), metrics };
    routes
        .merge(common.with_state(shared))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(observe_requests))
        .layer(axum::extract::DefaultBodyLimit::disable())
}

/// Counts and times every request by route template (not the path, which would give a series
/// per account id), method and status; and runs it in a server span that continues the caller's
/// W3C trace context.
async fn observe_requests(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |path| path.as_str().to_string());
    let method = request.method().to_string();
    let span = tracing::info_span!(
        "http.request",
        otel.name = format!("{method} {route}"),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = %method,
        http.route = %route,
        http.response.status_code = tracing::field::Empty,
    );
    let traceparent = request.headers().get(telemetry::TRACEPARENT).and_then(|v| v.to_str().ok());
    telemetry::continue_trace(&span, traceparent);
    let started = std::time::Instant::now();
    let response = next.run(request).instrument(span.clone()).await;
    let status = response.status();
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "error");
    }
    let status = status.as_u16().to_string();
    metrics::histogram!("eventline_http_request_duration_seconds", "route" => route.clone(), "method" => method.clone())
        .record(started.elapsed().as_secs_f64());
    metrics::counter!("eventline_http_requests_total", "route" => route, "method" => method, "status" => status)
        .increment(1);
    response
}

/// This process's metrics, in the Prometheus text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "health", responses((status = 200, description = "Prometheus text format (version 0.0.4)", body = String, content_type = "text/plain")))]
async fn metrics_text(State(shared): State<Shared>) -> Response {
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], shared.metrics.render()).into_response()
}

/// Whether the process can serve: 503 with the reasons when a dependency is not usable.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    responses(
        (status = 200, description = "Ready", body = Value, example = json!({"status": "ready"})),
        (status = 503, description = "Not ready, with the reasons", body = Value, example = json!({"status": "not ready", "reasons": ["the broker is not reachable"]})),
    )
)]
async fn readyz(State(shared): State<Shared>) -> Response {
    let mut reasons = Vec::new();
    for part in shared.readiness.iter() {
        reasons.extend(part.not_ready().await);
    }
    if reasons.is_empty() {
        (StatusCode::OK, axum::Json(json!({"status": "ready"}))).into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, axum::Json(json!({"status": "not ready", "reasons": reasons})))
            .into_response()
    }
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "health", responses((status = 200, description = "The OpenAPI 3.1 description of this process's routes", body = Value)))]
async fn openapi_json(State(shared): State<Shared>) -> Response {
    axum::Json(shared.openapi.as_ref().clone()).into_response()
}

/// Serves until `shutdown`, then lets in-flight requests finish (for at most ten seconds).
pub async fn serve(listener: TcpListener, router: Router, shutdown: CancellationToken) -> std::io::Result<()> {
    let address: SocketAddr = listener.local_addr()?;
    tracing::info!(%address, "HTTP listening.");
    let stopping = shutdown.clone();
    let server = axum::serve(listener, router).with_graceful_shutdown(async move { stopping.cancelled().await });
    tokio::select! {
        result = server => result,
        () = async { shutdown.cancelled().await; tokio::time::sleep(DRAIN_FOR).await } => {
            tracing::warn!("Requests still in flight after the drain period; stopping anyway.");
            Ok(())
        }
    }
}

/// The process is alive.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "Alive", body = Value, example = json!({"status": "ok"}))))]
pub async fn healthz() -> Response {
    (StatusCode::OK, axum::Json(json!({"status": "ok"}))).into_response()
}

/// The answer for a path no route serves.
pub async fn not_found(uri: Uri) -> Problem {
    Problem::not_found(format!("no resource at {}", uri.path()))
}

/// The answer for a method a path does not accept.
pub async fn method_not_allowed(uri: Uri) -> Problem {
    Problem::method_not_allowed(format!("{} does not accept this method", uri.path()))
}
