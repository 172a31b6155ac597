//! Traces from the gateway to the SQL write: a W3C `traceparent` sent to the gateway is
//! continued by its request span, travels on the Kafka record, and the worker's spans for the
//! event and for the batch that wrote it are its descendants. Spans are received by an
//! in-process OTLP/HTTP collector that decodes what the real exporter sends.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use prost::Message;
use serde_json::Value;

use crate::events::{deposit, opened};
use crate::helpers::{wait_until, HttpProcess, TestEnv};

/// One received span, ids in hex.
#[derive(Debug, Clone)]
struct ReceivedSpan {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    /// OTLP's enum: 2 server, 5 consumer.
    kind: i32,
    attributes: BTreeMap<String, String>,
    linked_span_ids: Vec<String>,
}

/// An OTLP/HTTP collector on a free port, keeping every span it is sent.
struct Collector {
    endpoint: String,
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
}

impl Collector {
    async fn start() -> Self {
        let spans: Arc<Mutex<Vec<ReceivedSpan>>> = Arc::default();
        let kept = spans.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            post(move |body: Bytes| {
                let kept = kept.clone();
                async move {
                    let request = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf export request");
                    kept.lock().unwrap().extend(received(request));
                    ([("content-type", "application/x-protobuf")], Vec::<u8>::new())
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { endpoint, spans }
    }

    /// Settings that make an eventline process export here, promptly; spans are exported
    /// whatever the log filter says.
    fn env(&self) -> Vec<(&str, &str)> {
        vec![
            ("EVENTLINE_OTLP_ENDPOINT", self.endpoint.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("RUST_LOG", "warn"),
        ]
    }

    fn in_trace(&self, trace_id: &str) -> Vec<ReceivedSpan> {
        self.spans.lock().unwrap().iter().filter(|s| s.trace_id == trace_id).cloned().collect()
    }

    /// Waits until the trace holds a span named `name`, and returns it.
    async fn wait_for(&self, trace_id: &str, name: &str) -> ReceivedSpan {
        wait_until(&format!("a `{name}` span in trace {trace_id}"), || async {
            self.in_trace(trace_id).iter().any(|s| s.name == name)
        })
        .await;
        self.in_trace(trace_id).into_iter().find(|s| s.name == name).unwrap()
    }
}

fn received(request: ExportTraceServiceRequest) -> Vec<ReceivedSpan> {
    let mut spans = Vec::new();
    for resource_spans in request.resource_spans {
        let resource = resource_spans.resource.map(|r| attributes(&r.attributes)).unwrap_or_default();
        let service = resource.get("service.name").cloned().unwrap_or_default();
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                spans.push(ReceivedSpan {
                    service: service.clone(),
                    name: span.name,
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    kind: span.kind,
                    attributes: attributes(&span.attributes),
                    linked_span_ids: span.links.iter().map(|l| hex(&l.span_id)).collect(),
                });
            }
        }
    }
    spans
}

fn attributes(pairs: &[KeyValue]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|pair| {
            let value = match pair.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(AnyValue::StringValue(s)) => s.clone(),
                Some(AnyValue::IntValue(i)) => i.to_string(),
                Some(AnyValue::BoolValue(b)) => b.to_string(),
                Some(AnyValue::DoubleValue(d)) => d.to_string(),
                other => format!("{other:?}"),
            };
            (pair.key.clone(), value)
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn random_hex(len: usize) -> String {
    let mut out = String::new();
    while out.len() < len {
        out.push_str(&uuid::Uuid::new_v4().simple().to_string());
    }
    out.truncate(len);
    out
}

async fn publish(gateway: &HttpProcess, bearer: &str, event: Value, traceparent: Option<&str>) {
    let mut headers = vec![("content-type", "application/cloudevents+json"), ("authorization", bearer)];
    if let Some(traceparent) = traceparent {
        headers.push(("traceparent", traceparent));
    }
    let response = gateway.post(&headers, event.to_string()).await;
    assert_eq!(response.status(), 202);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_callers_trace_runs_from_the_gateway_request_to_the_batch_that_wrote_its_events() {
    let env = TestEnv::new().await;
    let collector = Collector::start().await;
    let gateway = env.spawn_http("gateway", &["gateway"], &collector.env()).await;
    let (_, key) = env.create_key("traces", &["accounts.*"]);

    // Two events of one account in one request, read by a worker started afterwards that waits
    // a second for a batch to fill: one batch holds both.
    let (trace_id, caller_span) = (random_hex(32), random_hex(16));
    let traceparent = format!("00-{trace_id}-{caller_span}-01");
    let bearer = format!("Bearer {key}");
    let body = serde_json::json!([opened("traced-1", "acct-a"), deposit("traced-2", "acct-a", 500)]);
    let headers = [
        ("content-type", "application/cloudevents-batch+json"),
        ("authorization", &bearer),
        ("traceparent", &traceparent),
    ];
    let response = gateway.post(&headers, body.to_string()).await;
    assert_eq!(response.status(), 202);
    let landed = response.json::<Value>().await.unwrap()["events"].clone();
    let mut worker_env = collector.env();
    worker_env.push(("EVENTLINE_BATCH_MAX_WAIT_MS", "1000"));
    let _worker = env.spawn("worker", &["worker", "account_balances"], &worker_env);
    wait_until("the events to be applied", || async { env.applied_through("account_balances").await == 2 }).await;

    let request = collector.wait_for(&trace_id, "POST /v1/events").await;
    assert_eq!(request.parent_span_id, caller_span, "the gateway continues the caller's span");
    assert_eq!(request.kind, 2, "a server span");
    assert_eq!(request.service, "eventline");
    assert_eq!(request.attributes["http.route"], "/v1/events");
    assert_eq!(request.attributes["http.request.method"], "POST");
    assert_eq!(request.attributes["http.response.status_code"], "202");

    let topic = env.topic("accounts.events");
    let batch = collector.wait_for(&trace_id, "account_balances apply").await;
    let process = format!("{topic} process");
    let events: Vec<ReceivedSpan> = collector.in_trace(&trace_id).into_iter().filter(|s| s.name == process).collect();
    assert_eq!(events.len(), 2, "one consumer span per event: {events:?}");
    for (index, id) in ["traced-1", "traced-2"].into_iter().enumerate() {
        let event = events.iter().find(|s| s.attributes.get("messaging.message.id").map(String::as_str) == Some(id));
        let event = event.unwrap_or_else(|| panic!("no span for {id}: {events:?}"));
        assert_eq!(event.parent_span_id, request.span_id, "the worker continues the gateway's request span");
        assert_eq!(event.kind, 5, "a consumer span");
        let expected = [
            ("eventline.projection", "account_balances".to_string()),
            ("eventline.outcome", "applied".to_string()),
            ("messaging.system", "kafka".to_string()),
            ("messaging.destination.name", topic.clone()),
            ("messaging.destination.partition.id", landed[index]["partition"].to_string()),
            ("messaging.kafka.offset", landed[index]["offset"].to_string()),
        ];
        for (name, value) in expected {
            assert_eq!(event.attributes.get(name), Some(&value), "{name} on {event:?}");
        }
    }

    // The one write: the child of the first event's span, linked to the other.
    let first = events.iter().find(|e| e.span_id == batch.parent_span_id).expect("the batch is an event span's child");
    let other = events.iter().find(|e| e.span_id != first.span_id).unwrap();
    assert_eq!(batch.linked_span_ids, vec![other.span_id.clone()]);
    assert_eq!(batch.attributes["eventline.projection"], "account_balances");
    assert_eq!(batch.attributes["messaging.batch.message_count"], "2");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_gateway_starts_a_trace_when_none_comes_and_keeps_a_callers_decision_not_to_record() {
    let env = TestEnv::new().await;
    let collector = Collector::start().await;
    let gateway = env.spawn_http("gateway", &["gateway"], &collector.env()).await;
    let _worker = env.spawn("worker", &["worker", "account_balances"], &collector.env());
    let (_, key) = env.create_key("traces", &["accounts.*"]);
    let bearer = format!("Bearer {key}");

    // Unsampled by the caller: nothing of this trace is recorded, here or in the worker.
    let unsampled = random_hex(32);
    let not_recorded = format!("00-{unsampled}-{}-00", random_hex(16));
    publish(&gateway, &bearer, opened("quiet-1", "acct-quiet"), Some(&not_recorded)).await;
    wait_until("the first event to be applied", || async { env.applied_through("account_balances").await == 1 }).await;

    // No trace context: the gateway starts one (sampled at the default ratio 1) and the worker
    // continues it; the two events land in different batches.
    publish(&gateway, &bearer, opened("fresh-1", "acct-fresh"), None).await;
    wait_until("the second event to be applied", || async { env.applied_through("account_balances").await == 2 }).await;
    let topic = env.topic("accounts.events");
    let process = format!("{topic} process");
    wait_until("the started trace's event span", || async {
        collector.spans.lock().unwrap().iter().any(|s| s.name == process)
    })
    .await;
    let event = collector.spans.lock().unwrap().iter().find(|s| s.name == process).cloned().unwrap();
    assert_eq!(event.attributes["messaging.message.id"], "fresh-1");
    let request = collector.wait_for(&event.trace_id, "POST /v1/events").await;
    assert_eq!(request.parent_span_id, "", "a trace started by the gateway has no parent");
    assert_eq!(event.parent_span_id, request.span_id);
    let batch = collector.wait_for(&event.trace_id, "account_balances apply").await;
    assert_eq!(batch.parent_span_id, event.span_id);

    assert!(
        collector.in_trace(&unsampled).is_empty(),
        "spans of a trace the caller chose not to record: {:?}",
        collector.in_trace(&unsampled)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_collector_that_is_down_loses_spans_never_events_nor_log_lines() {
    let env = TestEnv::new().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let endpoint = format!("http://{closed}");
    let tracing_env =
        [("EVENTLINE_OTLP_ENDPOINT", endpoint.as_str()), ("OTEL_BSP_SCHEDULE_DELAY", "100"), ("RUST_LOG", "warn")];
    let up = env.spawn_http("up", &["up", "--insecure-no-auth"], &tracing_env).await;
    // The log lines RUST_LOG asks for are written as without export (a filter per layer once
    // swallowed them).
    assert!(up.process.log().contains("AUTHENTICATION IS OFF"), "{}", up.process.log());
    let bearer = "Bearer ignored".to_string();
    for i in 0..3 {
        let traceparent = format!("00-{}-{}-01", random_hex(32), random_hex(16));
        publish(&up, &bearer, opened(&format!("down-{i}"), &format!("acct-{i}")), Some(&traceparent)).await;
    }
    wait_until("the events to be applied", || async { env.applied_through("account_balances").await == 3 }).await;
    let account = up.get("/v1/accounts/acct-2").await;
    assert_eq!(account.status(), 200);
    assert!(up.process.terminate().success(), "stops cleanly though its last spans cannot be sent");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_traceparent_starts_a_new_trace_and_the_event_is_still_published() {
    let env = TestEnv::new().await;
    let collector = Collector::start().await;
    let gateway = env.spawn_http("gateway", &["gateway"], &collector.env()).await;
    let _worker = env.spawn("worker", &["worker", "account_balances"], &collector.env());
    let (_, key) = env.create_key("traces", &["accounts.*"]);
    let bearer = format!("Bearer {key}");
    publish(&gateway, &bearer, opened("odd-1", "acct-odd"), Some("00-not-a-trace-01")).await;
    wait_until("the event to be applied", || async { env.applied_through("account_balances").await == 1 }).await;

    let process = format!("{} process", env.topic("accounts.events"));
    wait_until("the event's span", || async { collector.spans.lock().unwrap().iter().any(|s| s.name == process) })
        .await;
    let event = collector.spans.lock().unwrap().iter().find(|s| s.name == process).cloned().unwrap();
    let request = collector.wait_for(&event.trace_id, "POST /v1/events").await;
    assert_eq!(request.parent_span_id, "", "the malformed context is ignored: a new trace");
    assert_eq!(event.parent_span_id, request.span_id);
    assert_eq!(event.attributes["messaging.message.id"], "odd-1");
}
