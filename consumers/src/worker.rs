//! The projection worker: reads a projection's topics as a member of its consumer group and
//! applies them to PostgreSQL, effectively once.
//!
//! The contract, plainly: a batch's projection rows, its dead letters and the next offset of
//! every partition it covers commit in ONE PostgreSQL transaction. A partition starts wherever
//! that stored offset says (Kafka's group offsets only mirror it). The stored offset moves only
//! from the value the batch started from, so a worker that lost a partition to another cannot
//! write over the new owner's progress: its transaction is refused and rolled back. A crash at
//! any point leaves either the whole batch and its offsets, or neither.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use eventline_core::config::Settings;
use eventline_core::contract::{ContractError, ValidatedEvent};
use eventline_core::envelope::EnvelopeError;
use eventline_core::registry::Registry;
use eventline_kafka::consumer::{ConsumedRecord, ConsumerEvent, GroupConsumer, StartingOffsets, TopicPartition};
use eventline_store::dead_letters::NewDeadLetter;
use eventline_store::Store;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::projection::{Applicable, Projection};

/// Longest pause between attempts while the database is unavailable.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Kafka(#[from] eventline_kafka::Error),
    #[error(transparent)]
    Store(#[from] eventline_store::Error),
}

/// Looks up stored positions for the consumer's rebalance callback.
struct StoredPositions {
    store: Store,
    projection: Projection,
    runtime: tokio::runtime::Handle,
    shutdown: CancellationToken,
}

impl StartingOffsets for StoredPositions {
    fn starting_offsets(&self, partitions: &[TopicPartition]) -> Vec<Option<i64>> {
        let wanted: Vec<(String, i32)> = partitions.iter().map(|tp| (tp.topic.clone(), tp.partition)).collect();
        let mut delay = FIRST_RETRY_DELAY;
        loop {
            // The callback runs inside the consumer's poll; block this thread (not the runtime)
            // until the positions are known, since no partition may start without one.
            let result = tokio::task::block_in_place(|| {
                self.runtime.block_on(self.store.load_checkpoints(self.projection.name(), &wanted))
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
    pub dead_lettered: u64,
}

/// Runs one projection until `shutdown` is cancelled; then writes the batch in hand, leaves the
/// group and returns. Transient database failures are retried with capped backoff.
pub async fn run(
    settings: &Settings,
    projection: Projection,
    registry: Arc<Registry>,
    store: Store,
    shutdown: CancellationToken,
) -> Result<WorkerReport, WorkerError> {
    let topics: Vec<String> = projection.topics().iter().map(|t| settings.namespace.topic(t)).collect();
    let group_id = settings.namespace.group_id(projection.name());
    let starting = Arc::new(StoredPositions {
        store: store.clone(),
        projection,
        runtime: tokio::runtime::Handle::current(),
        shutdown: shutdown.clone(),
    });
    let consumer =
        GroupConsumer::subscribe(&settings.kafka, &group_id, &topics, starting, settings.connect_timeout).await?;
    tracing::info!(projection = projection.name(), group = %group_id, topics = ?topics, "Worker started.");

    let mut worker = Worker {
        projection,
        registry,
        store,
        consumer,
        shutdown: shutdown.clone(),
        max_events: settings.worker.batch_max_events,
        max_wait: settings.worker.batch_max_wait,
        positions: HashMap::new(),
        batch: Vec::new(),
        deadline: None,
        report: WorkerReport::default(),
    };
    let result = worker.run_loop().await;
    let report = worker.report;
    worker.consumer.close().await;
    tracing::info!(
        projection = projection.name(),
        batches = report.batches,
        applied = report.applied,
        dead_lettered = report.dead_lettered,
        "Worker stopped."
    );
    result.map(|()| report)
}

struct Worker {
    projection: Projection,
    /// Validates and upcasts every record, so the projection sees current versions only.
    registry: Arc<Registry>,
    store: Store,
    consumer: GroupConsumer,
    shutdown: CancellationToken,
    max_events: usize,
    max_wait: Duration,
    /// Stored position of every owned partition: where the next batch starts (`None`: no row yet).
    positions: HashMap<TopicPartition, Option<i64>>,
    /// Records read but not yet written, in arrival order (offset order per partition).
    batch: Vec<ConsumedRecord>,
    /// When the batch must be written even if it is not full.
    deadline: Option<Instant>,
    report: WorkerReport,
}

impl Worker {
    async fn run_loop(&mut self) -> Result<(), WorkerError> {
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
                        if self.batch.len() >= self.max_events {
                            self.flush().await?;
                        }
                    }
                    Ok(ConsumerEvent::Assigned(started)) => {
                        for (tp, offset) in started {
                            self.positions.insert(tp, offset);
                        }
                    }
                    Ok(ConsumerEvent::Revoked(partitions)) => {
                        for tp in &partitions {
                            self.positions.remove(tp);
                        }
                        self.batch.retain(|r| self.positions.contains_key(&r.topic_partition()));
                        if self.batch.is_empty() {
                            self.deadline = None;
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "Kafka consumer error; continuing.");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
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
                Err(eventline_store::Error::Fenced { projection, topic, partition, expected }) => {
                    tracing::warn!(
                        projection,
                        topic,
                        partition,
                        ?expected,
                        "Stored offset moved under this worker; re-reading from it."
                    );
                    return self.reposition().await;
                }
                Err(error) if error.is_transient() => {
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
                            return Ok(());
                        }
                        () = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(MAX_RETRY_DELAY);
                }
                Err(error) => return Err(error.into()),
            }
        }
    }

    /// One transaction: projection rows, dead letters and the next offsets, or nothing.
    async fn write_batch(&mut self) -> Result<(), eventline_store::Error> {
        let name = self.projection.name();
        let mut applicable: Vec<Applicable> = Vec::new();
        // Index in `self.batch` of each applicable event, to find its record for a dead letter.
        let mut sources: Vec<usize> = Vec::new();
        let mut dead: Vec<NewDeadLetter> = Vec::new();
        for (index, record) in self.batch.iter().enumerate() {
            match decode(&self.registry, record) {
                Ok(event) if self.projection.handles(&event.envelope().event_type) => {
                    let time = event.envelope().time.unwrap_or_else(|| record_time(record));
                    applicable.push(Applicable { event, time });
                    sources.push(index);
                }
                Ok(_) => {}
                Err((kind, reason)) => dead.push(dead_letter(name, record, None, kind, reason)),
            }
        }

        let mut tx = self.store.begin().await?;
        let rejected = self.projection.apply(&mut tx, &applicable).await?;
        for (index, reason) in rejected {
            let record = &self.batch[sources[index]];
            dead.push(dead_letter(name, record, Some(&applicable[index].event), "rejected", reason));
        }
        tx.insert_dead_letters(&dead).await?;

        let mut next_offsets: BTreeMap<TopicPartition, i64> = BTreeMap::new();
        for record in &self.batch {
            next_offsets.insert(record.topic_partition(), record.offset + 1);
        }
        for (tp, next) in &next_offsets {
            let expected = self.positions.get(tp).copied().flatten();
            tx.advance_checkpoint(name, &tp.topic, tp.partition, expected, *next).await?;
        }
        tx.commit().await?;

        let written: Vec<(TopicPartition, i64)> = next_offsets.into_iter().collect();
        for (tp, next) in &written {
            self.positions.insert(tp.clone(), Some(*next));
        }
        self.consumer.mirror_progress(&written);
        self.report.batches += 1;
        self.report.applied +=
            applicable.len() as u64 - dead.iter().filter(|d| d.reason_kind == "rejected").count() as u64;
        self.report.dead_lettered += dead.len() as u64;
        tracing::debug!(projection = name, events = self.batch.len(), dead_letters = dead.len(), "Batch written.");
        self.batch.clear();
        Ok(())
    }

    /// After being fenced: drop the batch and continue every partition from its stored offset.
    async fn reposition(&mut self) -> Result<(), WorkerError> {
        let mut partitions: Vec<TopicPartition> = self.batch.iter().map(ConsumedRecord::topic_partition).collect();
        partitions.sort();
        partitions.dedup();
        self.batch.clear();
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

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Decodes and validates a record; an error carries the dead-letter kind and reason.
fn decode(registry: &Registry, record: &ConsumedRecord) -> Result<ValidatedEvent, (&'static str, String)> {
    let Some(payload) = &record.payload else {
        return Err(("undecodable", "record has no value".into()));
    };
    registry.validate_slice(payload).map_err(|error| match &error {
        ContractError::Envelope(
            EnvelopeError::NotJson(_) | EnvelopeError::NotObject(_) | EnvelopeError::TooLarge { .. },
        ) => ("undecodable", error.to_string()),
        _ => match error.pointer() {
            pointer if pointer.is_empty() => ("invalid", error.to_string()),
            pointer => ("invalid", format!("{error} (at {pointer})")),
        },
    })
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
    }
}
