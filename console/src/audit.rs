//! The audit on the page: the latest entries, filtered in the query string, and whether the hash
//! chain verifies (each page load recomputes it, as `eventline audit verify` does).

use std::collections::HashMap;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use eventline_store::audit::AuditFilter;

use crate::{pages, Console, Viewer};

/// Most entries a page shows.
pub const AUDIT_LIMIT: i64 = 200;

pub async fn log(State(console): State<Console>, Viewer(viewer): Viewer, RawQuery(query): RawQuery) -> Response {
    let fields: HashMap<String, String> =
        serde_urlencoded::from_str(query.as_deref().unwrap_or_default()).unwrap_or_default();
    let field = |name: &str| fields.get(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    let filter = AuditFilter {
        projection: field("projection"),
        actor: field("actor"),
        action_prefix: field("action"),
        limit: AUDIT_LIMIT,
    };
    let projections = console.0.projections.names();
    if let Some(projection) = &filter.projection {
        if !projections.contains(&projection.as_str()) {
            let error = format!("there is no projection `{projection}` (known: {})", projections.join(", "));
            let page = pages::audit(&viewer, &projections, &AuditFilter::default(), &[], None, Some(&error));
            return (StatusCode::BAD_REQUEST, Html(page.into_string())).into_response();
        }
    }
    let read = async {
        Ok::<_, eventline_store::Error>((
            console.0.store.find_audit(&filter).await?,
            console.0.store.verify_audit().await?,
        ))
    };
    match read.await {
        Ok((entries, verification)) => {
            Html(pages::audit(&viewer, &projections, &filter, &entries, Some(&verification), None).into_string())
                .into_response()
        }
        Err(error) => {
            tracing::warn!(%error, "The console cannot read the audit.");
            let page = pages::refused(&viewer, "the database cannot be read now; try again shortly");
            (StatusCode::SERVICE_UNAVAILABLE, Html(page.into_string())).into_response()
        }
    }
}
