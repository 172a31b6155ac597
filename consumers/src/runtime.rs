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
//!
//! For speed, a worker spreads its partitions over lanes (`EVENTLINE_WORKER_LANES`) and writes
//! one batch per lane at a time, lanes concurrently, while it goes on reading. A partition stays
//! in its lane, so the rules above hold per partition exactly as with one lane; rows that several
//! partitions write are locked by the projection's load (or written additively), and a deadlock
//! between two lanes is retried like any transient failure.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use eventline_core::config::Settings;
use eventline_core::contract::{ContractError, ValidatedEvent};
use eventline_core::envelope::EnvelopeError;
use eventline_core::registry::{Registry, SealedFields};
use eventline_kafka::consumer::{ConsumedRecord, ConsumerEvent, GroupConsumer, StartingOffsets, TopicPartition};
use eventline_store::availability::{wait_out_unavailable, FIRST_RETRY_DELAY, MAX_RETRY_DELAY};
use eventline_store::checkpoints::PositionMove;
use eventline_store::dead_letters::NewDeadLetter;
use eventline_store::runtime::ReadEvent;
use eventline_store::Store;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::health;
use crate::projections::{Applicable, Apply, ApplyError};
use crate::spans::BatchSpans;

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
/// writes the batches in hand, leaves the group and returns. Transient database failures are
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
        lanes = settings.worker.lanes,
        "Worker started."
    );
    health::joining(&name);

    let mut worker = Worker {
        writer: Arc::new(BatchWriter {
            projection,
            registry,
            store,
            shutdown: shutdown.clone(),
            identity: worker_identity(),
        }),
        consumer,
        max_events: settings.worker.batch_max_events,
        max_bytes: settings.worker.batch_max_bytes,
        max_wait: settings.worker.batch_max_wait,
        dedup_window: settings.worker.dedup_window,
        positions: HashMap::new(),
        lane_of: HashMap::new(),
        lanes: (0..settings.worker.lanes.max(1)).map(|_| Lane::default()).collect(),
        writing: JoinSet::new(),
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

/// Reads records and hands them to lanes; each lane writes one batch at a time, lanes write
/// theirs concurrently (each batch its own transaction on its own connection). A partition
/// belongs to one lane while it is owned here, so its events are applied in offset order, and
/// reading goes on while batches commit.
struct Worker<A: Apply> {
    writer: Arc<BatchWriter<A>>,
    consumer: GroupConsumer,
    max_events: usize,
    max_bytes: usize,
    max_wait: Duration,
    dedup_window: Duration,
    /// Stored position of every owned partition: where its next batch starts (`None`: no row
    /// yet). A batch being written has not moved it yet.
    positions: HashMap<TopicPartition, Option<i64>>,
    /// The lane of every owned partition.
    lane_of: HashMap<TopicPartition, usize>,
    lanes: Vec<Lane>,
    /// The batches being written, each with its lane.
    writing: JoinSet<(usize, Result<Written, WriteFailure>)>,
    report: WorkerReport,
}

/// Records gathered for the next batch of some partitions.
#[derive(Default)]
struct Lane {
    /// Read but not yet written, in arrival order (offset order per partition).
    records: Vec<ConsumedRecord>,
    /// Their keys' and values' bytes.
    bytes: usize,
    /// When the gathered records must be written even if they do not fill a batch.
    deadline: Option<Instant>,
    /// A batch of this lane is being written: the next one waits for it.
    busy: bool,
    /// How many owned partitions it carries.
    partitions: usize,
}

impl Lane {
    fn take(&mut self) -> Vec<ConsumedRecord> {
        self.bytes = 0;
        self.deadline = None;
        std::mem::take(&mut self.records)
    }

    fn drop_partitions(&mut self, partitions: &[TopicPartition]) {
        self.records.retain(|r| !partitions.iter().any(|tp| tp.topic == r.topic && tp.partition == r.partition));
        self.bytes = self.records.iter().map(record_bytes).sum();
        if self.records.is_empty() {
            self.deadline = None;
        }
    }
}

/// A batch committed: where its partitions go on from, and what it did.
struct Written {
    next_offsets: Vec<(TopicPartition, i64)>,
    report: WorkerReport,
}

/// Why a batch was not written.
enum WriteFailure {
    /// Another worker moved a stored position under this one: re-read these partitions.
    Fenced(Vec<TopicPartition>),
    /// Stopping while the database was unavailable: the next owner re-reads the batch.
    Abandoned,
    Fatal(WorkerError),
}

impl<A: Apply> Worker<A> {
    async fn run_loop(&mut self) -> Result<(), WorkerError> {
        let mut prune = tokio::time::interval(PRUNE_EVERY);
        let mut recheck = tokio::time::interval(RECHECK_POSITIONS_EVERY);
        recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let shutdown = self.writer.shutdown.clone();
        loop {
            let deadline = self.next_deadline();
            tokio::select! {
                biased;
                () = shutdown.cancelled() => {
                    // Finish the batches in hand so their work is not redone by the next owner.
                    return self.finish().await;
                }
                Some(joined) = self.writing.join_next(), if !self.writing.is_empty() => {
                    let lane = self.settle(joined).await?;
                    self.dispatch_if_ready(lane);
                }
                () = sleep_until(deadline), if deadline.is_some() => {
                    for lane in 0..self.lanes.len() {
                        self.dispatch_if_ready(lane);
                    }
                }
                event = self.consumer.next() => match event {
                    Ok(ConsumerEvent::Record(record)) => self.accept(record).await?,
                    Ok(ConsumerEvent::Assigned(started)) => {
                        for (tp, offset) in started {
                            self.positions.insert(tp.clone(), offset);
                            self.place(tp);
                        }
                        health::assigned(self.writer.name(), self.positions.len());
                    }
                    Ok(ConsumerEvent::Revoked(partitions)) => {
                        // A batch being written may cover them: let it commit (or be fenced) first.
                        self.drain().await?;
                        for tp in &partitions {
                            self.positions.remove(tp);
                            if let Some(lane) = self.lane_of.remove(tp) {
                                self.lanes[lane].partitions -= 1;
                                self.lanes[lane].drop_partitions(std::slice::from_ref(tp));
                            }
                        }
                        health::assigned(self.writer.name(), self.positions.len());
                    }
                    Err(error) => {
                        tracing::warn!(%error, "Kafka consumer error; continuing.");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                _ = recheck.tick(), if self.idle() && !self.positions.is_empty() => {
                    if let Err(error) = self.follow_stored_positions().await {
                        tracing::warn!(projection = self.writer.name(), %error, "Cannot compare positions with the stored ones; will try again.");
                    }
                }
                _ = prune.tick() => match self.writer.store.prune_applied(self.writer.name(), self.dedup_window).await {
                    Ok(forgotten) => tracing::debug!(projection = self.writer.name(), forgotten, "Old applied event ids forgotten."),
                    Err(error) => tracing::warn!(projection = self.writer.name(), %error, "Cannot forget old applied event ids; will try again."),
                },
            }
        }
    }

    /// Gives a newly owned partition to the lane with the fewest.
    fn place(&mut self, tp: TopicPartition) {
        if self.lane_of.contains_key(&tp) {
            return;
        }
        let (lane, _) = self.lanes.iter().enumerate().min_by_key(|(_, lane)| lane.partitions).expect("a lane");
        self.lanes[lane].partitions += 1;
        self.lane_of.insert(tp, lane);
    }

    /// Nothing gathered and nothing being written.
    fn idle(&self) -> bool {
        self.writing.is_empty() && self.lanes.iter().all(|lane| lane.records.is_empty())
    }

    /// The earliest deadline of a lane that could write now.
    fn next_deadline(&self) -> Option<Instant> {
        self.lanes.iter().filter(|lane| !lane.busy).filter_map(|lane| lane.deadline).min()
    }

    /// Takes a record into its lane's batch unless it is from a partition this worker no longer
    /// owns or was already applied. A full batch is written at once; when its lane is still
    /// writing the previous one, reading waits for that (so memory stays bounded).
    async fn accept(&mut self, record: ConsumedRecord) -> Result<(), WorkerError> {
        let tp = record.topic_partition();
        let (Some(position), Some(&lane)) = (self.positions.get(&tp), self.lane_of.get(&tp)) else {
            return Ok(());
        };
        if position.is_some_and(|next| record.offset < next) {
            return Ok(());
        }
        let gathering = &mut self.lanes[lane];
        if gathering.records.is_empty() {
            gathering.deadline = Some(Instant::now() + self.max_wait);
        }
        gathering.bytes += record_bytes(&record);
        gathering.records.push(record);
        // Behind its topics the worker fills batches at once: large batches while it catches
        // up, what the wait gathered once it has.
        while self.is_full(lane) && self.lanes[lane].busy {
            let joined = self.writing.join_next().await.expect("a busy lane has a batch being written");
            let settled = self.settle(joined).await?;
            if settled != lane {
                self.dispatch_if_ready(settled);
            }
        }
        self.dispatch_if_ready(lane);
        Ok(())
    }

    fn is_full(&self, lane: usize) -> bool {
        let lane = &self.lanes[lane];
        lane.records.len() >= self.max_events || lane.bytes >= self.max_bytes
    }

    /// Starts writing a lane's batch if the lane is free and the batch is full or due.
    fn dispatch_if_ready(&mut self, lane: usize) {
        let due = self.lanes[lane].deadline.is_some_and(|deadline| deadline <= Instant::now());
        if !self.lanes[lane].busy && (due || self.is_full(lane)) {
            self.dispatch(lane);
        }
    }

    /// Starts writing what a free lane gathered.
    fn dispatch(&mut self, lane: usize) {
        if self.lanes[lane].busy || self.lanes[lane].records.is_empty() {
            return;
        }
        let batch = self.lanes[lane].take();
        let expected: HashMap<TopicPartition, Option<i64>> = batch
            .iter()
            .map(|record| {
                let tp = record.topic_partition();
                let position = self.positions.get(&tp).copied().flatten();
                (tp, position)
            })
            .collect();
        self.lanes[lane].busy = true;
        let writer = self.writer.clone();
        self.writing.spawn(async move { (lane, writer.write_with_retries(batch, expected).await) });
    }

    /// Takes in a finished batch: moves its positions, or re-reads after a fence. Returns its lane.
    async fn settle(
        &mut self,
        joined: Result<(usize, Result<Written, WriteFailure>), tokio::task::JoinError>,
    ) -> Result<usize, WorkerError> {
        let (lane, outcome) = match joined {
            Ok(finished) => finished,
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(error) => return Err(WorkerError::Definition(format!("a batch's task ended unexpectedly: {error}"))),
        };
        self.lanes[lane].busy = false;
        match outcome {
            Ok(written) => {
                let owned: Vec<(TopicPartition, i64)> =
                    written.next_offsets.into_iter().filter(|(tp, _)| self.positions.contains_key(tp)).collect();
                for (tp, next) in &owned {
                    self.positions.insert(tp.clone(), Some(*next));
                }
                self.consumer.mirror_progress(&owned);
                let report = written.report;
                self.report.batches += report.batches;
                self.report.applied += report.applied;
                self.report.duplicates += report.duplicates;
                self.report.dead_lettered += report.dead_lettered;
            }
            Err(WriteFailure::Fenced(partitions)) => {
                self.lanes[lane].drop_partitions(&partitions);
                self.reposition(partitions).await?;
            }
            Err(WriteFailure::Abandoned) => {
                // Stopping with the database away: what the lane gathered is read again later.
                self.lanes[lane].take();
            }
            Err(WriteFailure::Fatal(error)) => return Err(error),
        }
        Ok(lane)
    }

    /// Waits for every batch being written.
    async fn drain(&mut self) -> Result<(), WorkerError> {
        while let Some(joined) = self.writing.join_next().await {
            self.settle(joined).await?;
        }
        Ok(())
    }

    /// Stopping: writes everything gathered, then returns.
    async fn finish(&mut self) -> Result<(), WorkerError> {
        loop {
            for lane in 0..self.lanes.len() {
                self.dispatch(lane);
            }
            match self.writing.join_next().await {
                Some(joined) => {
                    self.settle(joined).await?;
                }
                None => return Ok(()),
            }
        }
    }

    /// Re-reads from the stored positions of owned partitions where they differ from this
    /// worker's: an operator replayed the projection or a rebuild was switched in.
    async fn follow_stored_positions(&mut self) -> Result<(), WorkerError> {
        let owned: Vec<TopicPartition> = self.positions.keys().cloned().collect();
        let wanted: Vec<(String, i32)> = owned.iter().map(|tp| (tp.topic.clone(), tp.partition)).collect();
        let stored = self.writer.store.load_checkpoints(self.writer.name(), &wanted).await?;
        for (tp, stored) in owned.into_iter().zip(stored) {
            let known = self.positions.get(&tp).copied().flatten();
            if known == stored {
                continue;
            }
            tracing::info!(
                projection = self.writer.name(),
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

    /// After being fenced: continue these partitions from their stored offsets.
    async fn reposition(&mut self, partitions: Vec<TopicPartition>) -> Result<(), WorkerError> {
        let wanted: Vec<(String, i32)> = partitions.iter().map(|tp| (tp.topic.clone(), tp.partition)).collect();
        let (store, name) = (&self.writer.store, self.writer.name());
        let loading = wait_out_unavailable("loading stored offsets", &self.writer.shutdown, || {
            store.load_checkpoints(name, &wanted)
        });
        let Some(stored) = loading.await? else {
            // Stopping: nothing more is written, so where these partitions stand does not matter.
            return Ok(());
        };
        for (tp, offset) in partitions.into_iter().zip(stored) {
            match self.consumer.seek(&tp, offset) {
                Ok(()) => {
                    self.positions.insert(tp, offset);
                }
                Err(error) => {
                    // Most likely no longer assigned here; the owner has it.
                    tracing::info!(topic = %tp.topic, partition = tp.partition, %error, "Not repositioning a partition.");
                    self.positions.remove(&tp);
                    if let Some(lane) = self.lane_of.remove(&tp) {
                        self.lanes[lane].partitions -= 1;
                    }
                }
            }
        }
        Ok(())
    }
}

/// What every lane's batches share: the projection and where it writes.
struct BatchWriter<A: Apply> {
    projection: Arc<A>,
    /// Validates and upcasts every record, so the projection sees current versions only.
    registry: Arc<Registry>,
    store: Store,
    shutdown: CancellationToken,
    /// host:pid, recorded with every position this worker moves.
    identity: String,
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

impl<A: Apply> BatchWriter<A> {
    fn name(&self) -> &str {
        self.projection.name()
    }

    /// Writes a batch, retrying while the database is unavailable.
    async fn write_with_retries(
        &self,
        batch: Vec<ConsumedRecord>,
        expected: HashMap<TopicPartition, Option<i64>>,
    ) -> Result<Written, WriteFailure> {
        let mut delay = FIRST_RETRY_DELAY;
        loop {
            match self.write(&batch, &expected).await {
                Ok(written) => return Ok(written),
                Err(ApplyError::Store(eventline_store::Error::Fenced { projection, topic, partition, expected })) => {
                    tracing::warn!(
                        projection,
                        topic,
                        partition,
                        ?expected,
                        "Stored offset moved under this worker (another owns the partition now); re-reading from it."
                    );
                    let mut partitions: Vec<TopicPartition> =
                        batch.iter().map(ConsumedRecord::topic_partition).collect();
                    partitions.sort();
                    partitions.dedup();
                    return Err(WriteFailure::Fenced(partitions));
                }
                Err(ApplyError::Store(error)) if error.is_transient() => {
                    tracing::warn!(
                        projection = self.name(),
                        %error,
                        retry_in_ms = delay.as_millis() as u64,
                        "Database unavailable; the batch will be retried, no offset moved."
                    );
                    tokio::select! {
                        () = self.shutdown.cancelled() => {
                            tracing::warn!("Stopping with a batch unwritten; the next owner re-reads it.");
                            return Err(WriteFailure::Abandoned);
                        }
                        () = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(MAX_RETRY_DELAY);
                }
                Err(ApplyError::Store(error)) => return Err(WriteFailure::Fatal(error.into())),
                Err(error @ ApplyError::Definition { .. }) => {
                    return Err(WriteFailure::Fatal(WorkerError::Definition(error.to_string())))
                }
            }
        }
    }

    /// Writes the batch inside its span (see [`BatchSpans`]).
    async fn write(
        &self,
        batch: &[ConsumedRecord],
        expected: &HashMap<TopicPartition, Option<i64>>,
    ) -> Result<Written, ApplyError> {
        let spans = BatchSpans::open(self.name(), batch);
        let result = self.apply_batch(batch, expected, &spans).instrument(spans.batch.clone()).await;
        if let Err(error) = &result {
            spans.failed(error);
        }
        result
    }

    /// One transaction: projection rows, dead letters, parked keys, applied ids and the next
    /// offsets, or nothing.
    async fn apply_batch(
        &self,
        batch: &[ConsumedRecord],
        expected: &HashMap<TopicPartition, Option<i64>>,
        spans: &BatchSpans,
    ) -> Result<Written, ApplyError> {
        let projection = self.projection.clone();
        let name = projection.name();
        let started = Instant::now();
        let mut fates: Vec<Fate<A::Event>> = batch.iter().map(|record| self.classify(record)).collect();
        // Borrowed from the records (a copy only for a key that is not UTF-8).
        let keys: Vec<Option<Cow<'_, str>>> =
            batch.iter().map(|r| r.key.as_deref().map(String::from_utf8_lossy)).collect();

        let mut tx = self.store.begin().await?;
        tx.enter_projection(projection.tables()).await?;
        let mut distinct_keys: Vec<&str> = keys.iter().flatten().map(|k| k.as_ref()).collect();
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
        let candidates: Vec<usize> =
            fates.iter().enumerate().filter_map(|(i, f)| matches!(f, Fate::Apply(_)).then_some(i)).collect();
        let read: Vec<ReadEvent<'_>> = candidates
            .iter()
            .map(|&i| ReadEvent {
                event_id: &applicable(&fates[i]).event.envelope().id,
                topic: &batch[i].topic,
                partition: batch[i].partition,
                offset: batch[i].offset,
            })
            .collect();
        let claimed_now = tx.claim_event_ids(name, &read).await?;
        drop(read);
        let mut claimed = vec![false; fates.len()];
        for (&index, now) in candidates.iter().zip(claimed_now) {
            if now {
                claimed[index] = true;
            } else {
                duplicates += 1;
                fates[index] = Fate::PassedOver;
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
        let unapplied: Vec<&str> = fates
            .iter()
            .enumerate()
            .filter_map(|(index, f)| match f {
                Fate::Dead { event: Some(event), .. } if claimed[index] => Some(event.envelope().id.as_str()),
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
            .zip(batch)
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
        for record in batch {
            next_offsets.insert(record.topic_partition(), record.offset + 1);
        }
        let moves: Vec<PositionMove<'_>> = next_offsets
            .iter()
            .map(|(tp, next)| PositionMove {
                topic: &tp.topic,
                partition: tp.partition,
                expected: expected.get(tp).copied().flatten(),
                next_offset: *next,
            })
            .collect();
        // With the progress notice that wakes readers waiting on a consistency token on commit.
        tx.advance_checkpoints(name, &moves, &self.identity).await?;
        tx.commit().await?;

        let labels = [("projection", name.to_string())];
        metrics::counter!("eventline_events_consumed_total", &labels).increment(batch.len() as u64);
        metrics::counter!("eventline_events_applied_total", &labels).increment(applied as u64);
        metrics::counter!("eventline_events_duplicate_total", &labels).increment(duplicates);
        metrics::counter!("eventline_events_dead_lettered_total", &labels).increment(dead.len() as u64);
        metrics::histogram!("eventline_batch_size_events", &labels).record(batch.len() as f64);
        metrics::histogram!("eventline_batch_apply_duration_seconds", &labels).record(started.elapsed().as_secs_f64());
        let report = WorkerReport { batches: 1, applied: applied as u64, duplicates, dead_lettered: dead.len() as u64 };
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
            events = batch.len(),
            applied,
            duplicates,
            took_ms = started.elapsed().as_millis() as u64,
            "Batch written."
        );
        Ok(Written { next_offsets: next_offsets.into_iter().collect(), report })
    }

    /// Decodes and validates a record, and decides whether this projection applies it.
    fn classify(&self, record: &ConsumedRecord) -> Fate<A::Event> {
        match decode(&self.registry, &record.headers, record.payload.as_deref(), self.projection.sealed_fields()) {
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
    keys: &[Option<Cow<'_, str>>],
    rejected: Vec<(usize, String)>,
    newly_parked: &mut Vec<(String, String)>,
) {
    // The first refused event of each key; events without a key are refused one by one.
    let mut refused: HashMap<String, usize> = HashMap::new();
    for (position, reason) in rejected {
        let index = active[position];
        let key = keys[index].as_deref().map(str::to_string);
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
    sealed: SealedFields,
) -> Result<ValidatedEvent, (&'static str, String)> {
    registry.validate_record_with(headers, payload, sealed).map_err(|error| match &error {
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
