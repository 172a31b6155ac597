//! Rebuilding a projection beside the live one, switching readers to it, switching back,
//! dropping old generations, and replaying a projection in place.
//!
//! A rebuild is a worker of the unchanged runtime in its own consumer group
//! (`eventline.<projection>.rebuild.g<N>`), connected to the generation's schema
//! ([`eventline_store::generations`]), started from the earliest offsets (or, for projections that
//! may start mid-stream, a time). The live workers keep consuming meanwhile. A cutover freezes the
//! live writers, lets the rebuild pass the frozen positions, stops it and switches in one
//! transaction; running workers pick up the new positions by themselves.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use eventline_core::config::Settings;
use eventline_core::registry::Registry;
use eventline_kafka::admin;
use eventline_store::audit::NewAuditEntry;
use eventline_store::generations::{
    live_generation, Generation, GenerationState, OperationLock, ResetCounts, StartPosition, TableDiff,
};
use eventline_store::Store;
use serde::Serialize;
use serde_json::json;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::projections::Projection;
use crate::runtime::{WorkerError, WorkerReport};

/// How long a cutover keeps the live writers frozen waiting for the rebuild to pass them.
const CUTOVER_WAIT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum OperationError {
    #[error("another rebuild, cutover, rollback, cleanup or replay of {0} is running; wait for it to finish")]
    Busy(String),
    #[error("{projection} folds each entity's whole history, so it cannot start mid-stream: replay or rebuild it from earliest")]
    NotMidStream { projection: String },
    #[error("{projection} reads no partition {partition} of {topic}")]
    NoSuchPartition { projection: String, topic: String, partition: i32 },
    #[error("offset {offset} is outside partition {partition} of {topic}, which holds offsets {low} to {high}")]
    OffsetOutOfRange { topic: String, partition: i32, offset: i64, low: i64, high: i64 },
    #[error("{time} is before the earliest record {topic} still holds ({earliest}): the events before it are gone; replay from earliest to re-apply everything it holds")]
    BeforeEarliest { topic: String, time: String, earliest: String },
    #[error("no rebuild of {0} is in progress; start one with `eventline rebuild start {0}`")]
    NoRebuild(String),
    #[error("generation {generation} of {projection} is being built from {existing}; it cannot be resumed from {requested} (drop it with `eventline rebuild cleanup {projection}`)")]
    DifferentStart { projection: String, generation: i32, existing: String, requested: String },
    #[error("generation {generation} of {projection} has not caught up: {lag} events behind (a cutover allows {allowed}); let `eventline rebuild start {projection}` finish first")]
    NotCaughtUp { projection: String, generation: i32, lag: i64, allowed: i64 },
    #[error("generation {generation} of {projection} did not pass the live positions within {}s; nothing was switched", CUTOVER_WAIT.as_secs())]
    CutoverTimedOut { projection: String, generation: i32 },
    #[error("{0} has no retired generation to roll back to")]
    NothingToRollBack(String),
    #[error("the rebuild's worker failed: {0}")]
    Worker(#[from] WorkerError),
    #[error(transparent)]
    Definition(#[from] eventline_store::declarative::DefinitionError),
    #[error(transparent)]
    Kafka(#[from] eventline_kafka::Error),
    #[error(transparent)]
    Store(#[from] eventline_store::Error),
}

/// Where a replay or a rebuild starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartFrom {
    Earliest,
    /// These (partition, offset) pairs, in partition order, in each topic the projection reads;
    /// the partitions not named from the earliest.
    Offsets(Vec<(i32, i64)>),
    /// Every partition from its first record timestamped at or after this.
    Time(DateTime<Utc>),
}

impl StartFrom {
    /// Reads `<partition>:<offset>[,<partition>:<offset>…]`: each partition once, none negative.
    pub fn offsets(text: &str) -> Result<Self, String> {
        let mut offsets = std::collections::BTreeMap::new();
        for pair in text.split(',').map(str::trim) {
            let (partition, offset) =
                pair.split_once(':').ok_or_else(|| format!("`{pair}` is not <partition>:<offset>"))?;
            let (partition, offset) = (partition.trim(), offset.trim());
            let partition: i32 = partition.parse().map_err(|_| format!("`{partition}` is not a partition number"))?;
            let offset: i64 = offset.parse().map_err(|_| format!("`{offset}` is not an offset"))?;
            if partition < 0 || offset < 0 {
                return Err("partitions and offsets are not negative".into());
            }
            if offsets.insert(partition, offset).is_some() {
                return Err(format!("partition {partition} is given twice"));
            }
        }
        Ok(Self::Offsets(offsets.into_iter().collect()))
    }

    /// How the start reads in reports, audit entries and a generation's record (a rebuild is
    /// resumed only with the start it began with).
    pub fn describe(&self) -> String {
        match self {
            Self::Earliest => "earliest".into(),
            Self::Offsets(offsets) => {
                let pairs: Vec<String> =
                    offsets.iter().map(|(partition, offset)| format!("{partition}:{offset}")).collect();
                format!("offset:{}", pairs.join(","))
            }
            Self::Time(time) => time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        }
    }
}

/// How far a generation is, against its topics' end offsets.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Progress {
    pub generation: i32,
    /// Seconds since this process began catching up.
    pub elapsed_seconds: f64,
    /// Records read and committed by the generation.
    pub done: i64,
    /// Records on its topics from where it started.
    pub total: i64,
    pub lag: i64,
    /// Records per second since the last report.
    pub rate: f64,
    /// Seconds to catch up at that rate.
    pub eta_seconds: Option<f64>,
    pub caught_up: bool,
}

/// What a replay reset, and where the projection starts again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplayReport {
    pub from: String,
    /// (topic, partition, next offset); partitions not listed start at the earliest record.
    pub positions: Vec<(String, i32, i64)>,
    pub rows_removed: i64,
    pub dead_letters_removed: u64,
    pub parked_keys_removed: u64,
    pub applied_ids_removed: u64,
}

/// Where a generation stands in one partition.
struct PartitionPosition {
    topic: String,
    partition: i32,
    /// Its next offset.
    at: i64,
    /// The earliest retained offset.
    low: i64,
    /// The end offset.
    end: i64,
}

/// Records the generation has read, and records on its topics.
fn done_and_total(positions: &[PartitionPosition]) -> (i64, i64) {
    positions.iter().fold((0, 0), |(done, total), p| (done + p.at - p.low, total + p.end - p.low))
}

/// Table names as the store takes them.
fn names(tables: &[String]) -> Vec<&str> {
    tables.iter().map(String::as_str).collect()
}

fn topics(settings: &Settings, projection: &dyn Projection) -> Vec<String> {
    projection.topics().iter().map(|t| settings.namespace.topic(t)).collect()
}

fn lock_error(projection: &dyn Projection) -> OperationError {
    OperationError::Busy(projection.name().to_string())
}

async fn operation_lock(store: &Store, projection: &dyn Projection) -> Result<OperationLock, OperationError> {
    store.try_operation_lock(projection.name()).await?.ok_or_else(|| lock_error(projection))
}

/// The positions a start means, checked against the topics.
pub async fn start_positions(
    settings: &Settings,
    projection: &dyn Projection,
    from: &StartFrom,
) -> Result<Vec<StartPosition>, OperationError> {
    if *from != StartFrom::Earliest && !projection.starts_mid_stream() {
        return Err(OperationError::NotMidStream { projection: projection.name().to_string() });
    }
    let mut positions = Vec::new();
    for topic in topics(settings, projection) {
        match from {
            StartFrom::Earliest => {}
            StartFrom::Offsets(offsets) => {
                let marks = admin::watermarks(&settings.kafka, &topic, settings.connect_timeout).await?;
                for &(partition, offset) in offsets {
                    let mark = marks.iter().find(|m| m.partition == partition).ok_or_else(|| {
                        OperationError::NoSuchPartition {
                            projection: projection.name().to_string(),
                            topic: topic.clone(),
                            partition,
                        }
                    })?;
                    if offset < mark.low || offset > mark.high {
                        return Err(OperationError::OffsetOutOfRange {
                            topic,
                            partition,
                            offset,
                            low: mark.low,
                            high: mark.high,
                        });
                    }
                    positions.push(StartPosition { topic: topic.clone(), partition, next_offset: Some(offset) });
                }
            }
            &StartFrom::Time(time) => {
                let found =
                    admin::offsets_for_time(&settings.kafka, &topic, time.timestamp_millis(), settings.connect_timeout)
                        .await?;
                positions.extend(found.into_iter().map(|(partition, offset)| StartPosition {
                    topic: topic.clone(),
                    partition,
                    next_offset: Some(offset),
                }));
            }
        }
    }
    Ok(positions)
}

/// What a replay from a start would do, before it is done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplayPreview {
    pub from: String,
    pub partitions: Vec<PartitionReplay>,
}

/// One partition of a replay's preview.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionReplay {
    pub topic: String,
    pub partition: i32,
    /// The next offset the projection applies now; `None` before its first commit there.
    pub now: Option<i64>,
    /// The next offset it would apply after the replay.
    pub from: i64,
    /// The topic's end offset there.
    pub end: i64,
}

impl PartitionReplay {
    /// Events the replay would apply here, as the partition stands now.
    pub fn to_apply(&self) -> i64 {
        (self.end - self.from).max(0)
    }
}

impl ReplayPreview {
    /// Events the replay would apply, as the topics stand now.
    pub fn events(&self) -> i64 {
        self.partitions.iter().map(PartitionReplay::to_apply).sum()
    }
}

/// Where `projection` stands and where a replay from `from` would start it again, per
/// partition, changing nothing. A time before the earliest record a topic still holds is refused:
/// the events before it are gone, and the replay would silently start later than asked.
pub async fn replay_preview(
    settings: &Settings,
    store: &Store,
    projection: &dyn Projection,
    from: &StartFrom,
) -> Result<ReplayPreview, OperationError> {
    let positions = start_positions(settings, projection, from).await?;
    let checkpoints = store.checkpoints(projection.name()).await?;
    let mut partitions = Vec::new();
    for topic in topics(settings, projection) {
        let marks = admin::watermarks(&settings.kafka, &topic, settings.connect_timeout).await?;
        if let &StartFrom::Time(time) = from {
            let firsts: Vec<(i32, i64)> =
                marks.iter().filter(|m| m.high > m.low).map(|m| (m.partition, m.low)).collect();
            let times = admin::record_times(&settings.kafka, &topic, &firsts, settings.connect_timeout).await?;
            if let Some(&earliest) = times.values().min() {
                if time.timestamp_millis() < earliest {
                    let shown = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
                    let earliest = DateTime::from_timestamp_millis(earliest).unwrap_or_default();
                    return Err(OperationError::BeforeEarliest { topic, time: shown(time), earliest: shown(earliest) });
                }
            }
        }
        for mark in marks {
            let start = positions.iter().find(|p| p.topic == topic && p.partition == mark.partition);
            partitions.push(PartitionReplay {
                topic: topic.clone(),
                partition: mark.partition,
                now: checkpoints
                    .iter()
                    .find(|c| c.topic == topic && c.partition == mark.partition)
                    .map(|c| c.next_offset),
                from: start.and_then(|p| p.next_offset).unwrap_or(mark.low).clamp(mark.low, mark.high),
                end: mark.high,
            });
        }
    }
    Ok(ReplayPreview { from: from.describe(), partitions })
}

/// Empties `projection` in place and restarts it from `from`; running workers follow within
/// about a second. See [`eventline_store::Store::reset_projection`] for what is kept.
pub async fn replay(
    settings: &Settings,
    store: &Store,
    projection: &dyn Projection,
    from: &StartFrom,
    actor: &str,
) -> Result<ReplayReport, OperationError> {
    let positions = start_positions(settings, projection, from).await?;
    let _lock = operation_lock(store, projection).await?;
    let described: Vec<(String, i32, i64)> =
        positions.iter().filter_map(|p| p.next_offset.map(|o| (p.topic.clone(), p.partition, o))).collect();
    let audit = NewAuditEntry {
        actor,
        action: "replay",
        projection: Some(projection.name()),
        target: json!({ "from": from.describe(), "positions": described }),
        reason: None,
        outcome: json!({}),
    };
    let ResetCounts { rows, dead_letters, parked_keys, applied_ids } =
        store.reset_projection(projection.name(), &names(projection.tables()), &positions, audit).await?;
    Ok(ReplayReport {
        from: from.describe(),
        positions: described,
        rows_removed: rows,
        dead_letters_removed: dead_letters,
        parked_keys_removed: parked_keys,
        applied_ids_removed: applied_ids,
    })
}

/// A rebuild this process is running: its generation, and its worker while it runs.
pub struct Rebuild {
    settings: Settings,
    registry: Arc<Registry>,
    store: Store,
    generation_store: Store,
    projection: Arc<dyn Projection>,
    pub generation: Generation,
    /// Whether this process created the generation (rather than resuming one).
    pub created: bool,
    worker: Option<(CancellationToken, JoinHandle<Result<WorkerReport, WorkerError>>)>,
    _lock: OperationLock,
}

impl Rebuild {
    /// Resumes the generation being built, or (with `from`) creates one if there is none.
    pub async fn open(
        settings: &Settings,
        registry: Arc<Registry>,
        store: &Store,
        projection: Arc<dyn Projection>,
        from: Option<StartFrom>,
    ) -> Result<Self, OperationError> {
        let name = projection.name();
        let lock = operation_lock(store, &*projection).await?;
        let building = store.generations(name).await?.into_iter().find(|g| g.state == GenerationState::Building);
        let (generation, created) = match (building, from) {
            (Some(existing), Some(from)) if existing.started_from != from.describe() => {
                return Err(OperationError::DifferentStart {
                    projection: name.to_string(),
                    generation: existing.generation,
                    existing: existing.started_from,
                    requested: from.describe(),
                })
            }
            (Some(existing), _) => (existing, false),
            (None, None) => return Err(OperationError::NoRebuild(name.to_string())),
            (None, Some(from)) => {
                let positions = start_positions(settings, &*projection, &from).await?;
                let created = projection.create_generation(store, &from.describe(), &positions).await?;
                (created, true)
            }
        };
        let generation_store = Store::connect_rebuilding(
            &settings.database_url,
            2 + settings.worker.lanes as u32,
            settings.connect_timeout,
            &generation.schema(),
        )
        .await?;
        Ok(Self {
            settings: settings.clone(),
            registry,
            store: store.clone(),
            generation_store,
            projection,
            generation,
            created,
            worker: None,
            _lock: lock,
        })
    }

    fn start_worker(&mut self) {
        if self.worker.is_some() {
            return;
        }
        let token = CancellationToken::new();
        let (settings, registry, store, projection) =
            (self.settings.clone(), self.registry.clone(), self.generation_store.clone(), self.projection.clone());
        let group =
            self.settings.namespace.group_id(&format!("{}.rebuild.g{}", projection.name(), self.generation.generation));
        let stop = token.clone();
        let handle =
            tokio::spawn(async move { projection.run_in_group(&settings, registry, store, group, stop).await });
        self.worker = Some((token, handle));
    }

    async fn stop_worker(&mut self) -> Result<(), OperationError> {
        if let Some((token, handle)) = self.worker.take() {
            token.cancel();
            handle.await.expect("the rebuild worker does not panic")?;
        }
        Ok(())
    }

    /// Where the generation stands in each partition of its topics.
    async fn positions(&self) -> Result<Vec<PartitionPosition>, OperationError> {
        let stored = self.store.generation_checkpoints(&self.generation.schema(), self.projection.name()).await?;
        let mut positions = Vec::new();
        for topic in topics(&self.settings, &*self.projection) {
            for mark in admin::watermarks(&self.settings.kafka, &topic, self.settings.connect_timeout).await? {
                let at = stored
                    .iter()
                    .find(|c| c.topic == topic && c.partition == mark.partition)
                    .map_or(mark.low, |c| c.next_offset.max(mark.low));
                positions.push(PartitionPosition {
                    topic: topic.clone(),
                    partition: mark.partition,
                    at,
                    low: mark.low,
                    end: mark.high,
                });
            }
        }
        Ok(positions)
    }

    /// Runs the generation's worker until it has read everything on its topics, reporting
    /// progress once a second; the worker keeps running for a cutover. With live traffic the end
    /// moves on, so caught up means: past every end offset of the previous report.
    pub async fn catch_up(
        &mut self,
        shutdown: &CancellationToken,
        mut report: impl FnMut(&Progress),
    ) -> Result<bool, OperationError> {
        self.start_worker();
        let began = Instant::now();
        let mut last: Option<(Instant, i64)> = None;
        let mut previous = None;
        let mut ticks = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                () = shutdown.cancelled() => {
                    self.stop_worker().await?;
                    return Ok(false);
                }
                _ = ticks.tick() => {}
            }
            if self.worker.as_ref().is_some_and(|(_, handle)| handle.is_finished()) {
                self.stop_worker().await?;
                self.start_worker();
            }
            let positions = self.positions().await?;
            let (done, total) = done_and_total(&positions);
            let passed_previous_ends = previous.as_ref().is_some_and(|ends: &Vec<PartitionPosition>| {
                ends.iter().all(|end| {
                    positions.iter().any(|p| p.topic == end.topic && p.partition == end.partition && p.at >= end.end)
                })
            });
            previous = Some(positions);
            let now = Instant::now();
            let rate = last.map_or(0.0, |(at, before)| (done - before) as f64 / now.duration_since(at).as_secs_f64());
            let lag = total - done;
            let progress = Progress {
                generation: self.generation.generation,
                elapsed_seconds: now.duration_since(began).as_secs_f64(),
                done,
                total,
                lag,
                rate,
                eta_seconds: (rate > 0.0).then(|| lag as f64 / rate),
                caught_up: lag == 0 || passed_previous_ends,
            };
            report(&progress);
            if progress.caught_up {
                self.store.mark_caught_up(self.projection.name(), self.generation.generation).await?;
                return Ok(true);
            }
            last = Some((now, done));
        }
    }

    /// Row counts and checksums of the live generation and this one.
    pub async fn diff(&self) -> Result<Vec<TableDiff>, OperationError> {
        Ok(self.store.diff_generation(&names(self.projection.tables()), &self.generation.schema()).await?)
    }

    /// Switches readers to this generation: refuses when it is more than `max_lag` events behind;
    /// otherwise freezes the live writers, lets this generation pass their positions, and
    /// switches in one transaction. The live generation is kept for a rollback.
    pub async fn cutover(mut self, max_lag: i64, actor: &str) -> Result<i32, OperationError> {
        let projection = self.projection.clone();
        let name = projection.name();
        let (done, total) = done_and_total(&self.positions().await?);
        if total - done > max_lag {
            return Err(OperationError::NotCaughtUp {
                projection: name.to_string(),
                generation: self.generation.generation,
                lag: total - done,
                allowed: max_lag,
            });
        }
        let live = live_generation(&self.store.generations(name).await?);
        // Close the gap first, so the live writers are held only for the last few events.
        if !self.catch_up(&CancellationToken::new(), |_| {}).await? {
            unreachable!("a token nobody cancels");
        }
        let mut frozen = self.store.freeze(name, &names(self.projection.tables())).await?;
        let deadline = Instant::now() + CUTOVER_WAIT;
        loop {
            let stored = self.store.generation_checkpoints(&self.generation.schema(), name).await?;
            let passed = frozen.positions.iter().all(|(topic, partition, offset)| {
                stored.iter().any(|c| &c.topic == topic && c.partition == *partition && c.next_offset >= *offset)
            });
            if passed {
                break;
            }
            if Instant::now() > deadline {
                drop(frozen);
                self.stop_worker().await?;
                return Err(OperationError::CutoverTimedOut {
                    projection: name.to_string(),
                    generation: self.generation.generation,
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.stop_worker().await?;
        let live_positions = frozen.positions.clone();
        let audit = NewAuditEntry {
            actor,
            action: "rebuild.cutover",
            projection: Some(name),
            target: json!({ "generation": self.generation.generation, "replaces": live }),
            reason: None,
            outcome: json!({ "live_positions": live_positions }),
        };
        // Rebuilt from the log, where erased subjects' ids still are.
        frozen.replace_erased_subject_ids(&self.generation.schema(), self.projection.subject_columns()).await?;
        frozen.switch(&self.generation, live, false, audit).await?;
        self.generation_store.close().await;
        self.store.copy_applied_since(&self.generation.schema(), name, &live_positions).await?;
        self.store.drop_live_schema(name, self.generation.generation).await?;
        Ok(self.generation.generation)
    }

    /// Stops the worker, leaving the generation to be resumed later.
    pub async fn pause(mut self) -> Result<(), OperationError> {
        self.stop_worker().await?;
        self.generation_store.close().await;
        Ok(())
    }
}

/// Switches readers back to the most recent retired generation; the live one is retired in its
/// place. The workers then apply what arrived since that generation was retired.
pub async fn rollback(store: &Store, projection: &dyn Projection, actor: &str) -> Result<(i32, i32), OperationError> {
    let name = projection.name();
    let _lock = operation_lock(store, projection).await?;
    let generations = store.generations(name).await?;
    let live = live_generation(&generations);
    let target = generations
        .iter()
        .filter(|g| g.state == GenerationState::Retired)
        .max_by_key(|g| g.live_since)
        .ok_or_else(|| OperationError::NothingToRollBack(name.to_string()))?;
    let mut frozen = store.freeze(name, &names(projection.tables())).await?;
    // Subjects erased since it was retired (erase reaches retired generations too; this is for
    // one that erase could not reach).
    frozen.replace_erased_subject_ids(&target.schema(), projection.subject_columns()).await?;
    let audit = NewAuditEntry {
        actor,
        action: "rebuild.rollback",
        projection: Some(name),
        target: json!({ "generation": target.generation, "replaces": live }),
        reason: None,
        outcome: json!({ "live_positions": frozen.positions }),
    };
    frozen.switch(target, live, true, audit).await?;
    store.drop_live_schema(name, target.generation).await?;
    Ok((target.generation, live))
}

/// Drops every generation of `projection` that is not live (retired ones, and a rebuild no
/// process is running); returns their numbers.
pub async fn cleanup(store: &Store, projection: &dyn Projection, actor: &str) -> Result<Vec<i32>, OperationError> {
    let name = projection.name();
    let _lock = operation_lock(store, projection).await?;
    let mut dropped = Vec::new();
    for generation in store.generations(name).await?.into_iter().filter(|g| g.state != GenerationState::Live) {
        store.drop_generation(name, generation.generation).await?;
        dropped.push(generation.generation);
    }
    let mut tx = store.begin().await?;
    tx.audit(NewAuditEntry {
        actor,
        action: "rebuild.cleanup",
        projection: Some(name),
        target: json!({}),
        reason: None,
        outcome: json!({ "dropped_generations": dropped }),
    })
    .await?;
    tx.commit().await?;
    Ok(dropped)
}
