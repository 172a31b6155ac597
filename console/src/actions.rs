//! What every action of the console goes through: the `operate` scope, a CSRF token, the
//! request's origin, and an audit entry for each attempt, refused ones included.

use axum::http::{header, HeaderMap, StatusCode};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use eventline_auth::Caller;
use eventline_store::audit::NewAuditEntry;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::Console;

/// A form's CSRF token for the session `session` (the token in the console's cookie): a digest
/// only that session's holder can compute, since the cookie is HTTP-only and same-site. Derived,
/// not stored, so every process behind a load balancer accepts it.
pub fn csrf_token(session: &str) -> String {
    let digest = Sha256::new().chain_update(b"eventline console csrf\0").chain_update(session.as_bytes()).finalize();
    URL_SAFE_NO_PAD.encode(digest)
}

/// Why an action was not carried out, as the page shows it.
#[derive(Debug)]
pub struct Refusal {
    pub status: StatusCode,
    pub message: String,
}

impl Refusal {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into() }
    }
}

/// A replay's or a rebuild's failure as the page says it: nothing was done either way.
pub fn operation_refusal(error: eventline_consumers::rebuild::OperationError) -> Refusal {
    use eventline_consumers::rebuild::OperationError;
    match error {
        OperationError::Store(error) => {
            tracing::warn!(%error, "A console action cannot reach the database.");
            Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the database cannot be reached; nothing was done, try again shortly",
            )
        }
        OperationError::Kafka(error) => {
            tracing::warn!(%error, "A console action cannot reach the broker.");
            Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the broker cannot be read ({error}); nothing was done"),
            )
        }
        error @ (OperationError::Busy(_) | OperationError::CutoverTimedOut { .. }) => {
            Refusal::new(StatusCode::CONFLICT, format!("{error}; nothing was done"))
        }
        error => Refusal::new(StatusCode::BAD_REQUEST, format!("{error}; nothing was done")),
    }
}

/// An action being attempted: who, what, from where.
pub struct Attempt<'a> {
    pub caller: &'a Caller,
    /// The audit's name for it (`console.dlq.retry`).
    pub action: &'a str,
    /// What it does, as a refusal says it (`retrying dead letters`).
    pub what: &'a str,
    pub projection: Option<&'a str>,
    pub target: Value,
    pub origin: Value,
}

impl Attempt<'_> {
    /// Lets the attempt through when the caller holds `operate`, the form's CSRF token is the
    /// session's and the request comes from this console (its `Origin`, when sent, is this host).
    pub fn check(&self, headers: &HeaderMap, session: &str, form_csrf: Option<&str>) -> Result<(), Refusal> {
        self.caller
            .require_operate(self.what)
            .map_err(|problem| Refusal::new(StatusCode::FORBIDDEN, problem.detail))?;
        if !same_origin(headers) {
            return Err(Refusal::new(StatusCode::FORBIDDEN, "the form was sent from another site; nothing was done"));
        }
        if form_csrf != Some(csrf_token(session).as_str()) {
            return Err(Refusal::new(
                StatusCode::FORBIDDEN,
                "the form's CSRF token is missing or stale; reload the page and try again (nothing was done)",
            ));
        }
        Ok(())
    }
}

impl Console {
    /// An action's answer: its result page, or its refusal on a page; the attempt audited either way.
    pub async fn answered(
        &self,
        viewer: &Caller,
        attempt: &Attempt<'_>,
        result: Result<(Value, maud::Markup), Refusal>,
    ) -> axum::response::Response {
        use axum::response::{Html, IntoResponse};
        match result {
            Ok((done, markup)) => {
                self.audit_attempt(attempt, Ok(done)).await;
                Html(markup.into_string()).into_response()
            }
            Err(refusal) => {
                self.audit_attempt(attempt, Err(&refusal)).await;
                let page = crate::pages::action_refused(viewer, &refusal.message);
                (refusal.status, Html(page.into_string())).into_response()
            }
        }
    }

    /// Writes the audit entry of an attempt and its outcome. An action whose audit cannot be
    /// written still happened (its own entry, written with it, says so): this one is logged.
    pub async fn audit_attempt(&self, attempt: &Attempt<'_>, outcome: Result<Value, &Refusal>) {
        if outcome.is_ok() {
            self.0.snapshots.changed();
        }
        let outcome = match outcome {
            Ok(done) => json!({ "done": done, "origin": attempt.origin }),
            Err(refusal) => {
                json!({ "refused": refusal.message, "status": refusal.status.as_u16(), "origin": attempt.origin })
            }
        };
        let entry = NewAuditEntry {
            actor: &attempt.caller.id,
            action: attempt.action,
            projection: attempt.projection,
            target: attempt.target.clone(),
            reason: None,
            outcome,
        };
        if let Err(error) = self.0.store.audit_alone(entry).await {
            tracing::error!(%error, action = attempt.action, "Cannot write the console action's audit entry.");
        }
    }
}

/// Where a request says it comes from: its `Origin`, the address a proxy forwarded, and the
/// browser it names.
pub fn origin(headers: &HeaderMap) -> Value {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    json!({
        "origin": text("origin"),
        "forwarded_for": text("x-forwarded-for"),
        "user_agent": text(header::USER_AGENT.as_str()),
    })
}

/// Whether the request's `Origin` (when a browser sent one) names the host it was sent to.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else { return true };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
    !host.is_empty() && origin_host == host
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_csrf_token_belongs_to_its_session() {
        assert_eq!(csrf_token("elk_a_b"), csrf_token("elk_a_b"));
        assert_ne!(csrf_token("elk_a_b"), csrf_token("elk_a_c"));
        assert_eq!(csrf_token("elk_a_b").len(), 43);
    }

    #[test]
    fn only_this_host_is_the_same_origin() {
        let headers = |origin: Option<&str>| {
            let mut headers = HeaderMap::new();
            headers.insert(header::HOST, "127.0.0.1:8080".parse().unwrap());
            if let Some(origin) = origin {
                headers.insert(header::ORIGIN, origin.parse().unwrap());
            }
            headers
        };
        assert!(same_origin(&headers(None)));
        assert!(same_origin(&headers(Some("http://127.0.0.1:8080"))));
        assert!(!same_origin(&headers(Some("https://evil.example"))));
        assert!(!same_origin(&headers(Some("http://127.0.0.1:8081"))));
    }
}
