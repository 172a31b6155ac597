//! `GET /v1/projections`: where each projection stands against its topics.

use eventline_auth::Caller;
use std::collections::HashMap;
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
use crate::query::Refused;
use crate::{store_failure, Api};
use eventline_core::config::KafkaSettings;
use eventline_store::generations::{live_generation, GenerationState};
use eventline_store::Store;

/// How long a status read waits for the broker.
const BROKER_WITHIN: Duration = Duration::from_secs(5);

#[derive(Serialize, ToSchema)]
pub(crate) struct ProjectionsStatus {
    projections: Vec<ProjectionStatus>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectionStatus {
    pub name: String,
    pub topics: Vec<String>,
    /// Events on its topics not yet applied, over every partition.
    pub lag_events: i64,
    /// Age of the oldest event not yet applied, in seconds; 0 when caught up.
    pub lag_seconds: f64,
    /// Events that failed to apply and wait for an operator.
    pub dead_letters: i64,
    /// Keys whose later events wait behind a dead letter.
    pub parked_keys: i64,
    /// When the projection last committed a batch.
    pub checkpointed_at: Option<DateTime<Utc>>,
    /// The generation readers are served from (1 until a rebuild is cut over).
    pub generation: i32,
    /// The version of a declarative projection that built the live generation.
    pub version: Option<i32>,
    /// Whether a new generation of the projection is being built beside the live one.
    pub rebuild_in_progress: bool,
    /// The generation being built, if any.
    pub rebuild: Option<RebuildStatus>,
    /// Generations kept after a cutover, for a rollback.
    pub retired_generations: Vec<i32>,
    /// The consumer group whose members apply the projection.
    pub group: String,
    /// The group's state as its coordinator describes it (`Stable`, `Empty`, …); absent when
    /// the broker could not describe it.
    pub group_state: Option<String>,
    /// Live members of the group; absent when the broker could not describe it.
    pub group_members: Option<usize>,
    /// Partitions with events to apply that no live member of the group holds: stuck until a
    /// worker takes them (a stopped worker, or a group coordinator that lost them).
    pub unowned_partitions: Vec<String>,
    pub partitions: Vec<PartitionStatus>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RebuildStatus {
    pub generation: i32,
    /// The version of a declarative projection it is built for.
    pub version: Option<i32>,
    /// `earliest`, or the time it started from.
    pub started_from: String,
    /// Events on its topics it has not read yet.
    pub lag_events: i64,
    /// When it first caught up with its topics; absent until then.
    pub caught_up_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PartitionStatus {
    pub topic: String,
    pub partition: i32,
    /// The next offset the projection will apply; absent before its first commit there.
    pub stored_offset: Option<i64>,
    /// The offset the next published event will get.
    pub end_offset: i64,
    pub lag_events: i64,
    /// Age of the oldest event not yet applied here, in seconds; 0 when caught up, absent when
    /// its time could not be read.
    pub lag_seconds: Option<f64>,
    /// The worker (host:pid) that last moved the stored offset.
    pub owner: Option<String>,
    /// The live group member holding the partition now (`member id@host`), as the group
    /// coordinator says; absent when none does or the group could not be described.
    pub held_by: Option<String>,
    /// Events wait here and no live member of the group holds the partition.
    pub unowned: bool,
    /// When the stored offset last moved.
    pub checkpointed_at: Option<DateTime<Utc>>,
}

/// Why a status could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("cannot read `{topic}` from the broker: {error}")]
    Broker { topic: String, error: eventline_kafka::Error },
    #[error(transparent)]
    Store(#[from] eventline_store::Error),
}

/// A projection whose position is read: its name, consumer group and (namespaced) topics.
#[derive(Debug, Clone)]
pub struct Watched {
    pub name: String,
    pub group: String,
    pub topics: Vec<String>,
}

/// Where each projection stands: stored offsets against the topics' end offsets, lag in events
/// and seconds, dead letters, generations, and which live group member holds each partition.
pub async fn collect(
    store: &Store,
    kafka: &KafkaSettings,
    projections: &[Watched],
) -> Result<Vec<ProjectionStatus>, StatusError> {
    let now = Utc::now();
    let groups: Vec<String> = projections.iter().map(|p| p.group.clone()).collect();
    // A broker that cannot describe groups (an old one, no permission) still has positions to
    // report: ownership is then unknown, not an error.
    let described = match eventline_kafka::groups::describe(kafka, &groups, BROKER_WITHIN).await {
        Ok(described) => described,
        Err(error) => {
            tracing::debug!(%error, "Cannot describe the consumer groups; ownership is unknown.");
            Vec::new()
        }
    };
    // Three statements however many projections: what the database holds of each.
    let names: Vec<String> = projections.iter().map(|p| p.name.clone()).collect();
    let all_checkpoints = store.checkpoints_of(&names).await?;
    let dead_letter_counts = store.dead_letter_counts_of(&names).await?;
    let all_generations = store.generations_of(&names).await?;
    // Projections often share topics: each topic's end offsets, and each position's record time,
    // are read from the broker once per call however many projections read them.
    let mut marks_by_topic: HashMap<&str, Vec<eventline_kafka::admin::PartitionWatermarks>> = HashMap::new();
    let mut record_times: HashMap<(&str, i32, i64), i64> = HashMap::new();
    let mut statuses = Vec::new();
    for Watched { name, group, topics } in projections {
        let name = name.as_str();
        let description = described.iter().find(|d| &d.group == group);
        let checkpoints: Vec<_> = all_checkpoints.iter().filter(|c| c.projection == name).cloned().collect();
        let (dead_letters, parked_keys) = dead_letter_counts.get(name).copied().unwrap_or_default();
        let generations: Vec<_> = all_generations.iter().filter(|g| g.projection == name).cloned().collect();
        let building = generations.iter().find(|g| g.state == GenerationState::Building);
        let building_checkpoints = match building {
            Some(generation) => store.generation_checkpoints(&generation.schema(), name).await?,
            None => Vec::new(),
        };
        let mut rebuild_lag = 0;
        let mut partitions = Vec::new();
        for topic in topics {
            let broker = |error| StatusError::Broker { topic: topic.clone(), error };
            if !marks_by_topic.contains_key(topic.as_str()) {
                let marks = eventline_kafka::admin::watermarks(kafka, topic, BROKER_WITHIN).await.map_err(broker)?;
                marks_by_topic.insert(topic, marks);
            }
            let watermarks = &marks_by_topic[topic.as_str()];
            let mut behind = Vec::new();
            for mark in watermarks {
                let stored = checkpoints.iter().find(|c| &c.topic == topic && c.partition == mark.partition);
                let stored_offset = stored.map(|c| c.next_offset);
                let next = stored_offset.unwrap_or(mark.low).max(mark.low);
                let lag_events = (mark.high - next).max(0);
                if lag_events > 0 {
                    behind.push((mark.partition, next));
                }
                let rebuilt = building_checkpoints.iter().find(|c| &c.topic == topic && c.partition == mark.partition);
                rebuild_lag += (mark.high - rebuilt.map_or(mark.low, |c| c.next_offset.max(mark.low))).max(0);
                let holder = description.and_then(|d| {
                    d.members
                        .iter()
                        .find(|m| m.assignment.iter().any(|tp| &tp.topic == topic && tp.partition == mark.partition))
                });
                partitions.push(PartitionStatus {
                    topic: topic.clone(),
                    partition: mark.partition,
                    stored_offset,
                    end_offset: mark.high,
                    lag_events,
                    lag_seconds: (lag_events == 0).then_some(0.0),
                    owner: stored.and_then(|c| c.written_by.clone()),
                    held_by: holder.map(|m| format!("{}@{}", m.member_id, m.host.trim_start_matches('/'))),
                    unowned: description.is_some() && holder.is_none() && lag_events > 0,
                    checkpointed_at: stored.map(|c| c.updated_at),
                });
            }
            // The oldest unapplied event's age: read the timestamp of the record at each position.
            let unread: Vec<(i32, i64)> =
                behind.iter().copied().filter(|&(p, o)| !record_times.contains_key(&(topic.as_str(), p, o))).collect();
            if !unread.is_empty() {
                let times =
                    eventline_kafka::admin::record_times(kafka, topic, &unread, BROKER_WITHIN).await.map_err(broker)?;
                for (partition, offset) in unread {
                    if let Some(ms) = times.get(&partition) {
                        record_times.insert((topic.as_str(), partition, offset), *ms);
                    }
                }
            }
            for status in partitions.iter_mut().filter(|p| &p.topic == topic && p.lag_seconds.is_none()) {
                let next = behind.iter().find(|(p, _)| *p == status.partition).map(|(_, o)| *o);
                status.lag_seconds =
                    next.and_then(|o| record_times.get(&(topic.as_str(), status.partition, o))).map(|ms| {
                        let age_ms = (now.timestamp_millis() - ms).max(0);
                        age_ms as f64 / 1000.0
                    });
            }
        }
        statuses.push(ProjectionStatus {
            name: name.to_string(),
            topics: topics.clone(),
            lag_events: partitions.iter().map(|p| p.lag_events).sum(),
            lag_seconds: partitions.iter().filter_map(|p| p.lag_seconds).fold(0.0, f64::max),
            dead_letters,
            parked_keys,
            checkpointed_at: checkpoints.iter().map(|c| c.updated_at).max(),
            generation: live_generation(&generations),
            version: generations.iter().find(|g| g.state == GenerationState::Live).and_then(|g| g.version),
            rebuild_in_progress: building.is_some(),
            rebuild: building.map(|g| RebuildStatus {
                generation: g.generation,
                version: g.version,
                started_from: g.started_from.clone(),
                lag_events: rebuild_lag,
                caught_up_at: g.caught_up_at,
            }),
            retired_generations: generations
                .iter()
                .filter(|g| g.state == GenerationState::Retired)
                .map(|g| g.generation)
                .collect(),
            group: group.clone(),
            group_state: description.map(|d| d.state.clone()),
            group_members: description.map(|d| d.members.len()),
            unowned_partitions: partitions
                .iter()
                .filter(|p| p.unowned)
                .map(|p| format!("{}/{}", p.topic, p.partition))
                .collect(),
            partitions,
        });
    }
    Ok(statuses)
}

/// Every projection's stored offsets, the topics' end offsets, lag, dead letters, generations.
#[utoipa::path(
    get,
    path = "/v1/projections",
    tag = "status",
    responses(
        (status = 200, description = "Each projection's position and lag", body = ProjectionsStatus),
        (status = 503, description = "The broker or the database is unavailable", body = ProblemDocument, content_type = "application/problem+json"),
    )
)]
async fn projections(caller: Caller, State(api): State<Api>, RawQuery(query): RawQuery) -> Result<Response, Refused> {
    caller.require_status()?;
    Params::parse(query.as_deref(), &[])?;
    match collect(&api.0.store, &api.0.kafka, &api.served()).await {
        Ok(projections) => Ok(Json(ProjectionsStatus { projections }).into_response()),
        Err(StatusError::Store(error)) => Err(store_failure(error).into()),
        Err(error @ StatusError::Broker { .. }) => Err(Problem::unavailable(error.to_string()).into()),
    }
}

pub(crate) fn routes() -> OpenApiRouter<Api> {
    OpenApiRouter::new().routes(routes!(projections))
}
