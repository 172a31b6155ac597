//! Errors as `application/problem+json` (RFC 9457), each with a stable `type`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

/// Base of every problem `type` URI; the URIs identify the problem, they need not resolve.
pub const TYPE_BASE: &str = "https://eventline.dev/problems/";

/// The shape of every problem answer, for the OpenAPI document.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ProblemDocument {
    /// Stable URI naming the kind of problem, under https://eventline.dev/problems/.
    #[serde(rename = "type")]
    #[schema(example = "https://eventline.dev/problems/invalid-event")]
    pub problem_type: String,
    pub title: String,
    pub status: u16,
    /// What went wrong, for people.
    pub detail: String,
    /// For event problems: each offending event's index, JSON pointer, kind and detail.
    pub errors: Option<Vec<serde_json::Value>>,
}

/// One problem answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub status: StatusCode,
    /// Last segment of the `type` URI, e.g. `invalid-event`.
    pub slug: &'static str,
    pub title: &'static str,
    pub detail: String,
    /// Extra members (e.g. `errors`, `events`).
    pub extensions: Vec<(&'static str, Value)>,
    pub retry_after_secs: Option<u64>,
    /// A `WWW-Authenticate` challenge (RFC 6750) for 401 and 403 answers.
    pub challenge: Option<Box<str>>,
}

impl Problem {
    fn new(status: StatusCode, slug: &'static str, title: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            slug,
            title,
            detail: detail.into(),
            extensions: Vec::new(),
            retry_after_secs: None,
            challenge: None,
        }
    }

    pub fn malformed(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "malformed-request", "Malformed request", detail)
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", "Missing or invalid API key", detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden-event-type", "Event type not allowed for this key", detail)
    }

    /// The caller is known, but its credentials do not carry the scope the request needs.
    pub fn insufficient_scope(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "insufficient-scope", "The credentials lack a scope this needs", detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
    }

    pub fn method_not_allowed(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed", "Method not allowed", detail)
    }

    pub fn too_large(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large", "Payload too large", detail)
    }

    pub fn unsupported_media_type(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type", "Unsupported media type", detail)
    }

    /// 409: personal data about a data subject that was erased (refused until re-allowed).
    pub fn subject_erased(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "subject-erased", "Data subject erased", detail)
    }

    pub fn invalid_event(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid-event", "Invalid event", detail)
    }

    pub fn rate_limited(detail: impl Into<String>, retry_after_secs: u64) -> Self {
        Self {
            retry_after_secs: Some(retry_after_secs),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, "rate-limited", "Too many events", detail)
        }
    }

    pub fn broker_unavailable(detail: impl Into<String>) -> Self {
        Self {
            retry_after_secs: Some(1),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "broker-unavailable", "Broker unavailable", detail)
        }
    }

    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self {
            retry_after_secs: Some(1),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "service-unavailable", "Service unavailable", detail)
        }
    }

    pub fn invalid_parameter(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid-parameter", "Invalid parameter", detail)
    }

    /// The projection has not yet passed the positions of a consistency token.
    pub fn not_yet_consistent(detail: impl Into<String>) -> Self {
        Self {
            retry_after_secs: Some(1),
            ..Self::new(StatusCode::TOO_EARLY, "not-yet-consistent", "Not yet consistent", detail)
        }
    }

    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal-error", "Internal error", detail)
    }

    /// Adds the `WWW-Authenticate` challenge a client reads to learn how to authenticate.
    pub fn with_challenge(mut self, challenge: String) -> Self {
        self.challenge = Some(challenge.into());
        self
    }

    pub fn with(mut self, name: &'static str, value: Value) -> Self {
        self.extensions.push((name, value));
        self
    }

    /// The full `type` URI.
    pub fn type_uri(&self) -> String {
        format!("{TYPE_BASE}{}", self.slug)
    }

    pub fn body(&self) -> Value {
        let mut body = json!({
            "type": self.type_uri(),
            "title": self.title,
            "status": self.status.as_u16(),
            "detail": self.detail,
        });
        let object = body.as_object_mut().expect("an object");
        for (name, value) in &self.extensions {
            object.insert((*name).to_string(), value.clone());
        }
        body
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut response = (self.status, self.body().to_string()).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if let Some(seconds) = self.retry_after_secs {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let Some(challenge) = self.challenge.as_deref().and_then(|c| HeaderValue::from_str(c).ok()) {
            headers.insert(header::WWW_AUTHENTICATE, challenge);
        }
        response
    }
}
