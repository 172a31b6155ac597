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
use eventline_kafka::groups::GroupDescription;
use eventline_kafka::Inspector;
use eventline_store::checkpoints::Checkpoint;
use eventline_store::generations::{live_generation, Generation, GenerationState};
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

/// The broker connection [`collect`] reads through, kept between reads: a status read every
/// second or two then costs the broker its questions only, not a new client's connection,
/// handshakes and metadata each time.
#[derive(Clone)]
pub struct BrokerConnection(Inspector);

impl BrokerConnection {
    /// Fails only on Kafka settings librdkafka refuses; it connects on the first read.
    pub fn new(settings: &KafkaSettings) -> Result<Self, eventline_kafka::Error> {
        Inspector::new(settings).map(Self)
    }
}

/// Where each projection stands: stored offsets against the topics' end offsets, lag in events
/// and seconds, dead letters, generations, and which live group member holds each partition.
///
/// Its cost does not grow with the projections' number in requests: one group listing (and a
/// description of the groups with members), three statements, and per topic one watermark read
/// and one read of the records at every position behind.
pub async fn collect(
    store: &Store,
    broker: &BrokerConnection,
    projections: &[Watched],
) -> Result<Vec<ProjectionStatus>, StatusError> {
    let now = Utc::now();
    let groups: Vec<String> = projections.iter().map(|p| p.group.clone()).collect();
    // A broker that cannot describe groups (an old one, no permission) still has positions to
    // report: ownership is then unknown, not an error.
    let described: HashMap<String, GroupDescription> = match broker.0.describe_groups(&groups, BROKER_WITHIN).await {
        Ok(described) => described.into_iter().map(|d| (d.group.clone(), d)).collect(),
        Err(error) => {
            tracing::debug!(%error, "Cannot describe the consumer groups; ownership is unknown.");
            HashMap::new()
        }
    };
    let names: Vec<String> = projections.iter().map(|p| p.name.clone()).collect();
    let mut all_checkpoints: HashMap<String, Vec<Checkpoint>> = HashMap::new();
    for checkpoint in store.checkpoints_of(&names).await? {
        all_checkpoints.entry(checkpoint.projection.clone()).or_default().push(checkpoint);
    }
    let dead_letter_counts = store.dead_letter_counts_of(&names).await?;
    let mut all_generations: HashMap<String, Vec<Generation>> = HashMap::new();
    for generation in store.generations_of(&names).await? {
        all_generations.entry(generation.projection.clone()).or_default().push(generation);
    }
    // Projections often share topics: each topic's watermarks are read once.
    let mut marks_by_topic: HashMap<&str, Vec<eventline_kafka::admin::PartitionWatermarks>> = HashMap::new();
    for topic in projections.iter().flat_map(|p| &p.topics) {
        if !marks_by_topic.contains_key(topic.as_str()) {
            let marks = broker
                .0
                .watermarks(topic, BROKER_WITHIN)
                .await
                .map_err(|error| StatusError::Broker { topic: topic.clone(), error })?;
            marks_by_topic.insert(topic, marks);
        }
    }
    let empty = Vec::new();
    let mut statuses = Vec::with_capacity(projections.len());
    for Watched { name, group, topics } in projections {
        let description = described.get(group);
        let checkpoints = all_checkpoints.get(name).unwrap_or(&empty);
        let (dead_letters, parked_keys) = dead_letter_counts.get(name).copied().unwrap_or_default();
        let generations = all_generations.remove(name).unwrap_or_default();
        let building = generations.iter().find(|g| g.state == GenerationState::Building);
        let building_checkpoints = match building {
            Some(generation) => store.generation_checkpoints(&generation.schema(), name).await?,
            None => Vec::new(),
        };
        let mut rebuild_lag = 0;
        let mut partitions = Vec::new();
        for topic in topics {
            for mark in &marks_by_topic[topic.as_str()] {
                let stored = checkpoints.iter().find(|c| &c.topic == topic && c.partition == mark.partition);
                let stored_offset = stored.map(|c| c.next_offset);
                let lag_events = (mark.high - stored_offset.unwrap_or(mark.low).max(mark.low)).max(0);
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
        }
        statuses.push(ProjectionStatus {
            name: name.to_string(),
            topics: topics.clone(),
            lag_events: partitions.iter().map(|p| p.lag_events).sum(),
            lag_seconds: 0.0,
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
    // The oldest unapplied event's age: the timestamp of the record at each position behind,
    // read once per topic for every projection at once.
    let mut behind: HashMap<&str, Vec<(i32, i64)>> = HashMap::new();
    for partition in statuses.iter().flat_map(|s| &s.partitions).filter(|p| p.lag_seconds.is_none()) {
        let next = partition.end_offset - partition.lag_events;
        behind.entry(partition.topic.as_str()).or_default().push((partition.partition, next));
    }
    let mut record_times: HashMap<(String, i32, i64), i64> = HashMap::new();
    for (topic, positions) in behind {
        let times = broker
            .0
            .record_times(topic, &positions, BROKER_WITHIN)
            .await
            .map_err(|error| StatusError::Broker { topic: topic.to_string(), error })?;
        record_times
            .extend(times.into_iter().map(|((partition, offset), ms)| ((topic.to_string(), partition, offset), ms)));
    }
    for status in &mut statuses {
        for partition in status.partitions.iter_mut().filter(|p| p.lag_seconds.is_none()) {
            let next = partition.end_offset - partition.lag_events;
            partition.lag_seconds = record_times
                .get(&(partition.topic.clone(), partition.partition, next))
                .map(|ms| (now.timestamp_millis() - ms).max(0) as f64 / 1000.0);
        }
        status.lag_seconds = status.partitions.iter().filter_map(|p| p.lag_seconds).fold(0.0, f64::max);
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
