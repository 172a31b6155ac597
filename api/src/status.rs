//! `GET /v1/projections`: where each projection stands against its topics.

use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use eventline_http::problem::ProblemDocument;
use eventline_http::Problem;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::params::Params;
use crate::routes::Refused;
use crate::{store_failure, Api};

/// How long `GET /v1/projections` waits for the broker.
const BROKER_WITHIN: Duration = Duration::from_secs(5);

#[derive(Serialize, ToSchema)]
pub(crate) struct ProjectionsStatus {
    projections: Vec<ProjectionStatus>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ProjectionStatus {
    name: String,
    topics: Vec<String>,
    /// Events on its topics not yet applied, over every partition.
    lag_events: i64,
    /// Age of the oldest event not yet applied, in seconds; 0 when caught up.
    lag_seconds: f64,
    /// Events that failed to apply and wait for an operator.
    dead_letters: i64,
    /// Keys whose later events wait behind a dead letter.
    parked_keys: i64,
    /// When the projection last committed a batch.
    checkpointed_at: Option<DateTime<Utc>>,
    /// Whether a new generation of the projection is being built beside the live one.
    rebuild_in_progress: bool,
    partitions: Vec<PartitionStatus>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct PartitionStatus {
    topic: String,
    partition: i32,
    /// The next offset the projection will apply; absent before its first commit there.
    stored_offset: Option<i64>,
    /// The offset the next published event will get.
    end_offset: i64,
    lag_events: i64,
    /// Age of the oldest event not yet applied here, in seconds; 0 when caught up, absent when
    /// its time could not be read.
    lag_seconds: Option<f64>,
}

/// Every projection's stored offsets, the topics' end offsets, lag and dead letters.
#[utoipa::path(
    get,
    path = "/v1/projections",
    tag = "status",
    responses(
        (status = 200, description = "Each projection's position and lag", body = ProjectionsStatus),
        (status = 503, description = "The broker or the database is unavailable", body = ProblemDocument, content_type = "application/problem+json"),
    )
)]
async fn projections(State(api): State<Api>, RawQuery(query): RawQuery) -> Result<Response, Refused> {
    Params::parse(query.as_deref(), &[])?;
    let now = Utc::now();
    let mut statuses = Vec::new();
    for info in &api.0.projections {
        let checkpoints = api.0.store.checkpoints(info.name).await.map_err(store_failure)?;
        let (dead_letters, parked_keys) = api.0.store.dead_letter_counts(info.name).await.map_err(store_failure)?;
        let mut partitions = Vec::new();
        for topic in &info.topics {
            let watermarks = eventline_kafka::admin::watermarks(&api.0.kafka, topic, BROKER_WITHIN)
                .await
                .map_err(|error| Problem::unavailable(format!("cannot read the end offsets of `{topic}`: {error}")))?;
            let mut behind = Vec::new();
            for mark in &watermarks {
                let stored = checkpoints.iter().find(|c| &c.topic == topic && c.partition == mark.partition);
                let stored_offset = stored.map(|c| c.next_offset);
                let next = stored_offset.unwrap_or(mark.low).max(mark.low);
                let lag_events = (mark.high - next).max(0);
                if lag_events > 0 {
                    behind.push((mark.partition, next));
                }
                partitions.push(PartitionStatus {
                    topic: topic.clone(),
                    partition: mark.partition,
                    stored_offset,
                    end_offset: mark.high,
                    lag_events,
                    lag_seconds: (lag_events == 0).then_some(0.0),
                });
            }
            // The oldest unapplied event's age: read the timestamp of the record at each position.
            let times = eventline_kafka::admin::record_times(&api.0.kafka, topic, &behind, BROKER_WITHIN)
                .await
                .map_err(|error| Problem::unavailable(format!("cannot read `{topic}`: {error}")))?;
            for status in partitions.iter_mut().filter(|p| &p.topic == topic && p.lag_seconds.is_none()) {
                status.lag_seconds = times.get(&status.partition).map(|ms| {
                    let age_ms = (now.timestamp_millis() - ms).max(0);
                    age_ms as f64 / 1000.0
                });
            }
        }
        statuses.push(ProjectionStatus {
            name: info.name.to_string(),
            topics: info.topics.clone(),
            lag_events: partitions.iter().map(|p| p.lag_events).sum(),
            lag_seconds: partitions.iter().filter_map(|p| p.lag_seconds).fold(0.0, f64::max),
            dead_letters,
            parked_keys,
            checkpointed_at: checkpoints.iter().map(|c| c.updated_at).max(),
            // Rebuilds are not implemented yet; nothing can be in progress.
            rebuild_in_progress: false,
            partitions,
        });
    }
    Ok(Json(ProjectionsStatus { projections: statuses }).into_response())
}

pub(crate) fn routes() -> OpenApiRouter<Api> {
    OpenApiRouter::new().routes(routes!(projections))
}
