//! The console's HTML. Every page is whole without the script (it only keeps the live region
//! current), and every value is escaped by `maud`.

use std::time::Duration;

use eventline_auth::Caller;
use maud::{html, Markup, DOCTYPE};

use eventline_consumers::dlq::RetryReport;
use eventline_consumers::rebuild::{ReplayPreview, ReplayReport};
use eventline_store::dead_letters::{DeadLetter, DeadRecord};

use crate::actions::{csrf_token, Refusal};
use crate::dead_letters::{Filter, Shown};
use crate::rebuilds::Started;
use crate::replay::{starts, Start};
use crate::snapshots::{ProjectionView, Snapshot};
use crate::BASE;

/// A whole page: the header with the viewer, the navigation, and `body`.
fn layout(title: &str, viewer: Option<&Caller>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { (title) " · eventline console" }
                link rel="stylesheet" href={ (BASE) "/assets/console.css" };
                script src={ (BASE) "/assets/console.js" } defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header {
                    a.brand href=(BASE) { "eventline" }
                    @if let Some(viewer) = viewer {
                        nav aria-label="Console" {
                            a href=(BASE) { "Overview" }
                            a href={ (BASE) "/dead-letters" } { "Dead letters" }
                            a href={ (BASE) "/audit" } { "Audit" }
                            a href={ (BASE) "/registry" } { "Registry" }
                        }
                        form.viewer method="post" action={ (BASE) "/logout" } {
                            span { "Signed in as " strong { (viewer.id) } }
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main #main { (body) }
            }
        }
    }
}

pub fn login(refusal: Option<&str>) -> Markup {
    layout(
        "Sign in",
        None,
        html! {
            h1 { "Sign in" }
            p { "Paste an API key (" code { "eventline keys create --scope status" } ") or a JWT holding the "
                code { "status" } " scope. It is kept in an HTTP-only cookie for this console only." }
            @if let Some(refusal) = refusal {
                p.error role="alert" { (refusal) }
            }
            form.sign-in method="post" action={ (BASE) "/login" } {
                label for="token" { "API key or JWT" }
                input #token type="password" name="token" autocomplete="off" required autofocus;
                button type="submit" { "Sign in" }
            }
        },
    )
}

pub fn refused(viewer: &Caller, why: &str) -> Markup {
    layout(
        "Not allowed",
        Some(viewer),
        html! {
            h1 { "Not allowed" }
            p.error role="alert" { (why) "." }
            p { "Sign out and sign in with credentials that hold it." }
        },
    )
}

pub fn not_found(viewer: &Caller, name: &str, known: &[&str]) -> Markup {
    layout(
        "No such projection",
        Some(viewer),
        html! {
            h1 { "No such projection" }
            p.error role="alert" { "This application has no projection named " code { (name) } "." }
            p { "Its projections: "
                @for (i, known) in known.iter().enumerate() {
                    @if i > 0 { ", " }
                    a href={ (BASE) "/projections/" (known) } { (known) }
                }
            }
        },
    )
}

pub fn overview(viewer: &Caller, snapshot: &Snapshot) -> Markup {
    layout(
        "Overview",
        Some(viewer),
        html! {
            h1 { "Projections" }
            section #live aria-live="polite" data-live={ (BASE) "/live" } { (overview_live(snapshot)) }
        },
    )
}

/// The overview's live region: every projection, worst first.
pub fn overview_live(snapshot: &Snapshot) -> Markup {
    html! {
        (taken(snapshot))
        @if snapshot.error.is_none() {
            table.projections {
                caption { (snapshot.projections.len()) " projections, worst first" }
                thead { tr {
                    th scope="col" { "Projection" }
                    th scope="col" { "Generation" }
                    th scope="col" .num { "Lag (events)" }
                    th scope="col" .num { "Lag (s)" }
                    th scope="col" .num { "Applied/s (1 min)" }
                    th scope="col" { "Partitions" }
                    th scope="col" .num { "Dead letters" }
                    th scope="col" .num { "Parked keys" }
                    th scope="col" { "Group" }
                } }
                tbody {
                    @for view in &snapshot.projections { (overview_row(view)) }
                }
            }
        }
    }
}

fn overview_row(view: &ProjectionView) -> Markup {
    let s = &view.status;
    let behind = s.partitions.iter().filter(|p| p.lag_events > 0).count();
    html! {
        tr data-projection=(s.name) class=[(!s.unowned_partitions.is_empty()).then_some("stuck")] {
            th scope="row" { a href={ (BASE) "/projections/" (s.name) } { (s.name) } }
            td { (generation(view)) }
            td.num data-cell="lag-events" { (s.lag_events) }
            td.num data-cell="lag-seconds" { (format!("{:.1}", s.lag_seconds)) }
            td.num { (throughput(view.throughput)) }
            td {
                (s.partitions.len()) " (" (behind) " behind)"
                @if !s.unowned_partitions.is_empty() {
                    " " strong.flag data-cell="stuck" { "⚠ stuck: " (s.unowned_partitions.join(", ")) }
                }
            }
            td.num { a href={ (BASE) "/dead-letters?projection=" (s.name) } { (s.dead_letters) } }
            td.num { (s.parked_keys) }
            td { (group(view)) }
        }
    }
}

pub fn projection(
    viewer: &Caller,
    session: &str,
    snapshot: &Snapshot,
    name: &str,
    started: Option<&Started>,
) -> Markup {
    let status = snapshot.projection(name).map(|view| &view.status);
    let rebuilding = status.and_then(|s| s.rebuild.as_ref());
    let retired = status.is_some_and(|s| !s.retired_generations.is_empty());
    // Said while that generation is the one being built: not once it is cut over or dropped.
    let started = started.filter(|started| rebuilding.is_some_and(|r| r.generation == started.generation()));
    let building_here = matches!(started, Some(Started::Building { .. }));
    layout(
        name,
        Some(viewer),
        html! {
            p.crumbs { a href=(BASE) { "Projections" } " / " }
            h1 { (name) }
            p.links {
                a href={ (BASE) "/projections/" (name) "/replay" } { "Replay…" }
                " · " a href={ (BASE) "/dead-letters?projection=" (name) } { "Dead letters" }
            }
            section #live aria-live="polite" data-live={ (BASE) "/projections/" (name) "/live" } {
                (projection_live(snapshot, name))
            }
            section.actions aria-labelledby="generations" {
                h2 #generations { "Generations" }
                (read_only_note(viewer))
                @match started {
                    Some(Started::Building { generation }) => p data-started="building" {
                        "This console is building generation " (generation) " (its progress is above); then compare and cut over." }
                    Some(Started::CaughtUp { generation }) => p data-started="caught-up" {
                        "Generation " (generation) ", started here, has caught up and is paused: compare it, then cut over." }
                    Some(Started::Stopped { generation }) => p data-started="stopped" {
                        "Generation " (generation) ", started here, was paused as the console stopped: resume it below." }
                    Some(Started::Failed { generation, message }) => p.error role="alert" data-started="failed" {
                        "Building generation " (generation) " from this console failed: " (message) ". Resume it below once the cause is fixed." }
                    None => {}
                }
                @match rebuilding {
                    None => {
                        form.rebuild method="post" action={ (BASE) "/projections/" (name) "/rebuild" } {
                            (csrf(session))
                            fieldset {
                                legend { "Build a new generation beside the live one, from" }
                                label { input type="radio" name="from" value="earliest" checked; " the earliest record" }
                                label { input type="radio" name="from" value="time"; " the first record at or after (UTC) "
                                    input type="text" name="time" placeholder="2026-12-04T09:30:00Z" aria-label="Rebuild from time"; }
                            }
                            (action_button(viewer, "Start the rebuild"))
                        }
                    }
                    Some(rebuild) if !building_here => {
                        form method="post" action={ (BASE) "/projections/" (name) "/rebuild" } {
                            (csrf(session))
                            input type="hidden" name="resume" value="1";
                            p { "Generation " (rebuild.generation) " is not being built by this console (another process may be building it, or it is paused)." }
                            (action_button(viewer, "Resume building"))
                        }
                    }
                    Some(_) => {}
                }
                @if let Some(rebuild) = rebuilding {
                    p { a href={ (BASE) "/projections/" (name) "/diff" } { "Compare generation " (rebuild.generation) " with the live one" } }
                    form method="post" action={ (BASE) "/projections/" (name) "/cutover" } {
                        (csrf(session))
                        p { "Switch readers to generation " (rebuild.generation) " (the live one is kept for a rollback)." }
                        label { "Type " code { (name) } " to confirm " input type="text" name="confirm" autocomplete="off" required; }
                        (action_button(viewer, "Cut over"))
                    }
                }
                @if retired {
                    form method="post" action={ (BASE) "/projections/" (name) "/rollback" } {
                        (csrf(session))
                        p { "Switch readers back to the generation the last cutover retired." }
                        label { "Type " code { (name) } " to confirm " input type="text" name="confirm" autocomplete="off" required; }
                        (action_button(viewer, "Roll back"))
                    }
                }
            }
        },
    )
}

/// A projection page's live region: its generations, its group, and each partition.
pub fn projection_live(snapshot: &Snapshot, name: &str) -> Markup {
    let Some(view) = snapshot.projection(name) else {
        return html! { (taken(snapshot)) };
    };
    let s = &view.status;
    html! {
        (taken(snapshot))
        dl.facts {
            dt { "Live generation" } dd { (generation(view)) }
            dt { "Topics" } dd { (s.topics.join(", ")) }
            dt { "Consumer group" } dd { code { (s.group) } " " (group(view)) }
            dt { "Members" } dd {
                @let members = members(view);
                @if members.is_empty() { "none holds a partition" }
                @for (member, held) in &members {
                    div { code { (member) } ": " (held.join(", ")) }
                }
            }
            dt { "Lag" } dd { (s.lag_events) " events, " (format!("{:.1}", s.lag_seconds)) " s" }
            dt { "Applied per second (1 min)" } dd { (throughput(view.throughput)) }
            dt { "Dead letters" } dd { (s.dead_letters) " (" (s.parked_keys) " parked keys)" }
            dt { "Retired generations" } dd {
                @if s.retired_generations.is_empty() { "none" }
                @else { (s.retired_generations.iter().map(i32::to_string).collect::<Vec<_>>().join(", ")) }
            }
        }
        @if let Some(rebuild) = &s.rebuild {
            section.rebuild aria-labelledby="rebuild" {
                h2 #rebuild { "Rebuild: generation " (rebuild.generation) }
                dl.facts {
                    dt { "Started from" } dd { (rebuild.started_from) }
                    dt { "Events left to read" } dd { (rebuild.lag_events) }
                    dt { "Caught up" } dd {
                        @match rebuild.caught_up_at {
                            Some(at) => { "at " (at.format("%Y-%m-%d %H:%M:%S UTC")) ", ready to cut over" }
                            None => {
                                "not yet"
                                @if let Some(eta) = view.rebuild_eta { ", in about " (duration(eta)) " at this pace" }
                            }
                        }
                    }
                }
            }
        }
        table.partitions {
            caption { "Partitions" }
            thead { tr {
                th scope="col" { "Topic" }
                th scope="col" .num { "Partition" }
                th scope="col" .num { "Next offset" }
                th scope="col" .num { "End offset" }
                th scope="col" .num { "Lag (events)" }
                th scope="col" .num { "Lag (s)" }
                th scope="col" { "Held by" }
                th scope="col" { "Last written by" }
                th scope="col" { "Checkpointed" }
            } }
            tbody {
                @for p in &s.partitions {
                    tr class=[p.unowned.then_some("stuck")] {
                        td { (p.topic) }
                        td.num { (p.partition) }
                        td.num { (p.stored_offset.map_or("–".to_string(), |o| o.to_string())) }
                        td.num { (p.end_offset) }
                        td.num { (p.lag_events) }
                        td.num { (p.lag_seconds.map_or("?".to_string(), |s| format!("{s:.1}"))) }
                        td {
                            @match &p.held_by {
                                Some(member) => { code { (member) } }
                                None if p.unowned => { strong.flag { "⚠ no live member: stuck" } }
                                None => { "–" }
                            }
                        }
                        td { (p.owner.as_deref().unwrap_or("–")) }
                        td { (p.checkpointed_at.map_or("never".to_string(), |at| at.format("%H:%M:%S").to_string())) }
                    }
                }
            }
        }
    }
}

/// When the snapshot was taken, or why it could not be.
fn taken(snapshot: &Snapshot) -> Markup {
    html! {
        @if let Some(error) = &snapshot.error {
            p.error role="alert" { "The status cannot be read now: " (error) }
        }
        p.taken {
            @match snapshot.taken_at {
                Some(at) => { "As of " time datetime=(at.to_rfc3339()) { (at.format("%H:%M:%S UTC")) } }
                None => { "No status read yet." }
            }
        }
    }
}

fn generation(view: &ProjectionView) -> Markup {
    let s = &view.status;
    html! {
        (s.generation)
        @if let Some(version) = s.version { " (v" (version) ")" }
        @if let Some(rebuild) = &s.rebuild {
            " · " span.badge { "rebuilding " (rebuild.generation) }
        }
    }
}

fn group(view: &ProjectionView) -> Markup {
    let s = &view.status;
    html! {
        @match (&s.group_state, s.group_members) {
            (Some(state), Some(members)) => { (state) ", " (members) (if members == 1 { " member" } else { " members" }) }
            _ => { "unknown" }
        }
    }
}

/// Each live member holding partitions, with the partitions it holds (`topic/partition`).
fn members(view: &ProjectionView) -> Vec<(&str, Vec<String>)> {
    let mut members: Vec<(&str, Vec<String>)> = Vec::new();
    for p in &view.status.partitions {
        let Some(member) = p.held_by.as_deref() else { continue };
        let held = format!("{}/{}", p.topic, p.partition);
        match members.iter_mut().find(|(m, _)| *m == member) {
            Some((_, partitions)) => partitions.push(held),
            None => members.push((member, vec![held])),
        }
    }
    members
}

fn throughput(rate: Option<f64>) -> Markup {
    match rate {
        Some(rate) => html! { (format!("{rate:.0}")) },
        None => html! { span title="measured once two snapshots are a second apart" { "–" } },
    }
}

fn duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    match seconds {
        0..=59 => format!("{seconds} s"),
        60..=3599 => format!("{} min", seconds / 60),
        _ => format!("{} h {} min", seconds / 3600, seconds % 3600 / 60),
    }
}

/// What every dead-letter page needs beside its data.
pub struct DeadLettersView<'a> {
    pub viewer: &'a Caller,
    pub session: &'a str,
    pub kinds: &'a [&'a str],
    pub limit: i64,
}

/// The hidden CSRF field of an action's form.
fn csrf(session: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(csrf_token(session)); }
}

/// Said on pages with actions to a viewer who may not take them.
fn read_only_note(viewer: &Caller) -> Markup {
    html! {
        @if !viewer.may_operate() {
            p.note role="note" { "You can look but not act: the actions need the " code { "operate" } " scope." }
        }
    }
}

fn action_button(viewer: &Caller, label: &str) -> Markup {
    let title = (!viewer.may_operate()).then_some("needs the operate scope");
    html! { button type="submit" disabled[!viewer.may_operate()] title=[title] { (label) } }
}

pub fn dead_letters(
    view: &DeadLettersView<'_>,
    projections: &[&str],
    filter: &Filter,
    letters: &[DeadLetter],
    error: Option<&str>,
) -> Markup {
    let selected = |value: &str, current: &Option<String>| current.as_deref() == Some(value);
    layout(
        "Dead letters",
        Some(view.viewer),
        html! {
            h1 { "Dead letters" }
            form.filters method="get" action={ (BASE) "/dead-letters" } {
                label { "Projection "
                    select name="projection" {
                        option value="" { "any" }
                        @for p in projections { option value=(p) selected[selected(p, &filter.projection)] { (p) } }
                    }
                }
                label { "Key " input type="text" name="key" value=[filter.key.as_deref()]; }
                label { "Kind "
                    select name="kind" {
                        option value="" { "any" }
                        @for k in view.kinds { option value=(k) selected[selected(k, &filter.kind)] { (k) } }
                    }
                }
                label { "Since (UTC) " input type="text" name="since" placeholder="2026-12-04T09:30:00Z" value=[filter.since.as_deref()]; }
                button type="submit" { "Filter" }
            }
            @if let Some(error) = error {
                p.error role="alert" { "Not shown: " (error) "." }
            } @else {
                (read_only_note(view.viewer))
                @if filter.projection.is_some() && !letters.is_empty() {
                    p { a href={ (BASE) "/dead-letters/retry-all?" (filter.query()) } { "Retry every key shown…" }
                        " (a preview says how many keys and events first)" }
                }
                table.letters {
                    caption { (letters.len()) " dead letters"
                        @if letters.len() as i64 == view.limit { " (the first " (view.limit) "; narrow the filters)" } }
                    thead { tr {
                        th scope="col" { "Id" }
                        th scope="col" { "Projection" }
                        th scope="col" { "Key" }
                        th scope="col" { "Kind" }
                        th scope="col" { "Reason" }
                        th scope="col" { "Position" }
                        th scope="col" { "When" }
                        th scope="col" { "Action" }
                    } }
                    tbody {
                        @for l in letters {
                            tr data-letter=(l.id) {
                                td { a href={ (BASE) "/dead-letters/" (l.id) } { (l.id) } }
                                td { (l.projection) }
                                td { (l.record_key.as_deref().unwrap_or("–")) }
                                td { (l.reason_kind) }
                                td { (l.reason) }
                                td { (l.topic) " " (l.partition) "@" (l.offset) }
                                td { (l.created_at.format("%Y-%m-%d %H:%M:%S")) }
                                td {
                                    form method="post" action={ (BASE) "/dead-letters/" (l.id) "/retry" } {
                                        (csrf(view.session))
                                        (action_button(view.viewer, if l.record_key.is_some() { "Retry key" } else { "Retry" }))
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

pub fn dead_letter(
    viewer: &Caller,
    session: &str,
    record: &DeadRecord,
    shown: &Shown,
    personal_audited: bool,
    key_letters: usize,
) -> Markup {
    let l = &record.letter;
    let pretty = |value: &serde_json::Value| serde_json::to_string_pretty(value).expect("JSON serializes");
    layout(
        &format!("Dead letter {}", l.id),
        Some(viewer),
        html! {
            p.crumbs { a href={ (BASE) "/dead-letters?projection=" (l.projection) } { "Dead letters of " (l.projection) } " / " }
            h1 { "Dead letter " (l.id) }
            dl.facts {
                dt { "Projection" } dd { (l.projection) }
                dt { "Key" } dd { (l.record_key.as_deref().unwrap_or("– (none)")) }
                dt { "Kind" } dd { (l.reason_kind) }
                dt { "Reason" } dd { (l.reason) }
                dt { "Record" } dd { (l.topic) ", partition " (l.partition) ", offset " (l.offset) }
                dt { "Event" } dd {
                    @match (&l.event_type, &l.event_id) {
                        (Some(event_type), Some(id)) => { (event_type) " " code { (id) } }
                        _ => { "not trusted: its contract refused it (see the record)" }
                    }
                }
                dt { "Dead-lettered" } dd { (l.created_at.format("%Y-%m-%d %H:%M:%S UTC")) }
                dt { "Record time" } dd { (record.record_time.map_or("?".to_string(), |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())) }
            }
            h2 { "Headers" }
            pre { code { (pretty(&record.headers)) } }
            h2 { "Record" }
            @match shown {
                Shown::Clear(value) => {
                    @if personal_audited { p.note { "Personal data shown in clear: this read is in the audit." } }
                    pre data-record="clear" { code { (pretty(value)) } }
                }
                Shown::Masked(value) => {
                    p.note { "Personal fields are hidden (null): seeing them needs the " code { "personal" } " scope." }
                    pre data-record="masked" { code { (pretty(value)) } }
                }
                Shown::Hidden(why) => { p.note data-record="hidden" { "Not shown: " (why) "." } }
            }
            h2 { "Actions" }
            (read_only_note(viewer))
            div.actions {
                form method="post" action={ (BASE) "/dead-letters/" (l.id) "/retry" } {
                    (csrf(session))
                    p { @if l.record_key.is_some() { "Apply this key's " (key_letters) " dead letters again, in order (after fixing the cause)." }
                        @else { "Apply this event again (after fixing the cause)." } }
                    (action_button(viewer, "Retry"))
                }
                form method="post" action={ (BASE) "/dead-letters/" (l.id) "/skip" } {
                    (csrf(session))
                    p { "Drop this event for good and apply the key's next ones." }
                    label { "Why " input type="text" name="reason" required; }
                    (action_button(viewer, "Skip"))
                }
                @if l.record_key.is_some() {
                    form method="post" action={ (BASE) "/dead-letters/" (l.id) "/purge" } {
                        (csrf(session))
                        p { "Forget this key's " (key_letters) " dead letters without applying them (the key is unparked)." }
                        label { "Type " code { (l.projection) } " to confirm " input type="text" name="confirm" autocomplete="off" required; }
                        (action_button(viewer, "Purge key"))
                    }
                }
            }
        },
    )
}

pub fn action_refused(viewer: &Caller, message: &str) -> Markup {
    layout(
        "Not done",
        Some(viewer),
        html! {
            h1 { "Not done" }
            p.error role="alert" data-outcome="refused" { (message) }
            p { a href={ (BASE) "/dead-letters" } { "Dead letters" } }
        },
    )
}

pub fn retried(viewer: &Caller, letter: &DeadLetter, report: &RetryReport) -> Markup {
    layout(
        "Retried",
        Some(viewer),
        html! {
            h1 { "Retried" }
            p data-outcome=(if report.still_dead.is_empty() { "applied" } else { "still-dead" }) {
                @if let Some(skipped) = report.skipped { "Skipped dead letter " (skipped) ". " }
                (report.applied.len()) " applied, " (report.duplicates.len()) " already applied, "
                (report.passed_over.len()) " passed over, " (report.still_dead.len()) " still dead"
                @if let Some(key) = &report.key { " (key " code { (key) } ")" } "."
            }
            @if let Some(reason) = &report.reason { p.error role="alert" { "Still failing: " (reason) } }
            p { a href={ (BASE) "/dead-letters?projection=" (letter.projection) } { "Dead letters of " (letter.projection) } }
        },
    )
}

pub fn purged(viewer: &Caller, projection: &str, key: &str, ids: &[i64]) -> Markup {
    layout(
        "Purged",
        Some(viewer),
        html! {
            h1 { "Purged" }
            p data-outcome="purged" { (ids.len()) " dead letters of key " code { (key) } " forgotten; the key is unparked." }
            p { a href={ (BASE) "/dead-letters?projection=" (projection) } { "Dead letters of " (projection) } }
        },
    )
}

pub fn retry_all_preview(viewer: &Caller, session: &str, filter: &Filter, keys: usize, letters: usize) -> Markup {
    let projection = filter.projection.as_deref().unwrap_or_default();
    layout(
        "Retry every key",
        Some(viewer),
        html! {
            h1 { "Retry every key shown" }
            p data-preview { "This applies again " strong { (letters) " dead letters" } " of " strong { (keys) " keys" }
                " of " code { (projection) } ", each key's in order." }
            (read_only_note(viewer))
            form method="post" action={ (BASE) "/dead-letters/retry-all" } {
                (csrf(session))
                @for (name, value) in [("projection", &filter.projection), ("key", &filter.key), ("kind", &filter.kind), ("since", &filter.since)] {
                    @if let Some(value) = value { input type="hidden" name=(name) value=(value); }
                }
                input type="hidden" name="keys" value=(keys);
                input type="hidden" name="letters" value=(letters);
                label { "Type " code { (projection) } " to confirm " input type="text" name="confirm" autocomplete="off" required; }
                (action_button(viewer, "Retry them all"))
            }
            p { a href={ (BASE) "/dead-letters?" (filter.query()) } { "Back to the list" } }
        },
    )
}

pub fn retried_all(
    viewer: &Caller,
    filter: &Filter,
    keys: usize,
    applied: usize,
    still_dead: usize,
    failed: &[String],
) -> Markup {
    layout(
        "Retried",
        Some(viewer),
        html! {
            h1 { "Retried" }
            p data-outcome="retried-all" { (keys) " keys retried: " (applied) " applied, " (still_dead) " still dead." }
            @if !failed.is_empty() {
                p.error role="alert" { "Not retried:" }
                ul { @for f in failed { li { (f) } } }
            }
            p { a href={ (BASE) "/dead-letters?" (filter.query()) } { "Back to the list" } }
        },
    )
}

/// What the replay page needs beside the preview.
pub struct ReplayView<'a> {
    pub viewer: &'a Caller,
    pub session: &'a str,
    pub projection: &'a str,
    pub start: &'a Start,
}

pub fn replay(view: &ReplayView<'_>, outcome: Option<&Result<ReplayPreview, Refusal>>) -> Markup {
    let name = view.projection;
    let start = view.start;
    let checked = |from: &str| start.from == from || (start.from.is_empty() && from == "earliest");
    layout(
        &format!("Replay {name}"),
        Some(view.viewer),
        html! {
            p.crumbs { a href=(BASE) { "Projections" } " / " a href={ (BASE) "/projections/" (name) } { (name) } " / " }
            h1 { "Replay " (name) }
            p { "A replay empties the projection in place and applies its topics again from where you choose; "
                "readers see it refill. First see what it would do." }
            form.replay method="get" action={ (BASE) "/projections/" (name) "/replay" } {
                fieldset {
                    legend { "Start again from" }
                    label { input type="radio" name="from" value="earliest" checked[checked("earliest")]; " the earliest record" }
                    label { input type="radio" name="from" value="time" checked[checked("time")]; " the first record at or after (UTC) "
                        input type="text" name="time" value=(start.time) placeholder="2026-12-04T09:30:00Z" aria-label="Time"; }
                    label { input type="radio" name="from" value="offset" checked[checked("offset")]; " offsets, as partition:offset "
                        input type="text" name="offsets" value=(start.offsets) placeholder="0:120, 3:4500" size="24" aria-label="Offsets, as partition:offset separated by commas";
                        " (the partitions not named from the earliest)" }
                }
                button type="submit" { "Preview" }
            }
            @match outcome {
                None => {}
                Some(Err(refusal)) => { p.error role="alert" data-outcome="refused" { (refusal.message) } }
                Some(Ok(preview)) => {
                    h2 { "What it would do" }
                    p data-preview { "Replaying from " code { (preview.from) } " re-applies " strong { (preview.events()) " events" }
                        " as the topics stand now (more if more arrive)." }
                    table.partitions {
                        caption { "Positions before and after" }
                        thead { tr {
                            th scope="col" { "Topic" } th scope="col" .num { "Partition" }
                            th scope="col" .num { "Next offset now" } th scope="col" .num { "Next offset after" }
                            th scope="col" .num { "End offset" } th scope="col" .num { "Events to re-apply" }
                        } }
                        tbody {
                            @for p in &preview.partitions {
                                tr { td { (p.topic) } td.num { (p.partition) }
                                     td.num { (p.now.map_or("–".to_string(), |o| o.to_string())) } td.num { (p.from) }
                                     td.num { (p.end) } td.num { (p.to_apply()) } }
                            }
                        }
                    }
                    (read_only_note(view.viewer))
                    form method="post" action={ (BASE) "/projections/" (name) "/replay" } {
                        (csrf(view.session))
                        input type="hidden" name="from" value=(start.from);
                        input type="hidden" name="time" value=(start.time);
                        input type="hidden" name="offsets" value=(start.offsets);
                        input type="hidden" name="starts" value=(starts(preview));
                        label { "Type " code { (name) } " to confirm " input type="text" name="confirm" autocomplete="off" required; }
                        (action_button(view.viewer, "Replay"))
                    }
                }
            }
        },
    )
}

pub fn replayed(viewer: &Caller, name: &str, report: &ReplayReport, events: i64) -> Markup {
    layout(
        "Replayed",
        Some(viewer),
        html! {
            h1 { "Replayed" }
            p data-outcome="replayed" { (name) " was reset (" (report.rows_removed) " rows, " (report.dead_letters_removed)
                " dead letters, " (report.parked_keys_removed) " parked keys removed); its workers re-apply about "
                (events) " events from " code { (report.from) } "." }
            p { a href={ (BASE) "/projections/" (name) } { "Follow it on its page" } }
        },
    )
}

pub fn diff(viewer: &Caller, name: &str, generation: i32, diffs: &[eventline_store::generations::TableDiff]) -> Markup {
    layout(
        &format!("Compare {name}"),
        Some(viewer),
        html! {
            p.crumbs { a href=(BASE) { "Projections" } " / " a href={ (BASE) "/projections/" (name) } { (name) } " / " }
            h1 { "Generation " (generation) " against the live one" }
            table {
                caption { "Row counts and checksums per table" }
                thead { tr { th scope="col" { "Table" } th scope="col" .num { "Live rows" } th scope="col" .num { "Rebuilt rows" } th scope="col" { "Same data" } } }
                tbody {
                    @for d in diffs {
                        tr data-table=(d.table) { td { (d.table) } td.num { (d.live_rows) } td.num { (d.other_rows) }
                             td data-equal=(d.equal()) { @if d.equal() { "yes" } @else { strong.flag { "no" } } } }
                    }
                }
            }
            p { a href={ (BASE) "/projections/" (name) } { "Back to " (name) } }
        },
    )
}

pub fn switched(viewer: &Caller, name: &str, message: &str) -> Markup {
    done(viewer, name, "Switched", "switched", message)
}

pub fn rebuild_started(viewer: &Caller, name: &str, message: &str) -> Markup {
    done(viewer, name, "Rebuild started", "started", message)
}

/// What an action on projection `name` did, under `title`; `outcome` names it for scripts.
fn done(viewer: &Caller, name: &str, title: &str, outcome: &str, message: &str) -> Markup {
    layout(
        title,
        Some(viewer),
        html! {
            h1 { (title) }
            p data-outcome=(outcome) { (message) }
            p { a href={ (BASE) "/projections/" (name) } { "Back to " (name) } }
        },
    )
}

pub fn audit(
    viewer: &Caller,
    projections: &[&str],
    filter: &eventline_store::audit::AuditFilter,
    entries: &[eventline_store::audit::AuditEntry],
    verification: Option<&eventline_store::audit::AuditVerification>,
    error: Option<&str>,
) -> Markup {
    let compact = |value: &serde_json::Value| value.to_string();
    layout(
        "Audit",
        Some(viewer),
        html! {
            h1 { "Audit" }
            @if let Some(v) = verification {
                @match &v.broken {
                    None => p data-chain="intact" { "The hash chain verifies: " (v.entries) " entries"
                        @if v.before_the_chain > 0 { " (" (v.before_the_chain) " written before the chain, not verifiable)" }
                        ", head " code { (v.head) } "." }
                    Some(broken) => p.error role="alert" data-chain="broken" { "The hash chain is broken"
                        @if let Some(id) = broken.id { " at entry " (id) } ": " (broken.reason) "." }
                }
            }
            form.filters method="get" action={ (BASE) "/audit" } {
                label { "Projection "
                    select name="projection" {
                        option value="" { "any" }
                        @for p in projections { option value=(p) selected[filter.projection.as_deref() == Some(*p)] { (p) } }
                    }
                }
                label { "Actor " input type="text" name="actor" value=[filter.actor.as_deref()]; }
                label { "Action starts with " input type="text" name="action" placeholder="console." value=[filter.action_prefix.as_deref()]; }
                button type="submit" { "Filter" }
            }
            @if let Some(error) = error {
                p.error role="alert" { "Not shown: " (error) "." }
            } @else {
                table.audit {
                    caption { "The latest " (entries.len()) " entries, newest first" }
                    thead { tr {
                        th scope="col" { "Id" } th scope="col" { "When" } th scope="col" { "Actor" } th scope="col" { "Action" }
                        th scope="col" { "Projection" } th scope="col" { "Target" } th scope="col" { "Outcome" }
                    } }
                    tbody {
                        @for e in entries {
                            tr data-entry=(e.id) {
                                td { (e.id) } td { (e.at.format("%Y-%m-%d %H:%M:%S")) } td { (e.actor) } td { code { (e.action) } }
                                td { (e.projection.as_deref().unwrap_or("–")) }
                                td { code.json { (compact(&e.target)) } }
                                td { code.json { (compact(&e.outcome)) } }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// An event type as the registry page shows it.
pub struct TypeView<'a> {
    pub contract: &'a eventline_core::registry::TypeContract,
    /// The projections that read its topic.
    pub readers: Vec<String>,
}

pub fn registry(viewer: &Caller, types: &[TypeView<'_>]) -> Markup {
    layout(
        "Registry",
        Some(viewer),
        html! {
            h1 { "Registry" }
            p { (types.len()) " event types. Projections see each at its current version; older versions are upcast when read." }
            @for t in types {
                @let c = t.contract;
                section.event-type aria-labelledby={ "type-" (c.event_type) } {
                    h2 id={ "type-" (c.event_type) } { code { (c.event_type) } }
                    dl.facts {
                        dt { "Topic" } dd { code { (c.topic) } }
                        dt { "Key field" } dd { code { (c.key) } }
                        dt { "Data subject" } dd { @match &c.data_subject { Some(f) => code { (f) }, None => "none (no personal data)" } }
                        dt { "Versions" } dd { (c.versions.keys().map(u32::to_string).collect::<Vec<_>>().join(", ")) " (current " (c.current()) ")" }
                        dt { "Read by" } dd {
                            @if t.readers.is_empty() { "no projection of this application" }
                            @for (i, reader) in t.readers.iter().enumerate() {
                                @if i > 0 { ", " }
                                a href={ (BASE) "/projections/" (reader) } { (reader) }
                            }
                        }
                    }
                    @for (version, schema) in &c.versions {
                        details {
                            summary { "Version " (version) " schema (" (schema.path) ")" }
                            pre { code { (serde_json::to_string_pretty(&schema.schema).expect("JSON serializes")) } }
                        }
                    }
                }
            }
        },
    )
}
