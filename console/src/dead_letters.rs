//! The dead letters: a filtered list (the filters in the query string, so a view can be shared),
//! each letter's record with personal data masked unless the viewer holds `personal`, and the
//! actions: retry a key, skip a letter, purge a key, retry every key a filter shows.

use std::collections::{BTreeMap, HashMap};

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, NaiveDateTime, Utc};
use eventline_auth::Caller;
use eventline_consumers::dlq::{self, RetryReport, Target};
use eventline_store::audit::NewAuditEntry;
use eventline_store::dead_letters::{DeadLetter, DeadLetterFilter, DeadRecord};
use serde_json::{json, Value};

use crate::actions::{origin, Attempt, Refusal};
use crate::{pages, Console, Viewer};

/// Most dead letters a list shows (the filters narrow it down).
pub const LIST_LIMIT: i64 = 200;
/// The kinds a dead letter's reason can be.
pub const KINDS: &[&str] = &["undecodable", "invalid", "rejected", "parked"];

/// The list's filters, as the query string gives them (empty means any).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    pub projection: Option<String>,
    pub key: Option<String>,
    pub kind: Option<String>,
    /// As typed: RFC 3339, or a browser's `YYYY-MM-DDTHH:MM` taken as UTC.
    pub since: Option<String>,
}

impl Filter {
    /// The filters of a query string or a form, with each value checked.
    fn parse(console: &Console, fields: &HashMap<String, String>) -> Result<(Self, DeadLetterFilter), String> {
        let field = |name: &str| fields.get(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let filter =
            Self { projection: field("projection"), key: field("key"), kind: field("kind"), since: field("since") };
        if let Some(projection) = &filter.projection {
            if console.0.projections.get(projection).is_none() {
                let known = console.0.projections.names().join(", ");
                return Err(format!("there is no projection `{projection}` (known: {known})"));
            }
        }
        if let Some(kind) = &filter.kind {
            if !KINDS.contains(&kind.as_str()) {
                return Err(format!("`{kind}` is not a kind of dead letter (one of {})", KINDS.join(", ")));
            }
        }
        let since = filter.since.as_deref().map(parse_time).transpose()?;
        let store_filter = DeadLetterFilter {
            projection: filter.projection.clone(),
            key: filter.key.clone(),
            kind: filter.kind.clone(),
            reason_contains: None,
            since,
            limit: LIST_LIMIT,
        };
        Ok((filter, store_filter))
    }

    /// The filters as a query string (for links and redirects).
    pub fn query(&self) -> String {
        let pairs: Vec<(&str, &str)> =
            [("projection", &self.projection), ("key", &self.key), ("kind", &self.kind), ("since", &self.since)]
                .into_iter()
                .filter_map(|(name, value)| Some((name, value.as_deref()?)))
                .collect();
        serde_urlencoded::to_string(pairs).expect("text pairs encode")
    }
}

pub(crate) fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M")
        .map(|time| time.and_utc())
        .map_err(|_| format!("`{text}` is not a time (RFC 3339, like 2026-12-04T09:30:00Z)"))
}

fn fields(text: Option<&str>) -> HashMap<String, String> {
    serde_urlencoded::from_str(text.unwrap_or_default()).unwrap_or_default()
}

fn form(body: &Bytes) -> HashMap<String, String> {
    serde_urlencoded::from_bytes(body).unwrap_or_default()
}

fn page(status: StatusCode, markup: maud::Markup) -> Response {
    (status, Html(markup.into_string())).into_response()
}

pub async fn list(
    State(console): State<Console>,
    Viewer(viewer): Viewer,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let session = console.session(&headers);
    let view = pages::DeadLettersView { viewer: &viewer, session: &session, kinds: KINDS, limit: LIST_LIMIT };
    let projections = console.0.projections.names();
    let (filter, store_filter) = match Filter::parse(&console, &fields(query.as_deref())) {
        Ok(parsed) => parsed,
        Err(error) => {
            let shown = Filter::default();
            return page(StatusCode::BAD_REQUEST, pages::dead_letters(&view, &projections, &shown, &[], Some(&error)));
        }
    };
    match console.0.store.find_dead_letters(&store_filter).await {
        Ok(letters) => page(StatusCode::OK, pages::dead_letters(&view, &projections, &filter, &letters, None)),
        Err(error) => store_failure(&viewer, error),
    }
}

fn store_failure(viewer: &Caller, error: eventline_store::Error) -> Response {
    tracing::warn!(%error, "The console cannot read the dead letters.");
    let message = "the database cannot be read now; try again shortly";
    page(StatusCode::SERVICE_UNAVAILABLE, pages::refused(viewer, message))
}

/// What a viewer may see of a dead letter's record.
pub enum Shown {
    /// The payload as stored (JSON, or text when it is not JSON).
    Clear(Value),
    /// The payload with its personal fields replaced: the viewer lacks `personal`.
    Masked(Value),
    /// Not shown: its type is not in the registry, so its personal fields cannot be told.
    Hidden(&'static str),
}

pub async fn record(
    State(console): State<Console>,
    Viewer(viewer): Viewer,
    Path(id): Path<i64>,
    headers: HeaderMap,
) -> Response {
    let record = match console.0.store.dead_record(id).await {
        Ok(Some(record)) => record,
        Ok(None) => {
            let message = format!("there is no dead letter {id} (retried, skipped or purged since?)");
            return page(StatusCode::NOT_FOUND, pages::refused(&viewer, &message));
        }
        Err(error) => return store_failure(&viewer, error),
    };
    let shown = console.shown(&viewer, &record).await;
    let (shown, personal_audited) = match shown {
        Ok(shown) => shown,
        Err(answer) => return answer,
    };
    let session = console.session(&headers);
    let siblings = match &record.letter.record_key {
        Some(key) => {
            let filter = DeadLetterFilter {
                projection: Some(record.letter.projection.clone()),
                key: Some(key.clone()),
                kind: None,
                reason_contains: None,
                since: None,
                limit: LIST_LIMIT,
            };
            console.0.store.find_dead_letters(&filter).await.map(|l| l.len()).unwrap_or(1)
        }
        None => 1,
    };
    let markup = pages::dead_letter(&viewer, &session, &record, &shown, personal_audited, siblings);
    page(StatusCode::OK, markup)
}

impl Console {
    /// The record's payload as `viewer` may see it; a clear read of personal data is audited
    /// first (nothing is shown when it cannot be).
    async fn shown(&self, viewer: &Caller, record: &DeadRecord) -> Result<(Shown, bool), Response> {
        let Some(payload) = &record.payload else { return Ok((Shown::Clear(Value::Null), false)) };
        let Ok(payload) = serde_json::from_slice::<Value>(payload) else {
            return Ok((Shown::Hidden("the payload is not JSON, so its personal fields cannot be told apart"), false));
        };
        let (mut event, structured) = eventline_core::binding::stored_event(payload.clone(), &record.headers);
        let known = event["type"].as_str().is_some_and(|t| self.0.registry.contract(t).is_some());
        if !known {
            return Ok((
                Shown::Hidden("its event type is not in the registry, so its personal fields cannot be told apart"),
                false,
            ));
        }
        let holds_personal = self.0.registry.remove_clear_personal(&mut event);
        if !holds_personal {
            return Ok((Shown::Clear(payload), false));
        }
        if !viewer.sees_personal() {
            let masked = if structured { event } else { event["data"].take() };
            return Ok((Shown::Masked(masked), false));
        }
        let entry = NewAuditEntry {
            actor: &viewer.id,
            action: "personal.read",
            projection: Some(&record.letter.projection),
            target: json!({ "dead_letter": record.letter.id }),
            reason: None,
            outcome: json!({ "via": "console" }),
        };
        if let Err(error) = self.0.store.audit_alone(entry).await {
            return Err(store_failure(viewer, error));
        }
        Ok((Shown::Clear(payload), true))
    }

    /// Reads the dead letter an action names, or the refusal to show.
    async fn letter(&self, id: i64) -> Result<DeadLetter, Refusal> {
        match self.0.store.dead_record(id).await {
            Ok(Some(record)) => Ok(record.letter),
            Ok(None) => Err(Refusal::new(
                StatusCode::NOT_FOUND,
                format!("there is no dead letter {id} (retried, skipped or purged since?); nothing was done"),
            )),
            Err(error) => Err(unavailable(error)),
        }
    }

    async fn retry(&self, letter: &DeadLetter, skip: Option<&str>, actor: &str) -> Result<RetryReport, Refusal> {
        let projection = self.0.projections.get(&letter.projection).ok_or_else(|| {
            Refusal::new(StatusCode::NOT_FOUND, format!("this application has no projection {}", letter.projection))
        })?;
        let target = match (&letter.record_key, skip) {
            (Some(key), None) => Target::Key(key.clone()),
            _ => Target::Id(letter.id),
        };
        let skip = skip.map(|reason| (letter.id, reason));
        projection.retry_dead_letters(&self.0.store, &self.0.registry, &target, skip, actor).await.map_err(dlq_refusal)
    }
}

fn unavailable(error: eventline_store::Error) -> Refusal {
    tracing::warn!(%error, "A console action cannot reach the database.");
    Refusal::new(StatusCode::SERVICE_UNAVAILABLE, "the database cannot be reached; nothing was done, try again shortly")
}

fn dlq_refusal(error: dlq::DlqError) -> Refusal {
    match error {
        dlq::DlqError::Store(error) => unavailable(error),
        error => Refusal::new(StatusCode::CONFLICT, format!("{error}; nothing was done")),
    }
}

/// What an operator does to one dead letter.
#[derive(Clone, Copy)]
enum LetterAction {
    /// Apply its key's letters again (or it alone, without a key).
    Retry,
    /// Drop it, with a reason, and apply its key's next ones.
    Skip,
    /// Forget its key's letters, the projection's name typed to confirm.
    Purge,
}

impl LetterAction {
    /// The audit's name for it, and what it does as a refusal says it.
    fn names(self) -> (&'static str, &'static str) {
        match self {
            Self::Retry => ("console.dlq.retry", "retrying dead letters"),
            Self::Skip => ("console.dlq.skip", "skipping a dead letter"),
            Self::Purge => ("console.dlq.purge", "purging dead letters"),
        }
    }

    async fn run(
        self,
        console: &Console,
        viewer: &Caller,
        letter: &DeadLetter,
        form: &HashMap<String, String>,
    ) -> Result<(Value, maud::Markup), Refusal> {
        let reason = form.get("reason").map(|r| r.trim()).unwrap_or_default();
        match self {
            Self::Retry | Self::Skip => {
                if matches!(self, Self::Skip) && reason.is_empty() {
                    return Err(Refusal::new(
                        StatusCode::BAD_REQUEST,
                        "say why this event is skipped; nothing was done",
                    ));
                }
                let skip = matches!(self, Self::Skip).then_some(reason);
                let report = console.retry(letter, skip, &viewer.id).await?;
                let markup = pages::retried(viewer, letter, &report);
                Ok((serde_json::to_value(&report).expect("reports serialize"), markup))
            }
            Self::Purge => {
                if form.get("confirm").map(|c| c.trim()) != Some(letter.projection.as_str()) {
                    return Err(Refusal::new(
                        StatusCode::BAD_REQUEST,
                        format!("type the projection's name, {}, to confirm; nothing was purged", letter.projection),
                    ));
                }
                let Some(key) = &letter.record_key else {
                    return Err(Refusal::new(
                        StatusCode::BAD_REQUEST,
                        "this dead letter has no key, so there is no key to purge; skip it instead (nothing was purged)",
                    ));
                };
                let filter = DeadLetterFilter {
                    projection: Some(letter.projection.clone()),
                    key: Some(key.clone()),
                    kind: None,
                    reason_contains: None,
                    since: None,
                    limit: 0,
                };
                let purged = dlq::purge(&console.0.store, &filter, "purged from the console", &viewer.id)
                    .await
                    .map_err(dlq_refusal)?;
                let ids: Vec<i64> = purged.iter().map(|l| l.id).collect();
                Ok((json!({ "purged": ids }), pages::purged(viewer, &letter.projection, key, &ids)))
            }
        }
    }
}

/// Does `action` to dead letter `id` behind the usual checks; every attempt audited.
async fn on_letter(
    console: Console,
    viewer: Caller,
    id: i64,
    headers: HeaderMap,
    body: Bytes,
    action: LetterAction,
) -> Response {
    let form = form(&body);
    let (name, what) = action.names();
    let reason = form.get("reason").map(|r| r.trim());
    let letter = console.letter(id).await;
    let projection = letter.as_ref().ok().map(|l| l.projection.clone());
    let attempt = Attempt {
        caller: &viewer,
        action: name,
        what,
        projection: projection.as_deref(),
        target: json!({ "dead_letter": id, "reason": reason }),
        origin: origin(&headers),
    };
    let result = async {
        attempt.check(&headers, &console.session(&headers), form.get("csrf").map(String::as_str))?;
        action.run(&console, &viewer, &letter?, &form).await
    }
    .await;
    console.answered(&viewer, &attempt, result).await
}

pub async fn retry(
    State(console): State<Console>,
    Viewer(viewer): Viewer,
    Path(id): Path<i64>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    on_letter(console, viewer, id, headers, body, LetterAction::Retry).await
}

pub async fn skip(
    State(console): State<Console>,
    Viewer(viewer): Viewer,
    Path(id): Path<i64>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    on_letter(console, viewer, id, headers, body, LetterAction::Skip).await
}

pub async fn purge(
    State(console): State<Console>,
    Viewer(viewer): Viewer,
    Path(id): Path<i64>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    on_letter(console, viewer, id, headers, body, LetterAction::Purge).await
}

/// The keys (and keyless letters) a bulk retry of `letters` touches, in order.
fn by_key(letters: &[DeadLetter]) -> BTreeMap<String, Vec<&DeadLetter>> {
    let mut keys: BTreeMap<String, Vec<&DeadLetter>> = BTreeMap::new();
    for letter in letters {
        let key = letter.record_key.clone().unwrap_or_else(|| format!("(no key: dead letter {})", letter.id));
        keys.entry(key).or_default().push(letter);
    }
    keys
}

/// The preview of a bulk retry: what it touches, and the form to confirm it.
pub async fn retry_all_preview(
    State(console): State<Console>,
    Viewer(viewer): Viewer,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let (filter, store_filter) = match Filter::parse(&console, &fields(query.as_deref())) {
        Ok(parsed) => parsed,
        Err(error) => return page(StatusCode::BAD_REQUEST, pages::action_refused(&viewer, &error)),
    };
    if filter.projection.is_none() {
        let message = "choose a projection first: a bulk retry acts on one projection's dead letters";
        return page(StatusCode::BAD_REQUEST, pages::action_refused(&viewer, message));
    }
    let letters = match console.0.store.find_dead_letters(&DeadLetterFilter { limit: i64::MAX, ..store_filter }).await {
        Ok(letters) => letters,
        Err(error) => return store_failure(&viewer, error),
    };
    let keys = by_key(&letters);
    let session = console.session(&headers);
    page(StatusCode::OK, pages::retry_all_preview(&viewer, &session, &filter, keys.len(), letters.len()))
}

/// A confirmed bulk retry: refused when the dead letters changed since the preview.
pub async fn retry_all(
    State(console): State<Console>,
    Viewer(viewer): Viewer,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = form(&body);
    let parsed = Filter::parse(&console, &form);
    let projection = parsed.as_ref().ok().and_then(|(f, _)| f.projection.clone());
    let attempt = Attempt {
        caller: &viewer,
        action: "console.dlq.retry_all",
        what: "retrying dead letters",
        projection: projection.as_deref(),
        target: json!({ "filter": parsed.as_ref().ok().map(|(f, _)| f.query()) }),
        origin: origin(&headers),
    };
    let result = async {
        attempt.check(&headers, &console.session(&headers), form.get("csrf").map(String::as_str))?;
        let (filter, store_filter) = parsed.map_err(|error| Refusal::new(StatusCode::BAD_REQUEST, error))?;
        let Some(projection) = &filter.projection else {
            return Err(Refusal::new(StatusCode::BAD_REQUEST, "a bulk retry names its projection; nothing was done"));
        };
        if form.get("confirm").map(|c| c.trim()) != Some(projection.as_str()) {
            return Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                format!("type the projection's name, {projection}, to confirm; nothing was retried"),
            ));
        }
        let letters = console
            .0
            .store
            .find_dead_letters(&DeadLetterFilter { limit: i64::MAX, ..store_filter })
            .await
            .map_err(unavailable)?;
        let keys = by_key(&letters);
        let expected = (form.get("keys").cloned().unwrap_or_default(), form.get("letters").cloned().unwrap_or_default());
        if expected != (keys.len().to_string(), letters.len().to_string()) {
            return Err(Refusal::new(
                StatusCode::CONFLICT,
                format!(
                    "the dead letters changed since the preview ({} keys and {} letters then, {} and {} now); nothing was retried: review them again",
                    expected.0,
                    expected.1,
                    keys.len(),
                    letters.len()
                ),
            ));
        }
        // Each key is retried on its own: one that still fails (or was resolved meanwhile) does
        // not stop the others, and the page says which.
        let (mut applied, mut still_dead, mut failed) = (0, 0, Vec::new());
        for (key, letters) in &keys {
            match console.retry(letters[0], None, &viewer.id).await {
                Ok(report) => {
                    applied += report.applied.len();
                    still_dead += report.still_dead.len();
                }
                Err(refusal) => failed.push(format!("{key}: {}", refusal.message)),
            }
        }
        let markup = pages::retried_all(&viewer, &filter, keys.len(), applied, still_dead, &failed);
        let done = json!({ "keys": keys.len(), "applied": applied, "still_dead": still_dead, "failed": failed });
        Ok((done, markup))
    }
    .await;
    console.answered(&viewer, &attempt, result).await
}
