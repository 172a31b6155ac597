//! The registry on the page: each event type with its topic, key, data subject, versions and
//! their schemas (examples included), and the projections that read its topic.

use axum::extract::State;
use axum::response::{Html, IntoResponse, Response};

use crate::{pages, Console, Viewer};

pub async fn registry(State(console): State<Console>, Viewer(viewer): Viewer) -> Response {
    let mut contracts: Vec<_> = console.0.registry.contracts().collect();
    contracts.sort_by(|a, b| a.event_type.cmp(&b.event_type));
    let readers = |topic: &str| -> Vec<String> {
        let all = console.0.projections.all().iter();
        all.filter(|p| p.topics().iter().any(|t| t == topic)).map(|p| p.name().to_string()).collect()
    };
    let types: Vec<pages::TypeView<'_>> =
        contracts.into_iter().map(|contract| pages::TypeView { readers: readers(&contract.topic), contract }).collect();
    Html(pages::registry(&viewer, &types).into_string()).into_response()
}
