//! `POST /v1/events`: CloudEvents in structured, batch or HTTP binary mode.
//!
//! Batch semantics: every event of a request is validated (and authorized) before anything is
//! produced; one bad event and the whole request is refused, naming each bad event's index. Then
//! all are produced; the answer waits for the broker's acknowledgements. If some are not
//! acknowledged (queue full, timeout, refusal) the answer is 503 with a result per event, so the
//! client can send the failed ones again; sending the same event ids again is always safe, since
//! projections apply an event id once.

use crate::sealing::SealError;
use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use eventline_core::binding::{self, ContentMode, BATCH_JSON, HTTP_PREFIX, STRUCTURED_JSON};
use eventline_core::contract::{ContractError, ValidatedEvent};
use eventline_core::envelope::{is_json_media_type, CloudEvent, EnvelopeError};
use eventline_core::registry::BatchError;
use eventline_core::telemetry;
use eventline_core::token::ConsistencyToken;
use serde_json::{json, Map, Value};

use super::Gateway;
use eventline_http::Problem;

const JSON: &str = "application/json";

/// The three ways the CloudEvents HTTP binding carries events.
enum Mode {
    Structured,
    Batch,
    /// Attributes in `ce-*` headers, `data` in the body.
    Binary,
}

/// What a 202 answer holds.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct Accepted {
    /// Each event's id and where it landed, in request order.
    pub events: Vec<AcceptedEvent>,
    /// Opaque; hand it to the query API to read your own writes.
    pub consistency_token: String,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct AcceptedEvent {
    pub id: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// Publish CloudEvents.
///
/// Structured mode (`application/cloudevents+json`, or `application/json` without `ce-*`
/// headers), batch mode (`application/cloudevents-batch+json`, a JSON array, possibly empty), or
/// binary mode (a JSON body, `application/json` or `*/*+json`, as `data`; attributes in `ce-*`
/// headers, percent-encoded). Every event is validated
/// and authorized before any is produced; the answer comes once the broker acknowledged them.
#[utoipa::path(
    post,
    path = "/v1/events",
    tag = "gateway",
    request_body(content = std::collections::HashMap<String, serde_json::Value>, description = "One CloudEvent (a JSON object); an array of them in batch mode (`application/cloudevents-batch+json`)", content_type = "application/cloudevents+json"),
    responses(
        (status = 202, description = "Acknowledged by the broker", body = Accepted),
        (status = 400, description = "Malformed body", body = eventline_http::problem::ProblemDocument, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid credentials: no key or JWT, an unknown or revoked key, a JWT that does not verify", body = eventline_http::problem::ProblemDocument, content_type = "application/problem+json"),
        (status = 403, description = "An event type outside what the credentials may publish", body = eventline_http::problem::ProblemDocument, content_type = "application/problem+json"),
        (status = 409, description = "Personal data about an erased data subject", body = eventline_http::problem::ProblemDocument, content_type = "application/problem+json"),
        (status = 413, description = "Body, batch or event too large", body = eventline_http::problem::ProblemDocument, content_type = "application/problem+json"),
        (status = 415, description = "Unsupported content type", body = eventline_http::problem::ProblemDocument, content_type = "application/problem+json"),
        (status = 422, description = "An event breaks CloudEvents or its schema", body = eventline_http::problem::ProblemDocument, content_type = "application/problem+json"),
        (status = 429, description = "Over the key's rate", body = eventline_http::problem::ProblemDocument, content_type = "application/problem+json"),
        (status = 503, description = "Broker unavailable, or events not acknowledged in time", body = eventline_http::problem::ProblemDocument, content_type = "application/problem+json"),
    )
)]
pub async fn publish(State(gateway): State<Gateway>, request: Request) -> Response {
    match accept(&gateway, request).await {
        Ok(response) => response,
        Err(problem) => {
            tracing::debug!(status = problem.status.as_u16(), problem = problem.slug, detail = %problem.detail, "Request refused.");
            problem.into_response()
        }
    }
}

async fn accept(gateway: &Gateway, request: Request) -> Result<Response, Problem> {
    let (parts, body) = request.into_parts();
    let caller = gateway.auth().authenticate(parts.headers.get(header::AUTHORIZATION)).await?;
    let mode = mode(&parts.headers)?;
    let body = read_body(body, gateway.limits().max_body_bytes).await?;
    let mut events = validate(gateway, mode, &parts.headers, &body)?;
    if events.is_empty() {
        // An empty batch is valid (CloudEvents JSON batch format): nothing to publish.
        let body = json!({"events": [], "consistency_token": ConsistencyToken::default().encode()});
        return Ok((StatusCode::ACCEPTED, axum::Json(body)).into_response());
    }
    stamp_trace_context(&mut events, &parts.headers);

    let forbidden: Vec<Value> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| !caller.may_publish(&e.envelope().event_type))
        .map(|(index, e)| json!({"index": index, "pointer": "/type", "type": e.envelope().event_type}))
        .collect();
    if !forbidden.is_empty() {
        let detail = match caller.publish_patterns() {
            [] => "these credentials may publish no event type; nothing was published".to_string(),
            allowed => format!("these credentials may publish {}; nothing was published", allowed.join(", ")),
        };
        return Err(Problem::forbidden(detail).with("errors", Value::Array(forbidden)));
    }
    gateway.admit(caller.rate_key(), events.len())?;
    if !gateway.broker_up() {
        return Err(Problem::broker_unavailable("the broker is not reachable; nothing was published"));
    }

    if let Some(sealer) = gateway.sealer() {
        events = sealer.seal_all(events).await.map_err(|error| match error {
            SealError::Erased { .. } => Problem::subject_erased(format!("{error}; nothing was published")),
            SealError::Keys(error) => {
                tracing::error!(%error, "Cannot read or make a data subject's key.");
                Problem::unavailable("the data subjects' keys cannot be read; nothing was published")
            }
        })?;
    }
    let results = gateway.publisher().publish_all_within(&events, gateway.limits().produce_timeout).await;
    let mut token = ConsistencyToken::default();
    let mut answers = Vec::with_capacity(events.len());
    let mut failed = 0;
    for (event, result) in events.iter().zip(&results) {
        let id = &event.envelope().id;
        match result {
            Ok(position) => {
                token.cover(&position.topic, position.partition, position.offset);
                answers.push(json!({"id": id, "topic": position.topic, "partition": position.partition, "offset": position.offset}));
            }
            Err(failure) => {
                failed += 1;
                answers.push(json!({"id": id, "error": failure.to_string()}));
            }
        }
    }
    if failed > 0 {
        tracing::warn!(failed, total = events.len(), "Events not acknowledged by the broker.");
        return Err(Problem::broker_unavailable(format!(
            "{failed} of {} event(s) were not acknowledged by the broker; send those again (event ids make it safe)",
            events.len()
        ))
        .with("events", Value::Array(answers)));
    }
    let body = json!({"events": answers, "consistency_token": token.encode()});
    Ok((StatusCode::ACCEPTED, axum::Json(body)).into_response())
}

/// The content mode, by the HTTP binding's rule: a CloudEvents media type means structured or
/// batch mode; otherwise binary mode when `ce-specversion` is there. `application/json` without
/// `ce-*` headers is taken as a structured event sent as plain JSON.
fn mode(headers: &HeaderMap) -> Result<Mode, Problem> {
    let content_type = headers.get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap_or("(not text)"));
    let unsupported = || {
        Problem::unsupported_media_type(format!(
            "Content-Type `{}` is not accepted; send {STRUCTURED_JSON}, {BATCH_JSON}, or JSON data ({JSON} or */*+json) with ce-* headers (binary mode)",
            content_type.unwrap_or_default()
        ))
    };
    match ContentMode::of(content_type).map_err(|_| unsupported())? {
        ContentMode::Structured => Ok(Mode::Structured),
        ContentMode::Batch => Ok(Mode::Batch),
        ContentMode::Binary => match content_type {
            Some(media) if is_json_media_type(media) && headers.contains_key("ce-specversion") => Ok(Mode::Binary),
            Some(media) if media.split(';').next().unwrap_or_default().trim().eq_ignore_ascii_case(JSON) => {
                Ok(Mode::Structured)
            }
            _ => Err(unsupported()),
        },
    }
}

async fn read_body(body: Body, limit: usize) -> Result<Vec<u8>, Problem> {
    to_bytes(body, limit)
        .await
        .map(|b| b.to_vec())
        .map_err(|_| Problem::too_large(format!("the request body is larger than {limit} bytes")))
}

/// Validates the request's events, all of them, before anything is produced.
fn validate(gateway: &Gateway, mode: Mode, headers: &HeaderMap, body: &[u8]) -> Result<Vec<ValidatedEvent>, Problem> {
    let registry = gateway.registry();
    match mode {
        Mode::Structured => {
            let envelope = CloudEvent::from_slice(body).map_err(|e| envelope_problem(e, Some(0)))?;
            registry.validate(envelope).map(|e| vec![e]).map_err(|e| invalid(vec![(0, e)]))
        }
        Mode::Binary => {
            let envelope = binary_envelope(headers, body)?;
            registry.validate(envelope).map(|e| vec![e]).map_err(|e| invalid(vec![(0, e)]))
        }
        Mode::Batch => {
            // Count before validating, so an oversized batch costs little.
            if let Ok(Value::Array(events)) = serde_json::from_slice::<Value>(body) {
                let limit = gateway.limits().max_batch_events;
                if events.len() > limit {
                    return Err(Problem::too_large(format!(
                        "the batch holds {} events, more than {limit}",
                        events.len()
                    )));
                }
            }
            match registry.validate_batch(body) {
                Ok(events) => Ok(events),
                Err(BatchError::Body(error)) => Err(envelope_problem(error, None)),
                Err(BatchError::Events(errors)) => {
                    if let Some((index, ContractError::Envelope(error @ EnvelopeError::TooLarge { .. }))) =
                        errors.first()
                    {
                        return Err(envelope_problem(error.clone(), Some(*index)));
                    }
                    Err(invalid(errors))
                }
            }
        }
    }
}

/// Problems with the body as a whole: not JSON, not the right shape, too large.
fn envelope_problem(error: EnvelopeError, index: Option<usize>) -> Problem {
    let problem = match &error {
        EnvelopeError::TooLarge { .. } => Problem::too_large(error.to_string()),
        EnvelopeError::NotJson(_) | EnvelopeError::NotObject(_) | EnvelopeError::NotArray(_) => {
            Problem::malformed(error.to_string())
        }
        _ => return invalid(vec![(index.unwrap_or(0), ContractError::Envelope(error))]),
    };
    let mut detail = Map::new();
    if let Some(index) = index {
        detail.insert("index".into(), index.into());
    }
    detail.insert("kind".into(), error.kind().into());
    problem.with("errors", json!([detail]))
}

fn invalid(errors: Vec<(usize, ContractError)>) -> Problem {
    let list: Vec<Value> = errors
        .iter()
        .map(|(index, error)| json!({"index": index, "pointer": error.pointer(), "kind": error.kind(), "detail": error.to_string()}))
        .collect();
    let detail = match errors.as_slice() {
        [(_, only)] => format!("{only}; nothing was published"),
        many => format!("{} events are invalid; nothing was published", many.len()),
    };
    Problem::invalid_event(detail).with("errors", Value::Array(list))
}

/// Gives each event that carries no trace context of its own this request's: the request's span
/// when spans are exported (so the worker's spans become its children), else the caller's
/// `traceparent` as it came.
fn stamp_trace_context(events: &mut [ValidatedEvent], headers: &HeaderMap) {
    let traceparent = telemetry::traceparent(&tracing::Span::current())
        .or_else(|| headers.get(telemetry::TRACEPARENT).and_then(|v| v.to_str().ok()).map(String::from));
    if let Some(traceparent) = traceparent {
        for event in events {
            event.adopt_traceparent(&traceparent);
        }
    }
}

/// Binary mode: context attributes from `ce-*` headers (percent-decoded), `datacontenttype` from
/// Content-Type, `data` from the JSON body.
fn binary_envelope(headers: &HeaderMap, body: &[u8]) -> Result<CloudEvent, Problem> {
    let mut attributes = Vec::new();
    for (name, value) in headers {
        let Some(attribute) = name.as_str().strip_prefix(HTTP_PREFIX) else { continue };
        let text = value
            .to_str()
            .map_err(|_| "is not printable ASCII (percent-encode it)".to_string())
            .and_then(binding::http_header_value)
            .map_err(|reason| {
                Problem::malformed(format!("header `{name}` {reason}"))
                    .with("errors", json!([{"index": 0, "pointer": format!("/{attribute}"), "kind": "invalid_header"}]))
            })?;
        attributes.push((attribute.to_string(), text));
    }
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    binding::from_binary(HTTP_PREFIX, attributes, content_type, Some(body)).map_err(|error| match error {
        EnvelopeError::DataNotJson(reason) => Problem::malformed(format!("the body is not valid JSON: {reason}"))
            .with("errors", json!([{"index": 0, "pointer": "/data", "kind": "data_not_json"}])),
        EnvelopeError::TooLarge { .. } => envelope_problem(error, Some(0)),
        other => invalid(vec![(0, ContractError::Envelope(other))]),
    })
}
