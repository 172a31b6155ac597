//! A group consumer that starts every assigned partition where the caller's own store says.
//!
//! Kafka's committed offsets are informational for eventline: the truth is the offset stored in
//! PostgreSQL in the same transaction as the projection rows. So on every assignment, inside the
//! rebalance callback and before anything is fetched, the consumer asks a [`StartingOffsets`]
//! for each partition's position and assigns the partitions at exactly those offsets.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventline_core::config::{GroupProtocol, KafkaSettings};
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{Offset, TopicPartitionList};

use crate::client::{base_config, timeout, TracingContext};
use crate::{admin, Error};

/// One partition of one topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

/// Where a newly assigned partition must start reading.
pub trait StartingOffsets: Send + Sync + 'static {
    /// For each partition, the next offset to read, or `None` to start at the earliest retained
    /// record. Called from the rebalance callback; it may block, and should retry transient
    /// failures itself, because a partition cannot be assigned without its position.
    fn starting_offsets(&self, partitions: &[TopicPartition]) -> Vec<Option<i64>>;
}

/// A record as read from Kafka, owned.
#[derive(Debug, Clone)]
pub struct ConsumedRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    /// Milliseconds since the epoch, as the producer or broker set it.
    pub timestamp_ms: Option<i64>,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl ConsumedRecord {
    pub fn topic_partition(&self) -> TopicPartition {
        TopicPartition { topic: self.topic.clone(), partition: self.partition }
    }
}

/// What the consumer has to tell its caller, in the order it happened.
#[derive(Debug, Clone)]
pub enum ConsumerEvent {
    Record(ConsumedRecord),
    /// Partitions now owned, each with the offset it was started at (`None`: the earliest).
    Assigned(Vec<(TopicPartition, Option<i64>)>),
    /// Partitions no longer owned: anything read from them and not yet stored must be dropped.
    Revoked(Vec<TopicPartition>),
}

struct GroupContext {
    /// The consumer group, for log lines.
    group: String,
    starting: Arc<dyn StartingOffsets>,
    /// Rebalance outcomes noted in the callback, handed to the caller before the next record.
    pending: Mutex<VecDeque<ConsumerEvent>>,
    /// Wakes a caller waiting for a record when a rebalance was noted, so an assignment or a
    /// revocation is reported at once even on a topic where no record comes.
    rebalanced: tokio::sync::Notify,
}

impl ClientContext for GroupContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        TracingContext.log(level, facility, message)
    }

    fn error(&self, error: KafkaError, reason: &str) {
        TracingContext.error(error, reason)
    }
}

impl ConsumerContext for GroupContext {
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        let cooperative = matches!(consumer.rebalance_protocol(), RebalanceProtocol::Cooperative);
        let partitions: Vec<TopicPartition> = tpl
            .elements()
            .iter()
            .map(|e| TopicPartition { topic: e.topic().to_string(), partition: e.partition() })
            .collect();
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let offsets = self.starting.starting_offsets(&partitions);
                for (tp, offset) in partitions.iter().zip(&offsets) {
                    let offset = offset.map_or(Offset::Beginning, Offset::Offset);
                    if let Err(error) = tpl.set_partition_offset(&tp.topic, tp.partition, offset) {
                        tracing::error!(topic = %tp.topic, partition = tp.partition, %error, "Cannot set the starting offset.");
                    }
                }
                let assigned = if cooperative { consumer.incremental_assign(tpl) } else { consumer.assign(tpl) };
                if let Err(error) = assigned {
                    tracing::error!(%error, "Assigning partitions failed.");
                }
                let started: Vec<(TopicPartition, Option<i64>)> = partitions.into_iter().zip(offsets).collect();
                let described: Vec<String> = started
                    .iter()
                    .map(|(tp, offset)| match offset {
                        Some(offset) => format!("{}/{}@{offset}", tp.topic, tp.partition),
                        None => format!("{}/{}@earliest", tp.topic, tp.partition),
                    })
                    .collect();
                if !described.is_empty() {
                    tracing::info!(group = %self.group, partitions = ?described, "Partitions assigned.");
                }
                self.pending.lock().expect("not poisoned").push_back(ConsumerEvent::Assigned(started));
                self.rebalanced.notify_one();
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let described: Vec<String> =
                    partitions.iter().map(|tp| format!("{}/{}", tp.topic, tp.partition)).collect();
                if !described.is_empty() {
                    tracing::info!(group = %self.group, partitions = ?described, "Partitions revoked.");
                }
                self.pending.lock().expect("not poisoned").push_back(ConsumerEvent::Revoked(partitions));
                self.rebalanced.notify_one();
                let unassigned = if cooperative { consumer.incremental_unassign(tpl) } else { consumer.unassign() };
                if let Err(error) = unassigned {
                    tracing::error!(%error, "Unassigning partitions failed.");
                }
            }
            other => {
                tracing::warn!(error = ?other, "Rebalance failed; dropping the assignment until the group settles.");
                self.pending.lock().expect("not poisoned").push_back(ConsumerEvent::Revoked(partitions));
                self.rebalanced.notify_one();
                if let Err(error) = consumer.unassign() {
                    tracing::error!(%error, "Unassigning partitions failed.");
                }
            }
        }
    }
}

/// A member of a consumer group that reports records and rebalances as one ordered stream.
pub struct GroupConsumer {
    inner: StreamConsumer<GroupContext>,
    /// Events already taken from the client, waiting for the caller.
    held: VecDeque<ConsumerEvent>,
}

impl GroupConsumer {
    /// Joins `group_id` and subscribes to `topics`, which must exist.
    pub async fn subscribe(
        settings: &KafkaSettings,
        group_id: &str,
        topics: &[String],
        starting: Arc<dyn StartingOffsets>,
        connect_timeout: Duration,
    ) -> Result<Self, Error> {
        for topic in topics {
            admin::watermarks(settings, topic, connect_timeout).await?;
        }
        let mut config: ClientConfig = base_config(settings, group_id);
        config
            .set("group.id", group_id)
            // Offsets are stored in PostgreSQL; Kafka's commits only mirror them for tooling.
            .set("enable.auto.commit", "true")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", "read_committed")
            .set("group.protocol", settings.group_protocol.as_str());
        if settings.group_protocol == GroupProtocol::Classic {
            // Incremental rebalances: members keep what they own while partitions move. (The
            // consumer protocol is incremental by design, and its broker assigns.)
            config.set("partition.assignment.strategy", "cooperative-sticky");
        }
        // Bounds what is fetched ahead while a batch is being written (librdkafka's default,
        // 64 MiB, makes a worker behind a slow database weigh over 130 MB). Overridable.
        if !settings.properties.contains_key("queued.max.messages.kbytes") {
            config.set("queued.max.messages.kbytes", "16384");
        }
        // Once that bound is reached librdkafka postpones the partition's next fetch by this
        // (default 1 s): a reader faster than one fetch sat idle most of each second, and the
        // group consumer read 88,000 records/s instead of 390,000 (cargo bench --bench runtime).
        if !settings.properties.contains_key("fetch.queue.backoff.ms") {
            config.set("fetch.queue.backoff.ms", "20");
        }
        let context = GroupContext {
            group: group_id.to_string(),
            starting,
            pending: Mutex::new(VecDeque::new()),
            rebalanced: tokio::sync::Notify::new(),
        };
        let inner: StreamConsumer<GroupContext> = config.create_with_context(context)?;
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        inner.subscribe(&names)?;
        Ok(Self { inner, held: VecDeque::new() })
    }

    /// The next record or rebalance. Cancellation safe.
    pub async fn next(&mut self) -> Result<ConsumerEvent, Error> {
        loop {
            self.take_pending();
            if let Some(event) = self.held.pop_front() {
                return Ok(event);
            }
            // Rebalance callbacks run while `recv` polls; both futures are cancellation safe.
            let received = tokio::select! {
                record = self.inner.recv() => Some(record.map(|m| to_record(&m))),
                () = self.inner.context().rebalanced.notified() => None,
            };
            // A rebalance noted while receiving happened before this record was handed out.
            self.take_pending();
            match received {
                None => {}
                Some(Ok(record)) => self.held.push_back(ConsumerEvent::Record(record)),
                Some(Err(error)) => {
                    if self.held.is_empty() {
                        return Err(error.into());
                    }
                    tracing::warn!(%error, "Consumer error.");
                }
            }
        }
    }

    fn take_pending(&mut self) {
        let mut pending = self.inner.context().pending.lock().expect("not poisoned");
        self.held.extend(pending.drain(..));
    }

    /// Moves a partition's read position, e.g. after finding the store ahead of what was read.
    /// Records already fetched from the old position are discarded by the client.
    pub fn seek(&mut self, tp: &TopicPartition, next_offset: Option<i64>) -> Result<(), Error> {
        // Anything held from this partition predates the seek.
        self.held
            .retain(|e| !matches!(e, ConsumerEvent::Record(r) if r.topic == tp.topic && r.partition == tp.partition));
        let offset = next_offset.map_or(Offset::Beginning, Offset::Offset);
        self.inner.seek(&tp.topic, tp.partition, offset, timeout(Duration::from_secs(10)))?;
        Ok(())
    }

    /// Mirrors stored positions into Kafka's group offsets, for tools that read them.
    pub fn mirror_progress(&self, positions: &[(TopicPartition, i64)]) {
        let mut tpl = TopicPartitionList::new();
        for (tp, next_offset) in positions {
            if let Err(error) = tpl.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(*next_offset)) {
                tracing::debug!(%error, "Cannot mirror an offset.");
            }
        }
        if let Err(error) = self.inner.store_offsets(&tpl) {
            // Not owned any more, or the client is closing: the stored offset is what counts.
            tracing::debug!(%error, "Cannot mirror offsets to Kafka.");
        }
    }

    /// Leaves the group so the partitions move to other members at once, then closes the client.
    pub async fn close(self) {
        let inner = self.inner;
        tokio::task::spawn_blocking(move || {
            inner.unsubscribe();
            // Dropping the consumer commits the mirrored offsets and leaves the group.
            drop(inner);
        })
        .await
        .expect("closing the consumer does not panic");
    }
}

pub(crate) fn to_record(message: &BorrowedMessage<'_>) -> ConsumedRecord {
    let headers = message
        .headers()
        .map(|headers| {
            headers.iter().map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec).unwrap_or_default())).collect()
        })
        .unwrap_or_default();
    ConsumedRecord {
        topic: message.topic().to_string(),
        partition: message.partition(),
        offset: message.offset(),
        key: message.key().map(<[u8]>::to_vec),
        payload: message.payload().map(<[u8]>::to_vec),
        timestamp_ms: message.timestamp().to_millis(),
        headers,
    }
}
