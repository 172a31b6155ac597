//! The HTTP gateway: `POST /v1/events` for upstream systems.
//!
//! A request is authenticated (API key or JWT), its events validated through the schema registry and
//! checked against the key's allowed types, counted against the key's rate, then produced with
//! the idempotent producer; the answer (202 with each event's position and a consistency token)
//! is sent once the broker acknowledged them all. Every refusal is `application/problem+json`.

mod events;

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use eventline_core::config::{GatewaySettings, KafkaSettings};
use eventline_core::registry::Registry;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio_util::sync::CancellationToken;

use crate::publisher::Publisher;
use crate::sealing::Sealer;
pub use eventline_auth::Auth;
use eventline_http::Problem;

/// How often the broker's reachability is checked.
const HEALTH_EVERY: Duration = Duration::from_secs(2);

/// Shared by every request.
#[derive(Clone)]
pub struct Gateway(Arc<Inner>);

struct Inner {
    registry: Arc<Registry>,
    publisher: Publisher,
    /// Seals personal fields before publishing, when a key-encryption key is configured.
    sealer: Option<Sealer>,
    auth: Arc<Auth>,
    limits: GatewaySettings,
    /// Token buckets per API key (one shared bucket when authentication is off).
    rate: DefaultKeyedRateLimiter<String>,
    /// Whether the last metadata request reached a broker.
    broker_up: AtomicBool,
}

impl Gateway {
    pub fn new(
        registry: Arc<Registry>,
        publisher: Publisher,
        sealer: Option<Sealer>,
        auth: Arc<Auth>,
        limits: GatewaySettings,
    ) -> Self {
        let rate = NonZeroU32::new(limits.rate_per_key).expect("the rate is validated to be at least 1");
        Self(Arc::new(Inner {
            registry,
            publisher,
            sealer,
            auth,
            limits,
            rate: RateLimiter::keyed(Quota::per_second(rate)),
            broker_up: AtomicBool::new(true),
        }))
    }

    fn registry(&self) -> &Registry {
        &self.0.registry
    }

    fn sealer(&self) -> Option<&Sealer> {
        self.0.sealer.as_ref()
    }

    fn publisher(&self) -> &Publisher {
        &self.0.publisher
    }

    fn auth(&self) -> &Auth {
        &self.0.auth
    }

    fn limits(&self) -> &GatewaySettings {
        &self.0.limits
    }

    fn broker_up(&self) -> bool {
        self.0.broker_up.load(Ordering::Relaxed)
    }

    /// Takes `events` from the key's bucket, or says when to come back.
    fn admit(&self, caller: Option<&str>, events: usize) -> Result<(), Problem> {
        let key = caller.unwrap_or("-").to_string();
        let cells = NonZeroU32::new(events.max(1) as u32).expect("at least one");
        match self.0.rate.check_key_n(&key, cells) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => {
                let wait =
                    not_until.wait_time_from(governor::clock::Clock::now(&governor::clock::DefaultClock::default()));
                Err(Problem::rate_limited(
                    format!(
                        "this key may publish {} events per second; nothing was published",
                        self.0.limits.rate_per_key
                    ),
                    wait.as_secs().max(1),
                ))
            }
            Err(_) => Err(Problem::rate_limited(
                format!(
                    "{events} events are more than this key may publish in one second ({})",
                    self.0.limits.rate_per_key
                ),
                1,
            )),
        }
    }

    /// Keeps `broker_up` current until `shutdown`.
    pub fn watch_broker(&self, kafka: KafkaSettings, shutdown: CancellationToken) {
        let gateway = self.clone();
        tokio::spawn(async move {
            loop {
                let up = eventline_kafka::admin::check_reachable(&kafka, HEALTH_EVERY).await.is_ok();
                if up != gateway.broker_up() {
                    if up {
                        tracing::info!("Broker reachable again; accepting events.");
                    } else {
                        tracing::error!("Broker unreachable; answering 503 until it is back.");
                    }
                }
                gateway.0.broker_up.store(up, Ordering::Relaxed);
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(HEALTH_EVERY) => {}
                }
            }
        });
    }
}

/// The gateway's routes (`POST /v1/events`) and their OpenAPI description.
pub fn router(gateway: Gateway) -> (Router, utoipa::openapi::OpenApi) {
    let (router, mut api) =
        utoipa_axum::router::OpenApiRouter::new().routes(utoipa_axum::routes!(events::publish)).split_for_parts();
    eventline_auth::describe_security(&mut api, gateway.auth().accepts_jwts());
    add_registry_examples(&mut api, gateway.registry());
    (router.with_state(gateway), api)
}

/// One CloudEvent per registered type, at its current version, made from its schema's first
/// example: what a valid body looks like, for readers of `/openapi.json` and for the tools that
/// send its examples.
fn add_registry_examples(api: &mut utoipa::openapi::OpenApi, registry: &Registry) {
    let Some(body) = api
        .paths
        .paths
        .get_mut("/v1/events")
        .and_then(|item| item.post.as_mut())
        .and_then(|operation| operation.request_body.as_mut())
    else {
        return;
    };
    for content in body.content.values_mut() {
        for contract in registry.contracts() {
            let version = contract.current();
            let Some(data) = contract.versions[&version].schema["examples"].get(0) else { continue };
            let subject = data.get(&contract.key).cloned().unwrap_or_default();
            let event = serde_json::json!({
                "specversion": "1.0",
                "id": format!("example-{}", contract.event_type),
                "source": "/example",
                "type": contract.event_type,
                "subject": subject,
                "dataversion": version,
                "datacontenttype": "application/json",
                "data": data,
            });
            let example = utoipa::openapi::example::ExampleBuilder::new().value(Some(event)).build();
            content.examples.insert(contract.event_type.clone(), example.into());
        }
    }
}

/// Ready while the broker answers; the database the process shares is checked where it is opened.
impl eventline_http::Readiness for Gateway {
    fn not_ready(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = Vec<String>> + Send + '_>> {
        let reasons = if self.broker_up() { Vec::new() } else { vec!["the broker is not reachable".to_string()] };
        Box::pin(std::future::ready(reasons))
    }
}
