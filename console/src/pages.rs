//! The console's HTML. Every page is whole without the script (it only keeps the live region
//! current), and every value is escaped by `maud`.

use std::time::Duration;

use eventline_auth::Caller;
use maud::{html, Markup, DOCTYPE};

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
            td.num { (s.dead_letters) }
            td.num { (s.parked_keys) }
            td { (group(view)) }
        }
    }
}

pub fn projection(viewer: &Caller, snapshot: &Snapshot, name: &str) -> Markup {
    layout(
        name,
        Some(viewer),
        html! {
            p.crumbs { a href=(BASE) { "Projections" } " / " }
            h1 { (name) }
            section #live aria-live="polite" data-live={ (BASE) "/projections/" (name) "/live" } {
                (projection_live(snapshot, name))
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
