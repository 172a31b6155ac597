//! The projection runtime: a worker reads a projection's topics as a member of the consumer group
//! `eventline.<projection>` and applies them to PostgreSQL, effectively once.
//!
//! The contract, plainly:
//! - A batch's projection rows, its dead letters, its parked keys, the ids of the events it
//!   applied and the next offset of every partition it covers commit in ONE PostgreSQL
//!   transaction. A crash at any moment leaves all of it or none of it.
//! - A partition starts at the offset stored in PostgreSQL (Kafka's group offsets only mirror
//!   it). The stored offset moves only from the value the batch started from, so a worker that
//!   lost a partition (a rebalance, a long pause) cannot write over the new owner: its
//!   transaction is refused, rolled back, and it re-reads from the stored offset.
//! - An event id applied once is not applied again within the dedup window.
//! - An event that cannot be decoded, fails its contract or is refused by a domain rule becomes a
//!   dead letter, and its key is parked: the key's later events become dead letters behind it,
//!   in order, while every other key goes on.
//! - A database failure is retried with capped backoff; no offset moves until the batch commits.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use eventline_core::config::Settings;
use eventline_core::contract::{ContractError, ValidatedEvent};
use eventline_core::envelope::EnvelopeError;
use eventline_core::registry::Registry;
use eventline_kafka::consumer::{ConsumedRecord, ConsumerEvent, GroupConsumer, StartingOffsets, TopicPartition};
use eventline_store::checkpoints::PositionMove;
use eventline_store::dead_letters::NewDeadLetter;
use eventline_store::runtime::ReadEvent;
use eventline_store::Store;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::health;
use crate::projections::{Applicable, Apply, ApplyError};
use crate::spans::BatchSpans;

/// Longest pause between attempts while the database is unavailable.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(200);
/// How often applied event ids older than the dedup window are forgotten.
const PRUNE_EVERY: Duration = Duration::from_secs(600);
/// How often an idle worker compares its positions with the stored ones, to pick up an
/// operator's replay or a rebuild's cutover without a restart.
const RECHECK_POSITIONS_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Kafka(#[from] eventline_kafka::Error),
    #[error(transparent)]
    Store(#[from] eventline_store::Error),
    #[error("{0}")]
    Definition(String),
}

/// Looks up stored positions for the consumer's rebalance callback.
struct StoredPositions {
    store: Store,
    projection: String,
    runtime: tokio::runtime::Handle,
    shutdown: CancellationToken,
}

impl StartingOffsets for StoredPositions {
    fn starting_offsets(&self, partitions: &[TopicPartition]) -> Vec<Option<i64>> {
        // Called in the rebalance callback for every assignment, an empty one too: the worker
        // now has its share, even on a topic where no record comes to report it.
        health::assignment_received(&self.projection);
        let wanted: Vec<(String, i32)> = partitions.iter().map(|tp| (tp.topic.clone(), tp.partition)).collect();
        let mut delay = FIRST_RETRY_DELAY;
        loop {
            // The callback runs inside the consumer's poll; block this thread (not the runtime)
            // until the positions are known, since no partition may start without one.
            let result = tokio::task::block_in_place(|| {
                self.runtime.block_on(self.store.load_checkpoints(&self.projection, &wanted))
            });
            match result {
                Ok(offsets) => return offsets,
                Err(error) if self.shutdown.is_cancelled() => {
                    // Stopping: whatever is read from here is never committed (the stored offset
                    // does not match), so starting at the earliest loses nothing.
                    tracing::warn!(%error, "Cannot load stored offsets while stopping.");
                    return vec![None; partitions.len()];
                }
                Err(error) => {
                    tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "Cannot load stored offsets; retrying.");
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(MAX_RETRY_DELAY);
                }
            }
        }
    }
}

/// What a worker did before it stopped.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WorkerReport {
    pub batches: u64,
    pub applied: u64,
    pub duplicates: u64,
    pub dead_lettered: u64,
}

/// Runs `projection`'s worker as a member of `group_id` until `shutdown` is cancelled; then
/// writes the batch in hand, leaves the group and returns. Transient database failures are
/// retried with capped backoff. A rebuild's worker reads in its own group, into the generation
/// its `store` connects to.
pub async fn run_in_group<A: Apply>(
    projection: Arc<A>,
    settings: &Settings,
    registry: Arc<Registry>,
    store: Store,
    group_id: String,
    shutdown: CancellationToken,
) -> Result<WorkerReport, WorkerError> {
    let name = projection.name().to_string();
    let topics: Vec<String> = projection.topics().iter().map(|t| settings.namespace.topic(t)).collect();
    let starting = Arc::new(StoredPositions {
        store: store.clone(),
        projection: name.clone(),
        runtime: tokio::runtime::Handle::current(),
        shutdown: shutdown.clone(),
    });
    let consumer =
        GroupConsumer::subscribe(&settings.kafka, &group_id, &topics, starting, settings.connect_timeout).await?;
    tracing::info!(
        projection = %name,
        group = %group_id,
        group_protocol = settings.kafka.group_protocol.as_str(),
        topics = ?topics,
        "Worker started."
    );
    health::joining(&name);

    let mut worker = Worker {
        projection,
        registry,
        store,
        consumer,
        shutdown: shutdown.clone(),
        max_events: settings.worker.batch_max_events,
        max_bytes: settings.worker.batch_max_bytes,
        max_wait: settings.worker.batch_max_wait,
        dedup_window: settings.worker.dedup_window,
        identity: worker_identity(),
        positions: HashMap::new(),
        batch: Vec::new(),
        batch_bytes: 0,
        deadline: None,
        report: WorkerReport::default(),
    };
    let result = worker.run_loop().await;
    health::stopped(&name);
    let report = worker.report;
    worker.consumer.close().await;
    tracing::info!(
        projection = %name,
        batches = report.batches,
        applied = report.applied,
        duplicates = report.duplicates,
        dead_lettered = report.dead_lettered,
        "Worker stopped."
    );
    result.map(|()| report)
}

struct Worker<A: Apply> {
    projection: Arc<A>,
    /// Validates and upcasts every record, so the projection sees current versions only.
    registry: Arc<Registry>,
    store: Store,
    consumer: GroupConsumer,
    shutdown: CancellationToken,
    max_events: usize,
    max_bytes: usize,
    max_wait: Duration,
    dedup_window: Duration,
    /// host:pid, recorded with every position this worker moves.
    identity: String,
    /// Stored position of every owned partition: where the next batch starts (`None`: no row yet).
    positions: HashMap<TopicPartition, Option<i64>>,
    /// Records read but not yet written, in arrival order (offset order per partition).
    batch: Vec<ConsumedRecord>,
    /// Their keys' and values' bytes.
    batch_bytes: usize,
    /// When the batch must be written even if it is not full.
    deadline: Option<Instant>,
    report: WorkerReport,
}

/// What becomes of one record of a batch.
enum Fate<E> {
    /// Not for this projection, or a copy of an event already applied: only its offset counts.
    PassedOver,
    Apply(Applicable<E>),
    Dead {
        kind: &'static str,
        reason: String,
        event: Option<ValidatedEvent>,
    },
}

impl<A: Apply> Worker<A> {
    async fn run_loop(&mut self) -> Result<(), WorkerError> {
        let mut prune = tokio::time::interval(PRUNE_EVERY);
        let mut recheck = tokio::time::interval(RECHECK_POSITIONS_EVERY);
        recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let deadline = self.deadline;
            tokio::select! {
                biased;
                () = self.shutdown.cancelled() => {
                    // Finish the batch in hand so its work is not redone by the next owner.
                    return self.flush().await;
                }
                () = sleep_until(deadline), if deadline.is_some() => self.flush().await?,
                event = self.consumer.next() => match event {
                    Ok(ConsumerEvent::Record(record)) => {
                        self.accept(record);
                        // Behind its topics the worker fills a batch at once: large batches
                        // while it catches up, what the wait gathered once it has.
                        if self.batch.len() >= self.max_events || self.batch_bytes >= self.max_bytes {
                            self.flush().await?;
                        }
                    }
                    Ok(ConsumerEvent::Assigned(started)) => {
                        for (tp, offset) in started {
                            self.positions.insert(tp, offset);
                        }
                        health::assigned(self.projection.name(), self.positions.len());
                    }
                    Ok(ConsumerEvent::Revoked(partitions)) => {
                        for tp in &partitions {
                            self.positions.remove(tp);
                        }
                        health::assigned(self.projection.name(), self.positions.len());
                        self.batch.retain(|r| self.positions.contains_key(&r.topic_partition()));
                        self.batch_bytes = self.batch.iter().map(record_bytes).sum();
                        if self.batch.is_empty() {
                            self.deadline = None;
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "Kafka consumer error; continuing.");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                _ = recheck.tick(), if self.batch.is_empty() && !self.positions.is_empty() => {
                    if let Err(error) = self.follow_stored_positions().await {
                        tracing::warn!(projection = self.projection.name(), %error, "Cannot compare positions with the stored ones; will try again.");
                    }
                }
                _ = prune.tick() => match self.store.prune_applied(self.projection.name(), self.dedup_window).await {
                    Ok(forgotten) => tracing::debug!(projection = self.projection.name(), forgotten, "Old applied event ids forgotten."),
                    Err(error) => tracing::warn!(projection = self.projection.name(), %error, "Cannot forget old applied event ids; will try again."),
                },
            }
        }
    }

    /// Takes a record into the batch unless it is from a partition this worker no longer owns
    /// or was already applied.
    fn accept(&mut self, record: ConsumedRecord) {
        let Some(position) = self.positions.get(&record.topic_partition()) else {
            return;
        };
        if position.is_some_and(|next| record.offset < next) {
            return;
        }
        if self.batch.is_empty() {
            self.deadline = Some(Instant::now() + self.max_wait);
        }
        self.batch_bytes += record_bytes(&record);
        self.batch.push(record);
    }

    /// Writes the batch, retrying while the database is unavailable.
    async fn flush(&mut self) -> Result<(), WorkerError> {
        self.deadline = None;
        if self.batch.is_empty() {
            return Ok(());
        }
        let mut delay = FIRST_RETRY_DELAY;
        loop {
            match self.write_batch().await {
                Ok(()) => return Ok(()),
                Err(ApplyError::Store(eventline_store::Error::Fenced { projection, topic, partition, expected })) => {
                    tracing::warn!(
                        projection,
                        topic,
                        partition,
                        ?expected,
                        "Stored offset moved under this worker (another owns the partition now); re-reading from it."
                    );
                    return self.reposition().await;
                }
                Err(ApplyError::Store(error)) if error.is_transient() => {
                    tracing::warn!(
                        projection = self.projection.name(),
                        %error,
                        retry_in_ms = delay.as_millis() as u64,
                        "Database unavailable; the batch will be retried, no offset moved."
                    );
                    tokio::select! {
                        () = self.shutdown.cancelled() => {
                            tracing::warn!("Stopping with a batch unwritten; the next owner re-reads it.");
                            self.batch.clear();
                            self.batch_bytes = 0;
                            return Ok(());
                        }
                        () = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(MAX_RETRY_DELAY);
                }
                Err(ApplyError::Store(error)) => return Err(error.into()),
                Err(error @ ApplyError::Definition { .. }) => return Err(WorkerError::Definition(error.to_string())),
            }
        }
    }

    /// Writes the batch inside its span (see [`BatchSpans`]).
    async fn write_batch(&mut self) -> Result<(), ApplyError> {
        let spans = BatchSpans::open(self.projection.name(), &self.batch);
        let result = self.apply_batch(&spans).instrument(spans.batch.clone()).await;
        if let Err(error) = &result {
            spans.failed(error);
        }
        result
    }

    /// One transaction: projection rows, dead letters, parked keys, applied ids and the next
    /// offsets, or nothing.
    async fn apply_batch(&mut self, spans: &BatchSpans) -> Result<(), ApplyError> {
        let projection = self.projection.clone();
        let name = projection.name();
        let started = Instant::now();
        let mut fates: Vec<Fate<A::Event>> = self.batch.iter().map(|record| self.classify(record)).collect();
        let keys: Vec<Option<String>> =
            self.batch.iter().map(|r| r.key.as_ref().map(|k| String::from_utf8_lossy(k).into_owned())).collect();

        let mut tx = self.store.begin().await?;
        tx.enter_projection(projection.tables()).await?;
        let mut distinct_keys: Vec<String> = keys.iter().flatten().cloned().collect();
        distinct_keys.sort();
        distinct_keys.dedup();
        // Keys parked before this batch, and those this batch parks, with the reason.
        let mut parked: HashSet<String> = tx.parked_among(name, &distinct_keys).await?;
        let mut newly_parked: Vec<(String, String)> = Vec::new();

        // In offset order: park behind dead letters, pass over copies seen earlier in the batch.
        let mut duplicates = 0u64;
        let mut in_batch: HashSet<String> = HashSet::new();
        for (index, fate) in fates.iter_mut().enumerate() {
            let key = keys[index].as_deref();
            if let Some(key) = key.filter(|k| parked.contains(*k)) {
                // Waits behind the key's earlier dead letter; one already dead keeps its own reason.
                if let Fate::Apply(applicable) = fate {
                    let event = Some(applicable.event.clone());
                    *fate = Fate::Dead { kind: "parked", reason: parked_reason(key), event };
                }
                continue;
            }
            match fate {
                Fate::Dead { reason, .. } => {
                    if let Some(key) = key {
                        parked.insert(key.to_string());
                        newly_parked.push((key.to_string(), reason.clone()));
                    }
                }
                Fate::Apply(applicable) => {
                    if !in_batch.insert(applicable.event.envelope().id.clone()) {
                        duplicates += 1;
                        *fate = Fate::PassedOver;
                    }
                }
                Fate::PassedOver => {}
            }
        }
        // Claim the ids of what is left to apply: an id claimed before was applied before.
        let candidates: Vec<ReadEvent> = fates
            .iter()
            .zip(&self.batch)
            .filter(|(f, _)| matches!(f, Fate::Apply(_)))
            .map(|(f, record)| ReadEvent {
                event_id: applicable(f).event.envelope().id.clone(),
                topic: record.topic.clone(),
                partition: record.partition,
                offset: record.offset,
            })
            .collect();
        let claimed: HashSet<String> = tx.claim_event_ids(name, &candidates).await?;
        for fate in fates.iter_mut() {
            if matches!(fate, Fate::Apply(a) if !claimed.contains(&a.event.envelope().id)) {
                duplicates += 1;
                *fate = Fate::PassedOver;
            }
        }

        // Fold; each refused event parks its key, so fold again without it and what follows it.
        let mut active: Vec<usize> =
            fates.iter().enumerate().filter_map(|(i, f)| matches!(f, Fate::Apply(_)).then_some(i)).collect();
        while !active.is_empty() {
            let rejected = {
                let events: Vec<&Applicable<A::Event>> = active.iter().map(|&i| applicable(&fates[i])).collect();
                projection.apply(&mut tx, &events).await?
            };
            if rejected.is_empty() {
                break;
            }
            park_refused(&mut fates, &mut active, &keys, rejected, &mut newly_parked);
        }
        // Events claimed but not applied after all (refused, or parked behind a refusal).
        let unapplied: Vec<String> = fates
            .iter()
            .filter_map(|f| match f {
                Fate::Dead { event: Some(event), .. } if claimed.contains(&event.envelope().id) => {
                    Some(event.envelope().id.clone())
                }
                _ => None,
            })
            .collect();
        tx.release_event_ids(name, &unapplied).await?;
        let applied = active.len();
        spans.outcomes(|index| match &fates[index] {
            Fate::Apply(_) if active.contains(&index) => "applied",
            Fate::Dead { .. } => "dead_lettered",
            _ => "passed_over",
        });
        let dead: Vec<NewDeadLetter> = fates
            .iter()
            .zip(&self.batch)
            .filter_map(|(fate, record)| match fate {
                Fate::Dead { kind, reason, event } => {
                    Some(dead_letter(name, record, event.as_ref(), kind, reason.clone()))
                }
                _ => None,
            })
            .collect();
        tx.insert_dead_letters(&dead).await?;
        tx.park_keys(name, &newly_parked).await?;

        let mut next_offsets: BTreeMap<TopicPartition, i64> = BTreeMap::new();
        for record in &self.batch {
            next_offsets.insert(record.topic_partition(), record.offset + 1);
        }
        let moves: Vec<PositionMove<'_>> = next_offsets
            .iter()
            .map(|(tp, next)| PositionMove {
                topic: &tp.topic,
                partition: tp.partition,
                expected: self.positions.get(tp).copied().flatten(),
                next_offset: *next,
            })
            .collect();
        // With the progress notice that wakes readers waiting on a consistency token on commit.
        tx.advance_checkpoints(name, &moves, &self.identity).await?;
        tx.commit().await?;

        let written: Vec<(TopicPartition, i64)> = next_offsets.into_iter().collect();
        for (tp, next) in &written {
            self.positions.insert(tp.clone(), Some(*next));
        }
        self.consumer.mirror_progress(&written);
        let labels = [("projection", name.to_string())];
        metrics::counter!("eventline_events_consumed_total", &labels).increment(self.batch.len() as u64);
        metrics::counter!("eventline_events_applied_total", &labels).increment(applied as u64);
        metrics::counter!("eventline_events_duplicate_total", &labels).increment(duplicates);
        metrics::counter!("eventline_events_dead_lettered_total", &labels).increment(dead.len() as u64);
        metrics::histogram!("eventline_batch_size_events", &labels).record(self.batch.len() as f64);
        metrics::histogram!("eventline_batch_apply_duration_seconds", &labels).record(started.elapsed().as_secs_f64());
        self.report.batches += 1;
        self.report.applied += applied as u64;
        self.report.duplicates += duplicates;
        self.report.dead_lettered += dead.len() as u64;
        if !dead.is_empty() {
            let keys: Vec<&str> = newly_parked.iter().map(|(k, _)| k.as_str()).collect();
            tracing::error!(
                projection = name,
                dead_letters = dead.len(),
                newly_parked = ?keys,
                "Events set aside as dead letters; their keys stay parked until an operator retries or skips them."
            );
        }
        tracing::debug!(
            projection = name,
            events = self.batch.len(),
            applied,
            duplicates,
            took_ms = started.elapsed().as_millis() as u64,
            "Batch written."
        );
        self.batch.clear();
        self.batch_bytes = 0;
        Ok(())
    }

    /// Decodes and validates a record, and decides whether this projection applies it.
    fn classify(&self, record: &ConsumedRecord) -> Fate<A::Event> {
        match decode(&self.registry, &record.headers, record.payload.as_deref()) {
            Ok(event) if self.projection.handles(&event.envelope().event_type) => {
                match self.projection.decode(&event) {
                    Ok(payload) => {
                        let time = event.envelope().time.unwrap_or_else(|| record_time(record));
                        Fate::Apply(Applicable {
                            event,
                            payload,
                            time,
                            topic: record.topic.clone(),
                            partition: record.partition,
                            offset: record.offset,
                        })
                    }
                    Err(reason) => Fate::Dead { kind: "invalid", reason, event: Some(event) },
                }
            }
            Ok(_) => Fate::PassedOver,
            Err((kind, reason)) => Fate::Dead { kind, reason, event: None },
        }
    }

    /// Re-reads from the stored positions of owned partitions where they differ from this
    /// worker's: an operator replayed the projection or a rebuild was switched in.
    async fn follow_stored_positions(&mut self) -> Result<(), WorkerError> {
        let owned: Vec<TopicPartition> = self.positions.keys().cloned().collect();
        let wanted: Vec<(String, i32)> = owned.iter().map(|tp| (tp.topic.clone(), tp.partition)).collect();
        let stored = self.store.load_checkpoints(self.projection.name(), &wanted).await?;
        for (tp, stored) in owned.into_iter().zip(stored) {
            let known = self.positions.get(&tp).copied().flatten();
            if known == stored {
                continue;
            }
            tracing::info!(
                projection = self.projection.name(),
                topic = %tp.topic,
                partition = tp.partition,
                from = ?known,
                to = ?stored,
                "Stored position changed under this worker (a replay or a cutover); reading from it."
            );
            match self.consumer.seek(&tp, stored) {
                Ok(()) => {
                    self.positions.insert(tp, stored);
                }
                Err(error) => {
                    tracing::info!(topic = %tp.topic, partition = tp.partition, %error, "Not repositioning a partition.");
                }
            }
        }
        Ok(())
    }

    /// After being fenced: drop the batch and continue every partition from its stored offset.
    async fn reposition(&mut self) -> Result<(), WorkerError> {
        let mut partitions: Vec<TopicPartition> = self.batch.iter().map(ConsumedRecord::topic_partition).collect();
        partitions.sort();
        partitions.dedup();
        self.batch.clear();
        self.batch_bytes = 0;
        let wanted: Vec<(String, i32)> = partitions.iter().map(|tp| (tp.topic.clone(), tp.partition)).collect();
        let stored = self.store.load_checkpoints(self.projection.name(), &wanted).await?;
        for (tp, offset) in partitions.into_iter().zip(stored) {
            match self.consumer.seek(&tp, offset) {
                Ok(()) => {
                    self.positions.insert(tp, offset);
                }
                Err(error) => {
                    // Most likely no longer assigned here; the owner has it.
                    tracing::info!(topic = %tp.topic, partition = tp.partition, %error, "Not repositioning a partition.");
                    self.positions.remove(&tp);
                }
            }
        }
        Ok(())
    }
}

/// What a record weighs in a batch: its key and value.
fn record_bytes(record: &ConsumedRecord) -> usize {
    record.key.as_ref().map_or(0, Vec::len) + record.payload.as_ref().map_or(0, Vec::len)
}

/// The event of a fate known to apply.
fn applicable<E>(fate: &Fate<E>) -> &Applicable<E> {
    match fate {
        Fate::Apply(applicable) => applicable,
        _ => unreachable!("only applying events are active"),
    }
}

/// Turns the events a fold refused into dead letters and parks their keys; the later events of a
/// refused key (in offset order) become dead letters behind it. `rejected` positions index
/// `active`, which keeps only the events still to apply.
fn park_refused<E>(
    fates: &mut [Fate<E>],
    active: &mut Vec<usize>,
    keys: &[Option<String>],
    rejected: Vec<(usize, String)>,
    newly_parked: &mut Vec<(String, String)>,
) {
    // The first refused event of each key; events without a key are refused one by one.
    let mut refused: HashMap<String, usize> = HashMap::new();
    for (position, reason) in rejected {
        let index = active[position];
        let key = keys[index].clone();
        if let Some(key) = &key {
            if refused.contains_key(key) {
                continue;
            }
            refused.insert(key.clone(), index);
            newly_parked.push((key.clone(), reason.clone()));
        }
        if let Fate::Apply(applicable) = std::mem::replace(&mut fates[index], Fate::PassedOver) {
            fates[index] = Fate::Dead { kind: "rejected", reason, event: Some(applicable.event) };
        }
    }
    for &index in active.iter() {
        let Some(key) = keys[index].as_deref() else { continue };
        if refused.get(key).is_some_and(|&first| index > first) {
            if let Fate::Apply(applicable) = std::mem::replace(&mut fates[index], Fate::PassedOver) {
                fates[index] = Fate::Dead { kind: "parked", reason: parked_reason(key), event: Some(applicable.event) };
            }
        }
    }
    active.retain(|&i| matches!(fates[i], Fate::Apply(_)));
}

fn parked_reason(key: &str) -> String {
    format!("key {key} is parked behind an earlier dead letter")
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Decodes (structured or binary content mode) and validates a record; an error carries the
/// dead-letter kind and reason.
pub(crate) fn decode(
    registry: &Registry,
    headers: &[(String, Vec<u8>)],
    payload: Option<&[u8]>,
) -> Result<ValidatedEvent, (&'static str, String)> {
    registry.validate_record(headers, payload).map_err(|error| match &error {
        ContractError::Envelope(
            EnvelopeError::NotJson(_)
            | EnvelopeError::NotObject(_)
            | EnvelopeError::TooLarge { .. }
            | EnvelopeError::NoValue
            | EnvelopeError::DataNotJson(_)
            | EnvelopeError::UnsupportedFormat(_)
            | EnvelopeError::InvalidHeader { .. },
        ) => ("undecodable", error.to_string()),
        _ => match error.pointer() {
            pointer if pointer.is_empty() => ("invalid", error.to_string()),
            pointer => ("invalid", format!("{error} (at {pointer})")),
        },
    })
}

/// Names this process in stored positions: host:pid.
fn worker_identity() -> String {
    format!("{}:{}", gethostname::gethostname().to_string_lossy(), std::process::id())
}

fn record_time(record: &ConsumedRecord) -> DateTime<Utc> {
    record.timestamp_ms.and_then(DateTime::from_timestamp_millis).unwrap_or_else(Utc::now)
}

fn dead_letter(
    projection: &str,
    record: &ConsumedRecord,
    event: Option<&ValidatedEvent>,
    kind: &'static str,
    reason: String,
) -> NewDeadLetter {
    let headers: serde_json::Map<String, serde_json::Value> =
        record.headers.iter().map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned().into())).collect();
    NewDeadLetter {
        projection: projection.to_string(),
        topic: record.topic.clone(),
        partition: record.partition,
        offset: record.offset,
        record_key: record.key.as_ref().map(|k| String::from_utf8_lossy(k).into_owned()),
        event_id: event.map(|e| e.envelope().id.clone()),
        event_type: event.map(|e| e.envelope().event_type.clone()),
        reason_kind: kind,
        reason,
        payload: record.payload.clone(),
        headers: headers.into(),
        record_time: record.timestamp_ms.and_then(DateTime::from_timestamp_millis),
    }
}
