//! # eventline-console
//!
//! The operator console at `/console`: server-rendered pages over the same status the query API
//! serves (`eventline_api::status`), kept live by Server-Sent Events from one snapshot task
//! ([`snapshots`]). A browser signs in once with an API key or a JWT holding the `status` scope;
//! the token is kept in an HTTP-only, same-site cookie scoped to `/console`, and checked on every
//! request like a bearer token (so a revoked key stops working within the key cache's 5 s).
//!
//! The stylesheet and the script are embedded at build time: no Node step, no CDN.

mod actions;
mod audit;
mod dead_letters;
mod pages;
mod rebuilds;
mod registry;
mod replay;
pub mod snapshots;

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use eventline_auth::{Auth, Caller};
use eventline_consumers::projections::Projections;
use eventline_core::config::Settings;
use eventline_core::registry::Registry;
use eventline_store::Store;
use futures::Stream;
use tokio_stream::wrappers::WatchStream;
use tokio_stream::StreamExt as _;
use tokio_util::sync::CancellationToken;

pub use snapshots::Snapshots;

/// Where the console is served.
pub const BASE: &str = "/console";
/// The cookie holding a signed-in browser's token.
const TOKEN_COOKIE: &str = "eventline_console";
/// How long a sign-in lasts in the browser (the token's own expiry still applies).
const SIGN_IN_SECONDS: u32 = 12 * 3600;

const STYLESHEET: &str = include_str!("../assets/console.css");
const SCRIPT: &str = include_str!("../assets/console.js");

/// What every console request shares.
#[derive(Clone)]
pub struct Console(Arc<Inner>);

struct Inner {
    auth: Arc<Auth>,
    snapshots: Snapshots,
    store: Store,
    /// Tells personal fields apart (masking), and checks events a retry applies again.
    registry: Arc<Registry>,
    /// The application's projections, which retries apply dead letters to.
    projections: Projections,
    /// Where replays read the topics.
    settings: Settings,
    /// Stops the rebuilds started from the page (each pauses, to be resumed).
    shutdown: CancellationToken,
    /// What became of the last rebuild started from the page, per projection.
    started_rebuilds: std::sync::Mutex<HashMap<String, rebuilds::Started>>,
}

impl Console {
    pub fn new(
        auth: Arc<Auth>,
        snapshots: Snapshots,
        store: Store,
        registry: Arc<Registry>,
        projections: Projections,
        settings: Settings,
        shutdown: CancellationToken,
    ) -> Self {
        Self(Arc::new(Inner {
            auth,
            snapshots,
            store,
            registry,
            projections,
            settings,
            shutdown,
            started_rebuilds: Default::default(),
        }))
    }

    /// The browser's session token (empty with authentication off): what CSRF tokens derive from.
    fn session(&self, headers: &HeaderMap) -> String {
        token_cookie(headers).unwrap_or_default().to_string()
    }

    /// The signed-in viewer of a page: a redirect to the sign-in page without valid credentials,
    /// a page saying so without the `status` scope.
    async fn viewer(&self, headers: &HeaderMap) -> Result<Caller, Response> {
        let caller = match self.caller(headers).await {
            Ok(caller) => caller,
            Err(_) => return Err(Redirect::to(&format!("{BASE}/login")).into_response()),
        };
        if let Err(problem) = caller.require_status() {
            let page = pages::refused(&caller, &problem.detail);
            return Err((StatusCode::FORBIDDEN, Html(page.into_string())).into_response());
        }
        Ok(caller)
    }

    /// The caller the browser's cookie names (or anyone, with authentication off).
    async fn caller(&self, headers: &HeaderMap) -> Result<Caller, eventline_http::Problem> {
        let bearer = token_cookie(headers).and_then(|token| HeaderValue::from_str(&format!("Bearer {token}")).ok());
        self.0.auth.authenticate(bearer.as_ref()).await
    }
}

/// The signed-in viewer of a page, holding `status` (see [`Console::viewer`]): a handler that
/// takes one is reached by no one else; others are sent to sign in, or told what they lack.
pub(crate) struct Viewer(pub Caller);

impl axum::extract::FromRequestParts<Console> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, console: &Console) -> Result<Self, Response> {
        console.viewer(&parts.headers).await.map(Viewer)
    }
}

/// The console's routes, under [`BASE`].
pub fn router(console: Console) -> Router {
    Router::new()
        .route(BASE, get(overview))
        .route(&format!("{BASE}/live"), get(overview_live))
        .route(&format!("{BASE}/projections/{{name}}"), get(projection))
        .route(&format!("{BASE}/projections/{{name}}/live"), get(projection_live))
        .route(&format!("{BASE}/projections/{{name}}/replay"), get(replay::preview).post(replay::replay))
        .route(&format!("{BASE}/projections/{{name}}/diff"), get(rebuilds::diff))
        .route(&format!("{BASE}/projections/{{name}}/rebuild"), post(rebuilds::start))
        .route(&format!("{BASE}/projections/{{name}}/cutover"), post(rebuilds::cutover))
        .route(&format!("{BASE}/projections/{{name}}/rollback"), post(rebuilds::rollback))
        .route(&format!("{BASE}/dead-letters"), get(dead_letters::list))
        .route(
            &format!("{BASE}/dead-letters/retry-all"),
            get(dead_letters::retry_all_preview).post(dead_letters::retry_all),
        )
        .route(&format!("{BASE}/dead-letters/{{id}}"), get(dead_letters::record))
        .route(&format!("{BASE}/dead-letters/{{id}}/retry"), post(dead_letters::retry))
        .route(&format!("{BASE}/dead-letters/{{id}}/skip"), post(dead_letters::skip))
        .route(&format!("{BASE}/dead-letters/{{id}}/purge"), post(dead_letters::purge))
        .route(&format!("{BASE}/audit"), get(audit::log))
        .route(&format!("{BASE}/registry"), get(registry::registry))
        .route(&format!("{BASE}/login"), get(login_page).post(login))
        .route(&format!("{BASE}/logout"), post(logout))
        .route(&format!("{BASE}/assets/console.css"), get(stylesheet))
        .route(&format!("{BASE}/assets/console.js"), get(script))
        .with_state(console)
}

async fn overview(State(console): State<Console>, Viewer(viewer): Viewer) -> Response {
    let snapshot = console.0.snapshots.fresh().await;
    Html(pages::overview(&viewer, &snapshot).into_string()).into_response()
}

async fn projection(
    State(console): State<Console>,
    Viewer(viewer): Viewer,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    let snapshot = console.0.snapshots.fresh().await;
    if snapshot.error.is_none() && snapshot.projection(&name).is_none() {
        let known: Vec<&str> = snapshot.projections.iter().map(|p| p.status.name.as_str()).collect();
        let page = pages::not_found(&viewer, &name, &known);
        return (StatusCode::NOT_FOUND, Html(page.into_string())).into_response();
    }
    let session = console.session(&headers);
    let started = console.started_rebuild(&name);
    Html(pages::projection(&viewer, &session, &snapshot, &name, started.as_ref()).into_string()).into_response()
}

async fn overview_live(State(console): State<Console>, headers: HeaderMap) -> Response {
    live(&console, &headers, "overview".to_string(), |snapshot| pages::overview_live(snapshot).into_string()).await
}

async fn projection_live(State(console): State<Console>, Path(name): Path<String>, headers: HeaderMap) -> Response {
    let view = format!("projection {name}");
    live(&console, &headers, view, move |snapshot| pages::projection_live(snapshot, &name).into_string()).await
}

/// A page's live region, rendered from each snapshot as it is taken (once per `view`, however
/// many pages show it), as Server-Sent Events.
async fn live(
    console: &Console,
    headers: &HeaderMap,
    view: String,
    render: impl Fn(&snapshots::Snapshot) -> String + Send + Sync + 'static,
) -> Response {
    if let Err(answer) = console.viewer(headers).await {
        // An event stream cannot follow a redirect to a form: say why plainly.
        let status = if answer.status() == StatusCode::FORBIDDEN { answer.status() } else { StatusCode::UNAUTHORIZED };
        return (status, "sign in at /console/login").into_response();
    }
    let stream = WatchStream::new(console.0.snapshots.subscribe()).filter(|snapshot| snapshot.taken_at.is_some()).map(
        move |snapshot| {
            let html = snapshot.rendered(&view, &render);
            Ok::<_, Infallible>(Event::default().event("snapshot").data(&*html))
        },
    );
    sse(stream).into_response()
}

fn sse(stream: impl Stream<Item = Result<Event, Infallible>> + Send + 'static) -> impl IntoResponse {
    Sse::new(stream).keep_alive(KeepAlive::default())
}

async fn login_page(State(console): State<Console>, headers: HeaderMap) -> Response {
    // Already signed in (or nobody needs to be): straight to the overview.
    if console.caller(&headers).await.is_ok_and(|caller| caller.require_status().is_ok()) {
        return Redirect::to(BASE).into_response();
    }
    Html(pages::login(None).into_string()).into_response()
}

#[derive(serde::Deserialize)]
struct SignIn {
    token: String,
}

async fn login(State(console): State<Console>, body: Bytes) -> Response {
    let refused = |status: StatusCode, why: &str| (status, Html(pages::login(Some(why)).into_string())).into_response();
    let Ok(SignIn { token }) = serde_urlencoded::from_bytes::<SignIn>(&body) else {
        return refused(StatusCode::BAD_REQUEST, "Paste an API key or a JWT to sign in.");
    };
    let token = token.trim();
    let Ok(bearer) = HeaderValue::from_str(&format!("Bearer {token}")) else {
        return refused(StatusCode::BAD_REQUEST, "That is not a token: it holds characters no token has.");
    };
    if token.is_empty() {
        return refused(StatusCode::BAD_REQUEST, "Paste an API key or a JWT to sign in.");
    }
    let caller = match console.0.auth.authenticate(Some(&bearer)).await {
        Ok(caller) => caller,
        Err(problem) => return refused(problem.status, &format!("Not signed in: {}.", problem.detail)),
    };
    if let Err(problem) = caller.require_status() {
        return refused(StatusCode::FORBIDDEN, &format!("Not signed in: {}.", problem.detail));
    }
    let cookie = format!("{TOKEN_COOKIE}={token}; Path={BASE}; Max-Age={SIGN_IN_SECONDS}; HttpOnly; SameSite=Strict");
    let mut answer = Redirect::to(BASE).into_response();
    answer.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_str(&cookie).expect("checked as a header above"));
    answer
}

async fn logout() -> Response {
    let cookie = format!("{TOKEN_COOKIE}=; Path={BASE}; Max-Age=0; HttpOnly; SameSite=Strict");
    let mut answer = Redirect::to(&format!("{BASE}/login")).into_response();
    answer.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_str(&cookie).expect("a valid cookie"));
    answer
}

async fn stylesheet() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "max-age=300")], STYLESHEET)
        .into_response()
}

async fn script() -> Response {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8"), (header::CACHE_CONTROL, "max-age=300")], SCRIPT)
        .into_response()
}

/// The token in the request's console cookie.
fn token_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == TOKEN_COOKIE)
        .map(|(_, token)| token)
        .filter(|token| !token.is_empty())
}
