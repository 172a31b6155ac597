//! A rebuild from the page: start one (this process then builds the generation until it has
//! caught up, and pauses it), compare the generation being built with the live one, cut readers
//! over to it, or roll them back to the generation the last cutover retired. Readers keep being
//! answered throughout (the switch is one transaction).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use eventline_auth::Caller;
use eventline_consumers::projections::Projection;
use eventline_consumers::rebuild::{self, Rebuild};
use serde_json::json;

use crate::actions::{operation_refusal as refusal, origin, Attempt, Refusal};
use crate::replay::Start;
use crate::{pages, Console, Viewer};

/// The most events a generation may be behind for a cutover from the page (as `eventline
/// rebuild cutover` allows by default): the rest is caught up with the live writers paused.
const CUTOVER_MAX_LAG: i64 = 10_000;

impl Console {
    fn projection_named(&self, name: &str) -> Result<Arc<dyn Projection>, Refusal> {
        self.0.projections.get(name).cloned().ok_or_else(|| {
            Refusal::new(StatusCode::NOT_FOUND, format!("this application has no projection {name}; nothing was done"))
        })
    }

    async fn open_rebuild(&self, projection: Arc<dyn Projection>) -> Result<Rebuild, Refusal> {
        Rebuild::open(&self.0.settings, self.0.registry.clone(), &self.0.store, projection, None).await.map_err(refusal)
    }

    /// What became of the last rebuild started from the page for `name`, if one was.
    pub(crate) fn started_rebuild(&self, name: &str) -> Option<Started> {
        self.0.started_rebuilds.lock().expect("not poisoned").get(name).cloned()
    }

    fn record_started(&self, name: &str, started: Started) {
        self.0.started_rebuilds.lock().expect("not poisoned").insert(name.to_string(), started);
        self.0.snapshots.changed();
    }

    /// Builds the generation until it has caught up (or the process stops), then pauses it: its
    /// worker stops and the generation waits for a comparison, a cutover, or a resume.
    async fn build(self, name: String, mut rebuild: Rebuild) {
        let generation = rebuild.generation.generation;
        let caught_up = rebuild.catch_up(&self.0.shutdown, |_| {}).await;
        let paused = rebuild.pause().await;
        let started = match (caught_up, paused) {
            (Ok(true), Ok(())) => Started::CaughtUp { generation },
            (Ok(false), Ok(())) => Started::Stopped { generation },
            (Err(error), _) | (_, Err(error)) => {
                tracing::warn!(projection = %name, generation, %error, "A rebuild started from the console failed.");
                Started::Failed { generation, message: error.to_string() }
            }
        };
        self.record_started(&name, started);
    }
}

/// What became of a rebuild started from the page (its progress is in the status).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Started {
    Building {
        generation: i32,
    },
    CaughtUp {
        generation: i32,
    },
    /// The process was stopping: the generation is paused, and starting it again resumes it.
    Stopped {
        generation: i32,
    },
    Failed {
        generation: i32,
        message: String,
    },
}

impl Started {
    pub fn generation(&self) -> i32 {
        match self {
            Self::Building { generation }
            | Self::CaughtUp { generation }
            | Self::Stopped { generation }
            | Self::Failed { generation, .. } => *generation,
        }
    }
}

/// Starts a rebuild from the earliest record (or, for projections that may start mid-stream, a
/// time or offsets), or resumes the one being built when it began from the same start. It is not
/// destructive (readers keep the live generation), so no name is typed; every attempt audited.
pub async fn start(
    State(console): State<Console>,
    Viewer(viewer): Viewer,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form: HashMap<String, String> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let start = Start::of(&form);
    let attempt = Attempt {
        caller: &viewer,
        action: "console.rebuild.start",
        what: "starting a rebuild",
        projection: Some(&name),
        target: json!({ "from": start.query(), "resume": form.contains_key("resume") }),
        origin: origin(&headers),
    };
    let result = async {
        attempt.check(&headers, &console.session(&headers), form.get("csrf").map(String::as_str))?;
        let projection = console.projection_named(&name)?;
        // Resuming takes the generation being built with the start it began from.
        let from = match form.get("resume") {
            Some(_) => None,
            None => Some(start.parse_or_earliest().map_err(|error| {
                Refusal::new(StatusCode::BAD_REQUEST, format!("{error}; nothing was done"))
            })?),
        };
        let rebuild = Rebuild::open(&console.0.settings, console.0.registry.clone(), &console.0.store, projection, from)
            .await
            .map_err(refusal)?;
        let (generation, created) = (rebuild.generation.generation, rebuild.created);
        let started_from = rebuild.generation.started_from.clone();
        console.record_started(&name, Started::Building { generation });
        tokio::spawn(console.clone().build(name.clone(), rebuild));
        let verb = if created { "started" } else { "resumed" };
        let message = format!(
            "Rebuild of {name} {verb}: generation {generation}, from {started_from}. The live generation keeps serving; this page shows its progress, then compare and cut over."
        );
        let done = json!({ "generation": generation, "created": created, "from": started_from });
        Ok((done, pages::rebuild_started(&viewer, &name, &message)))
    }
    .await;
    console.answered(&viewer, &attempt, result).await
}

pub async fn diff(State(console): State<Console>, Viewer(viewer): Viewer, Path(name): Path<String>) -> Response {
    let result: Result<_, Refusal> = async {
        let rebuild = console.open_rebuild(console.projection_named(&name)?).await?;
        let generation = rebuild.generation.generation;
        let diffs = rebuild.diff().await.map_err(refusal);
        rebuild.pause().await.map_err(refusal)?;
        Ok((generation, diffs?))
    }
    .await;
    match result {
        Ok((generation, diffs)) => Html(pages::diff(&viewer, &name, generation, &diffs).into_string()).into_response(),
        Err(refusal) => {
            (refusal.status, Html(pages::action_refused(&viewer, &refusal.message).into_string())).into_response()
        }
    }
}

/// Which way readers are switched.
#[derive(Clone, Copy)]
enum Switch {
    Cutover,
    Rollback,
}

impl Switch {
    fn action(self) -> (&'static str, &'static str) {
        match self {
            Self::Cutover => ("console.rebuild.cutover", "cutting over a rebuild"),
            Self::Rollback => ("console.rebuild.rollback", "rolling back a rebuild"),
        }
    }

    /// Switches `projection`'s readers: what was done, for the audit and for the page.
    async fn run(
        self,
        console: &Console,
        projection: Arc<dyn Projection>,
        actor: &str,
    ) -> Result<(serde_json::Value, String), Refusal> {
        match self {
            Self::Cutover => {
                let rebuild = console.open_rebuild(projection).await?;
                let live = rebuild.cutover(CUTOVER_MAX_LAG, actor).await.map_err(refusal)?;
                let message = format!("Readers now read generation {live}; the one before is kept for a rollback.");
                Ok((json!({ "live_generation": live }), message))
            }
            Self::Rollback => {
                let (live, retired) =
                    rebuild::rollback(&console.0.store, &*projection, actor).await.map_err(refusal)?;
                let message = format!("Readers read generation {live} again; generation {retired} is retired.");
                Ok((json!({ "live_generation": live, "retired_generation": retired }), message))
            }
        }
    }
}

/// Switches readers as `switch` says, behind the usual checks and the name typed to confirm;
/// every attempt audited.
async fn switch(
    console: Console,
    viewer: Caller,
    name: String,
    headers: HeaderMap,
    body: Bytes,
    switch: Switch,
) -> Response {
    let form: HashMap<String, String> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let (action, what) = switch.action();
    let attempt = Attempt {
        caller: &viewer,
        action,
        what,
        projection: Some(&name),
        target: json!({ "projection": name }),
        origin: origin(&headers),
    };
    let result = async {
        attempt.check(&headers, &console.session(&headers), form.get("csrf").map(String::as_str))?;
        let projection = console.projection_named(&name)?;
        if form.get("confirm").map(|c| c.trim()) != Some(name.as_str()) {
            return Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                format!("type the projection's name, {name}, to confirm; nothing was done"),
            ));
        }
        let (done, message) = switch.run(&console, projection, &viewer.id).await?;
        Ok((done, pages::switched(&viewer, &name, &message)))
    }
    .await;
    console.answered(&viewer, &attempt, result).await
}

pub async fn cutover(
    State(console): State<Console>,
    Viewer(viewer): Viewer,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    switch(console, viewer, name, headers, body, Switch::Cutover).await
}

pub async fn rollback(
    State(console): State<Console>,
    Viewer(viewer): Viewer,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    switch(console, viewer, name, headers, body, Switch::Rollback).await
}
