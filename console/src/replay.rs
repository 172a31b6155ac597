//! Replaying a projection in place from the page: pick where it starts again (earliest, a time,
//! or offsets of chosen partitions), see what it would do per partition (a dry run), then confirm
//! with the projection's name. The confirmed replay is refused when its start moved since the
//! preview.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use eventline_consumers::rebuild::{self, ReplayPreview, StartFrom};
use serde_json::json;

use crate::actions::{operation_refusal as refusal, origin, Attempt, Refusal};
use crate::dead_letters::parse_time;
use crate::{pages, Console, Viewer};

/// The start a form names, as typed (to show it again), and as parsed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Start {
    pub from: String,
    pub time: String,
    /// `<partition>:<offset>` pairs separated by commas.
    pub offsets: String,
}

impl Start {
    pub fn of(fields: &HashMap<String, String>) -> Self {
        let field = |name: &str| fields.get(name).map(|v| v.trim().to_string()).unwrap_or_default();
        Self { from: field("from"), time: field("time"), offsets: field("offsets") }
    }

    fn parse(&self) -> Result<StartFrom, String> {
        match self.from.as_str() {
            "earliest" => Ok(StartFrom::Earliest),
            "time" if self.time.is_empty() => Err("give the time to start from".into()),
            "time" => parse_time(&self.time).map(StartFrom::Time),
            "offset" if self.offsets.is_empty() => Err("give the offsets to start from, as partition:offset".into()),
            "offset" => StartFrom::offsets(&self.offsets),
            other => Err(format!("`{other}` is not a start (earliest, time or offset)")),
        }
    }

    /// As [`Self::parse`], with no choice meaning the earliest record.
    pub fn parse_or_earliest(&self) -> Result<StartFrom, String> {
        if self.from.is_empty() {
            return Ok(StartFrom::Earliest);
        }
        self.parse()
    }

    /// The start as a query string (the preview's shareable URL).
    pub fn query(&self) -> String {
        let pairs = [("from", &self.from), ("time", &self.time), ("offsets", &self.offsets)];
        let pairs: Vec<(&str, &str)> =
            pairs.into_iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| (k, v.as_str())).collect();
        serde_urlencoded::to_string(pairs).expect("text pairs encode")
    }
}

/// Where a preview starts each partition again: what the confirmation must still match.
pub fn starts(preview: &ReplayPreview) -> String {
    let starts: Vec<String> =
        preview.partitions.iter().map(|p| format!("{}:{}:{}", p.topic, p.partition, p.from)).collect();
    starts.join(",")
}

pub async fn preview(
    State(console): State<Console>,
    Viewer(viewer): Viewer,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let Some(projection) = console.0.projections.get(&name).cloned() else {
        let known = console.0.projections.names();
        return (StatusCode::NOT_FOUND, Html(pages::not_found(&viewer, &name, &known).into_string())).into_response();
    };
    let fields: HashMap<String, String> =
        serde_urlencoded::from_str(query.as_deref().unwrap_or_default()).unwrap_or_default();
    let start = Start::of(&fields);
    let session = console.session(&headers);
    let view = pages::ReplayView { viewer: &viewer, session: &session, projection: &name, start: &start };
    if start.from.is_empty() {
        return Html(pages::replay(&view, None).into_string()).into_response();
    }
    let outcome = match start.parse() {
        Ok(from) => {
            rebuild::replay_preview(&console.0.settings, &console.0.store, &*projection, &from).await.map_err(refusal)
        }
        Err(error) => Err(Refusal::new(StatusCode::BAD_REQUEST, format!("{error}; nothing was done"))),
    };
    let status = outcome.as_ref().err().map_or(StatusCode::OK, |r| r.status);
    (status, Html(pages::replay(&view, Some(&outcome)).into_string())).into_response()
}

pub async fn replay(
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
        action: "console.replay",
        what: "replaying a projection",
        projection: Some(&name),
        target: json!({ "from": start.query() }),
        origin: origin(&headers),
    };
    let result = async {
        attempt.check(&headers, &console.session(&headers), form.get("csrf").map(String::as_str))?;
        let projection = console.0.projections.get(&name).cloned().ok_or_else(|| {
            Refusal::new(StatusCode::NOT_FOUND, format!("this application has no projection {name}; nothing was done"))
        })?;
        let from = start.parse().map_err(|error| Refusal::new(StatusCode::BAD_REQUEST, format!("{error}; nothing was done")))?;
        if form.get("confirm").map(|c| c.trim()) != Some(name.as_str()) {
            return Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                format!("type the projection's name, {name}, to confirm; nothing was replayed"),
            ));
        }
        let preview = rebuild::replay_preview(&console.0.settings, &console.0.store, &*projection, &from).await.map_err(refusal)?;
        if form.get("starts").map(String::as_str) != Some(starts(&preview).as_str()) {
            return Err(Refusal::new(
                StatusCode::CONFLICT,
                "where the replay starts changed since the preview (records expired, or the form is old); nothing was replayed: preview it again",
            ));
        }
        let report = rebuild::replay(&console.0.settings, &console.0.store, &*projection, &from, &viewer.id)
            .await
            .map_err(refusal)?;
        let markup = pages::replayed(&viewer, &name, &report, preview.events());
        Ok((serde_json::to_value(&report).expect("reports serialize"), markup))
    }
    .await;
    console.answered(&viewer, &attempt, result).await
}
