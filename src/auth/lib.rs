//! # eventline-auth
//!
//! Who is calling an HTTP service, and what it may do. A caller sends `Authorization: Bearer
//! <token>`: an API key (`elk_…`, made by `eventline keys create`, checked against its hash in the
//! store) or, when an issuer is configured, a JWT that issuer signed. Either carries scopes:
//!
//! - `read:<projection>` (or `read:*`): that projection's query endpoints and tables;
//! - `status`: every projection's position and lag (`GET /v1/projections`);
//! - `personal`: personal data in clear in what the caller may read (otherwise `null`), each
//!   such read audited;
//! - `operate`: the operator console's actions (retrying, skipping and purging dead letters, and
//!   the like), each attempt audited;
//! - publishing: an API key's event type patterns, a JWT's `publish:<pattern>` scopes.
//!
//! Refusals follow RFC 6750: 401 with a `WWW-Authenticate: Bearer` challenge (`invalid_token`
//! when the credentials are wrong), 403 `insufficient_scope` naming the scope needed. Details
//! never repeat the token.

mod jwt;
pub mod keys;
mod openapi;

use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use eventline_core::config::JwtSettings;
use eventline_http::Problem;
use eventline_store::Store;

pub use jwt::JwtVerifier;
pub use keys::KeyStore;
pub use openapi::describe_security;

/// The scope that shows every projection's position and lag.
pub const STATUS_SCOPE: &str = "status";
/// The scope that shows personal data in clear, in what the caller may read.
pub const PERSONAL_SCOPE: &str = "personal";
/// The scope that acts on projections from the operator console.
pub const OPERATE_SCOPE: &str = "operate";
const READ_PREFIX: &str = "read:";
const PUBLISH_PREFIX: &str = "publish:";
const REALM: &str = "eventline";

/// The scope that reads `projection`.
pub fn read_scope(projection: &str) -> String {
    format!("{READ_PREFIX}{projection}")
}

/// Why `scope` is not one an API key can hold, given the application's projections.
pub fn check_key_scope(scope: &str, projections: &[&str]) -> Result<(), String> {
    if [STATUS_SCOPE, PERSONAL_SCOPE, OPERATE_SCOPE].contains(&scope) {
        return Ok(());
    }
    match scope.strip_prefix(READ_PREFIX) {
        Some("*") => Ok(()),
        Some(projection) if projections.contains(&projection) => Ok(()),
        Some(projection) => Err(format!(
            "`{scope}` names no projection of this application (`{projection}`); known: {}",
            projections.join(", ")
        )),
        None => Err(format!(
            "`{scope}` is not a scope (use read:<projection>, read:*, {STATUS_SCOPE}, {PERSONAL_SCOPE}, or {OPERATE_SCOPE})"
        )),
    }
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Who, for the log, the audit and rate limits: `key:<id>`, `jwt:<subject>`, or `anonymous`
    /// when authentication is off.
    pub id: String,
    publish: Vec<String>,
    scopes: Vec<String>,
    /// Authentication is off: everything is allowed.
    unrestricted: bool,
}

impl Caller {
    /// What rate limits count against: the caller, or nothing when authentication is off (then
    /// every request shares one limit).
    pub fn rate_key(&self) -> Option<&str> {
        (!self.unrestricted).then_some(self.id.as_str())
    }

    /// The event type patterns this caller may publish.
    pub fn publish_patterns(&self) -> &[String] {
        &self.publish
    }

    pub fn may_publish(&self, event_type: &str) -> bool {
        self.unrestricted || keys::allows(&self.publish, event_type)
    }

    fn holds(&self, scope: &str) -> bool {
        self.unrestricted || self.scopes.iter().any(|s| s == scope)
    }

    /// Refuses (403 `insufficient_scope`) a caller that may not read `projection`.
    pub fn require_read(&self, projection: &str) -> Result<(), Problem> {
        let scope = read_scope(projection);
        if self.holds(&scope) || self.holds("read:*") {
            return Ok(());
        }
        Err(insufficient_scope(&scope, &format!("reading {projection} needs the scope {scope} (or read:*)")))
    }

    /// Whether personal data is shown to this caller in clear (each read then audited). Never
    /// with authentication off: such reads need a caller the audit can name.
    pub fn sees_personal(&self) -> bool {
        !self.unrestricted && self.scopes.iter().any(|s| s == PERSONAL_SCOPE)
    }

    /// Refuses (403 `insufficient_scope`) a caller without the `personal` scope: `what` needs it.
    pub fn require_personal(&self, what: &str) -> Result<(), Problem> {
        if self.sees_personal() {
            return Ok(());
        }
        Err(insufficient_scope(PERSONAL_SCOPE, &format!("{what} needs the scope {PERSONAL_SCOPE}")))
    }

    /// Whether this caller may act on projections (the operator console's actions).
    pub fn may_operate(&self) -> bool {
        self.holds(OPERATE_SCOPE)
    }

    /// Refuses (403 `insufficient_scope`) a caller that may not act on projections: `what` needs it.
    pub fn require_operate(&self, what: &str) -> Result<(), Problem> {
        if self.may_operate() {
            return Ok(());
        }
        Err(insufficient_scope(OPERATE_SCOPE, &format!("{what} needs the scope {OPERATE_SCOPE}")))
    }

    /// Refuses a caller that may not see every projection's status.
    pub fn require_status(&self) -> Result<(), Problem> {
        if self.holds(STATUS_SCOPE) {
            return Ok(());
        }
        Err(insufficient_scope(STATUS_SCOPE, &format!("projection status needs the scope {STATUS_SCOPE}")))
    }
}

/// 401 for wrong credentials: the challenge says so (`invalid_token`).
pub(crate) fn invalid_token(detail: &str) -> Problem {
    Problem::unauthorized(detail).with_challenge(format!(
        "Bearer realm=\"{REALM}\", error=\"invalid_token\", error_description=\"{}\"",
        quotable(detail)
    ))
}

fn insufficient_scope(scope: &str, detail: &str) -> Problem {
    Problem::insufficient_scope(detail).with("scope", serde_json::json!(scope)).with_challenge(format!(
        "Bearer realm=\"{REALM}\", error=\"insufficient_scope\", scope=\"{scope}\", error_description=\"{}\"",
        quotable(detail)
    ))
}

/// RFC 6750 allows printable ASCII but `"` and `\` in a quoted attribute.
fn quotable(text: &str) -> String {
    text.chars().map(|c| if c == '"' || c == '\\' || !(' '..='~').contains(&c) { '\'' } else { c }).collect()
}

/// How requests are authenticated.
pub struct Auth {
    mode: Mode,
}

// One per process: the size of its variants does not matter.
#[allow(clippy::large_enum_variant)]
enum Mode {
    /// Every request may do anything: development only, logged loudly at start.
    Disabled,
    Enforced {
        keys: KeyStore,
        jwt: Option<JwtVerifier>,
    },
}

impl Auth {
    /// API keys from the store and, when configured, JWTs from an issuer.
    pub fn new(store: Store, jwt: Option<JwtSettings>) -> Self {
        Self { mode: Mode::Enforced { keys: KeyStore::new(store), jwt: jwt.map(JwtVerifier::new) } }
    }

    /// No authentication at all: development only.
    pub fn disabled() -> Self {
        Self { mode: Mode::Disabled }
    }

    /// Whether bearer JWTs are accepted.
    pub fn accepts_jwts(&self) -> bool {
        matches!(self.mode, Mode::Enforced { jwt: Some(_), .. })
    }

    /// Fetches the JWT issuer's keys now, when there is one, so a wrong URL shows in the log at
    /// start rather than at the first JWT.
    pub async fn prefetch(&self) {
        if let Mode::Enforced { jwt: Some(jwt), .. } = &self.mode {
            jwt.prefetch().await;
        }
    }

    /// Checks the `Authorization` header.
    pub async fn authenticate(&self, header: Option<&HeaderValue>) -> Result<Caller, Problem> {
        let (keys, jwt) = match &self.mode {
            Mode::Disabled => {
                return Ok(Caller {
                    id: "anonymous".into(),
                    publish: vec!["*".into()],
                    scopes: Vec::new(),
                    unrestricted: true,
                })
            }
            Mode::Enforced { keys, jwt } => (keys, jwt),
        };
        let Some(header) = header else {
            let detail = if jwt.is_some() {
                "send an API key or a JWT as `Authorization: Bearer <token>`"
            } else {
                "send an API key as `Authorization: Bearer <key>`"
            };
            // No credentials at all: the challenge carries no error code (RFC 6750 §3.1).
            return Err(Problem::unauthorized(detail).with_challenge(format!("Bearer realm=\"{REALM}\"")));
        };
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| invalid_token("the Authorization header must be `Bearer <key>`"))?;
        if token.starts_with(keys::PREFIX) {
            let key = keys.verify(token).await?;
            return Ok(Caller {
                id: format!("key:{}", key.key_id),
                publish: key.event_types,
                scopes: key.scopes,
                unrestricted: false,
            });
        }
        let Some(jwt) = jwt else {
            return Err(invalid_token("the API key is not valid"));
        };
        let verified = jwt.verify(token).await.map_err(|refused| match refused {
            jwt::Refused::Invalid(reason) => invalid_token(&format!("the JWT is not valid: {reason}")),
            jwt::Refused::KeysUnavailable(reason) => Problem::unavailable(reason),
        })?;
        let publish = verified.scopes.iter().filter_map(|s| s.strip_prefix(PUBLISH_PREFIX)).map(String::from).collect();
        Ok(Caller {
            id: format!("jwt:{}", verified.subject),
            publish,
            scopes: verified.scopes.clone(),
            unrestricted: false,
        })
    }
}

/// Middleware: authenticates every request of the routes it wraps and hands the [`Caller`] to
/// their handlers; a request without valid credentials never reaches them.
pub async fn authenticate_requests(State(auth): State<Arc<Auth>>, mut request: Request, next: Next) -> Response {
    match auth.authenticate(request.headers().get(header::AUTHORIZATION)).await {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(problem) => problem.into_response(),
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Caller>().cloned().ok_or_else(|| {
            tracing::error!(path = %parts.uri.path(), "A route that needs a caller is not behind authenticate_requests.");
            Problem::internal("the route is not behind authentication; the server log has the cause")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_scopes_name_a_projection_everything_or_status() {
        let projections = ["accounts", "activity"];
        for good in ["read:accounts", "read:*", "status", "personal", "operate"] {
            assert_eq!(check_key_scope(good, &projections), Ok(()), "{good}");
        }
        assert_eq!(
            check_key_scope("read:nothing", &projections),
            Err("`read:nothing` names no projection of this application (`nothing`); known: accounts, activity".into())
        );
        assert_eq!(
            check_key_scope("write:accounts", &projections),
            Err("`write:accounts` is not a scope (use read:<projection>, read:*, status, personal, or operate)".into())
        );
    }

    #[test]
    fn a_callers_scopes_decide_what_it_reads() {
        let caller = |scopes: &[&str]| Caller {
            id: "key:k".into(),
            publish: Vec::new(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            unrestricted: false,
        };
        assert!(caller(&["read:accounts"]).require_read("accounts").is_ok());
        assert!(caller(&["read:*"]).require_read("accounts").is_ok());
        let refused = caller(&["read:activity", "status"]).require_read("accounts").unwrap_err();
        assert_eq!(refused.status.as_u16(), 403);
        assert_eq!(refused.detail, "reading accounts needs the scope read:accounts (or read:*)");
        assert_eq!(
            refused.challenge.as_deref(),
            Some(
                "Bearer realm=\"eventline\", error=\"insufficient_scope\", scope=\"read:accounts\", \
                 error_description=\"reading accounts needs the scope read:accounts (or read:*)\""
            )
        );
        assert!(caller(&["status"]).require_status().is_ok());
        assert!(caller(&["read:*", "personal"]).sees_personal());
        assert!(!caller(&["read:*", "status"]).sees_personal());
        let anyone = Caller { id: "anonymous".into(), publish: Vec::new(), scopes: Vec::new(), unrestricted: true };
        assert!(anyone.require_read("accounts").is_ok());
        assert!(!anyone.sees_personal(), "authentication off, personal data stays withheld");
        assert!(caller(&["read:*"]).require_status().is_err());
        assert!(!caller(&["read:*"]).may_publish("accounts.FundsDeposited"));
        assert!(caller(&["status", "operate"]).may_operate());
        let viewer = caller(&["status"]).require_operate("retrying a dead letter").unwrap_err();
        assert_eq!(viewer.detail, "retrying a dead letter needs the scope operate");
    }

    #[test]
    fn challenges_quote_safely() {
        assert_eq!(quotable("say \"hi\" \\ é"), "say 'hi' ' '");
    }
}
