//! Topic administration and read-only inspection (reachability, watermarks).

use std::collections::btree_map::BTreeMap;
use std::collections::hash_map::{Entry, HashMap};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eventline_core::config::KafkaSettings;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;

use crate::client::{base_config, timeout, TracingContext};
use crate::inspector::Inspector;
use crate::Error;

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i32,
}

/// What happened to one requested topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicOutcome {
    Created,
    AlreadyExisted,
}

/// The offsets bounding one partition: `low` is the first retained record, `high` the offset
/// the next record will get (so `high - low` records are there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionWatermarks {
    pub partition: i32,
    pub low: i64,
    pub high: i64,
}

pub(crate) fn inspector(settings: &KafkaSettings) -> Result<BaseConsumer<TracingContext>, Error> {
    inspector_with(settings, TracingContext)
}

fn inspector_with<C: ConsumerContext>(settings: &KafkaSettings, context: C) -> Result<BaseConsumer<C>, Error> {
    let mut config: ClientConfig = base_config(settings, "eventline-admin");
    // A consumer that never joins its group: metadata, watermarks, and reads by assignment.
    config
        .set("group.id", "eventline-inspector")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false");
    Ok(config.create_with_context(context)?)
}

/// Fails with [`Error::Settings`] when librdkafka refuses the client settings (a misspelt
/// value, a CA file it cannot load, SASL without credentials): checked once at start, so a
/// mistake stops every command the same way instead of surfacing in whichever client comes first.
pub fn check_settings(settings: &KafkaSettings) -> Result<(), Error> {
    inspector(settings).map(drop)
}

/// Logs like [`TracingContext`] and keeps the last failure librdkafka reported, which says why
/// a broker could not be used (a refused certificate, failed authentication) where the failed
/// request only says "transport failure".
#[derive(Clone, Default)]
struct ProbeContext {
    last_failure: Arc<Mutex<Option<String>>>,
}

impl ProbeContext {
    fn note(&self, failure: &str) {
        *self.last_failure.lock().expect("not poisoned") = Some(failure.to_string());
    }
}

impl ClientContext for ProbeContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        if matches!(
            level,
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error
        ) {
            self.note(message);
        }
        TracingContext.log(level, facility, message)
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.note(reason);
        TracingContext.error(error, reason)
    }
}

impl ConsumerContext for ProbeContext {}

/// Fails with [`Error::Unreachable`] unless a broker answers a metadata request within `within`;
/// the reason carries what librdkafka last reported, when it did.
pub async fn check_reachable(settings: &KafkaSettings, within: Duration) -> Result<(), Error> {
    let settings = settings.clone();
    tokio::task::spawn_blocking(move || {
        let context = ProbeContext::default();
        let consumer = inspector_with(&settings, context.clone())?;
        consumer.fetch_metadata(None, timeout(within)).map(drop).map_err(|e| {
            // Errors reach the context when the client's queue is served.
            let _ = consumer.poll(Duration::ZERO);
            let reason = match context.last_failure.lock().expect("not poisoned").take() {
                Some(failure) => format!("{e}; the last failure: {failure}"),
                None => e.to_string(),
            };
            Error::Unreachable { brokers: settings.bootstrap_servers(), timeout: within, reason }
        })
    })
    .await
    .expect("metadata task does not panic")
}

/// Creates topics; one that already exists is reported, not an error.
pub async fn create_topics(
    settings: &KafkaSettings,
    specs: &[TopicSpec],
    within: Duration,
) -> Result<Vec<(String, TopicOutcome)>, Error> {
    check_reachable(settings, within).await?;
    let admin: AdminClient<TracingContext> =
        base_config(settings, "eventline-admin").create_with_context(TracingContext)?;
    let new_topics: Vec<NewTopic<'_>> = specs
        .iter()
        .map(|s| NewTopic::new(&s.name, s.partitions, TopicReplication::Fixed(s.replication_factor)))
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(timeout(within))).request_timeout(Some(timeout(within)));
    let results = admin.create_topics(&new_topics, &options).await?;
    let outcomes = results
        .into_iter()
        .map(|result| match result {
            Ok(name) => Ok((name, TopicOutcome::Created)),
            Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => Ok((name, TopicOutcome::AlreadyExisted)),
            Err((topic, code)) => Err(Error::TopicCreation { topic, reason: code.to_string() }),
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let names: Vec<String> = outcomes.iter().map(|(name, _)| name.clone()).collect();
    wait_for_leaders(settings, &names, within).await?;
    Ok(outcomes)
}

/// Waits until every partition of `topics` has a leader: a topic is created asynchronously,
/// and a worker started right after `topics create` must find it usable.
async fn wait_for_leaders(settings: &KafkaSettings, topics: &[String], within: Duration) -> Result<(), Error> {
    let (settings, topics) = (settings.clone(), topics.to_vec());
    tokio::task::spawn_blocking(move || {
        let consumer = inspector(&settings)?;
        let deadline = Instant::now() + within;
        for topic in &topics {
            loop {
                let metadata = consumer.fetch_metadata(Some(topic), timeout(within))?;
                let ready = metadata.topics().iter().find(|t| t.name() == topic).is_some_and(|t| {
                    t.error().is_none()
                        && !t.partitions().is_empty()
                        && t.partitions().iter().all(|p| p.error().is_none() && p.leader() >= 0)
                });
                if ready {
                    break;
                }
                if Instant::now() >= deadline {
                    return Err(Error::TopicCreation {
                        topic: topic.clone(),
                        reason: format!("its partitions have no leader after {}s", within.as_secs()),
                    });
                }
                std::thread::sleep(RETRY_PAUSE);
            }
        }
        Ok(())
    })
    .await
    .expect("metadata task does not panic")
}

/// How long to wait before asking again when a partition is between leaders.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// Errors a partition reports while its leadership settles (just created, a broker restarting):
/// asking again shortly succeeds.
fn leadership_settling(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::NotLeaderForPartition
                | RDKafkaErrorCode::LeaderNotAvailable
                | RDKafkaErrorCode::UnknownTopicOrPartition
        )
    )
}

/// The names of the cluster's topics that start with `prefix`, sorted.
pub async fn topics_with_prefix(
    settings: &KafkaSettings,
    prefix: &str,
    within: Duration,
) -> Result<Vec<String>, Error> {
    let (settings, prefix) = (settings.clone(), prefix.to_string());
    tokio::task::spawn_blocking(move || {
        let consumer = inspector(&settings)?;
        let metadata = consumer.fetch_metadata(None, timeout(within)).map_err(|e| Error::Unreachable {
            brokers: settings.bootstrap_servers(),
            timeout: within,
            reason: e.to_string(),
        })?;
        let mut names: Vec<String> =
            metadata.topics().iter().map(|t| t.name().to_string()).filter(|n| n.starts_with(&prefix)).collect();
        names.sort();
        Ok(names)
    })
    .await
    .expect("metadata task does not panic")
}

/// Deletes topics and their records; one that does not exist is not an error.
pub async fn delete_topics(settings: &KafkaSettings, names: &[String], within: Duration) -> Result<(), Error> {
    if names.is_empty() {
        return Ok(());
    }
    let admin: AdminClient<TracingContext> =
        base_config(settings, "eventline-admin").create_with_context(TracingContext)?;
    let options = AdminOptions::new().operation_timeout(Some(timeout(within))).request_timeout(Some(timeout(within)));
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    for result in admin.delete_topics(&names, &options).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
            Err((topic, code)) => return Err(Error::TopicDeletion { topic, reason: code.to_string() }),
        }
    }
    Ok(())
}

/// The watermarks of every partition of `topic`, in partition order.
pub async fn watermarks(
    settings: &KafkaSettings,
    topic: &str,
    within: Duration,
) -> Result<Vec<PartitionWatermarks>, Error> {
    Inspector::new(settings)?.watermarks(topic, within).await
}

pub(crate) fn watermarks_blocking(
    consumer: &BaseConsumer<TracingContext>,
    settings: &KafkaSettings,
    topic: &str,
    within: Duration,
) -> Result<Vec<PartitionWatermarks>, Error> {
    let metadata = consumer.fetch_metadata(Some(topic), timeout(within)).map_err(|e| Error::Unreachable {
        brokers: settings.bootstrap_servers(),
        timeout: within,
        reason: e.to_string(),
    })?;
    let Some(described) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Err(Error::UnknownTopic(topic.to_string()));
    };
    if described.error().is_some() || described.partitions().is_empty() {
        return Err(Error::UnknownTopic(topic.to_string()));
    }
    let mut partitions: Vec<i32> = described.partitions().iter().map(|p| p.id()).collect();
    partitions.sort_unstable();
    let deadline = Instant::now() + within;
    partitions
        .into_iter()
        .map(|partition| loop {
            match consumer.fetch_watermarks(topic, partition, timeout(within)) {
                Ok((low, high)) => return Ok(PartitionWatermarks { partition, low, high }),
                Err(error) if leadership_settling(&error) && Instant::now() < deadline => {
                    std::thread::sleep(RETRY_PAUSE)
                }
                Err(error) => return Err(error.into()),
            }
        })
        .collect()
}

/// The timestamp (ms since the epoch) of the record at each wanted (partition, offset), keyed
/// by that pair, for the positions whose record arrives within `within`.
pub async fn record_times(
    settings: &KafkaSettings,
    topic: &str,
    wanted: &[(i32, i64)],
    within: Duration,
) -> Result<HashMap<(i32, i64), i64>, Error> {
    Inspector::new(settings)?.record_times(topic, wanted, within).await
}

/// Several offsets of one partition are read one after the other (a partition has one position
/// at a time). The consumer is left unassigned, so a kept one fetches nothing in between.
pub(crate) fn record_times_blocking(
    consumer: &BaseConsumer<TracingContext>,
    topic: &str,
    wanted: &[(i32, i64)],
    within: Duration,
) -> Result<HashMap<(i32, i64), i64>, Error> {
    use rdkafka::message::Message;
    use rdkafka::{Offset, TopicPartitionList};
    let mut pending: BTreeMap<i32, BTreeSet<i64>> = BTreeMap::new();
    for &(partition, offset) in wanted {
        pending.entry(partition).or_default().insert(offset);
    }
    let deadline = Instant::now() + within;
    let mut times = HashMap::new();
    // Each round reads the lowest offset still wanted of every partition.
    while !pending.is_empty() && Instant::now() < deadline {
        let round: BTreeMap<i32, i64> =
            pending.iter_mut().filter_map(|(p, offsets)| offsets.pop_first().map(|o| (*p, o))).collect();
        pending.retain(|_, offsets| !offsets.is_empty());
        let mut tpl = TopicPartitionList::new();
        for (partition, offset) in &round {
            tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset))?;
        }
        consumer.assign(&tpl)?;
        let mut read = 0;
        while read < round.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let Some(Ok(message)) = consumer.poll(timeout(left)) else { continue };
            // The first record at or past the position (an offset may hold a transaction
            // marker, or have been compacted away).
            let Some(&offset) = round.get(&message.partition()) else { continue };
            if message.topic() != topic || message.offset() < offset {
                continue;
            }
            if let (Some(ms), Entry::Vacant(entry)) =
                (message.timestamp().to_millis(), times.entry((message.partition(), offset)))
            {
                entry.insert(ms);
                read += 1;
            }
        }
    }
    consumer.unassign()?;
    Ok(times)
}

/// For every partition of `topic`, the offset of the first record timestamped at or after `ms`
/// (ms since the epoch), or the end offset when there is none yet.
pub async fn offsets_for_time(
    settings: &KafkaSettings,
    topic: &str,
    ms: i64,
    within: Duration,
) -> Result<Vec<(i32, i64)>, Error> {
    use rdkafka::{Offset, TopicPartitionList};
    let marks = watermarks(settings, topic, within).await?;
    let (settings, topic) = (settings.clone(), topic.to_string());
    tokio::task::spawn_blocking(move || {
        let consumer = inspector(&settings)?;
        let mut tpl = TopicPartitionList::new();
        for mark in &marks {
            tpl.add_partition_offset(&topic, mark.partition, Offset::Offset(ms))?;
        }
        // The list holds timestamps; the broker answers each with the first offset at or after
        // it, or the end (-1) when no record is that recent.
        let answered = consumer.offsets_for_times(tpl, timeout(within))?;
        Ok(marks
            .iter()
            .map(|mark| {
                let offset = answered
                    .find_partition(&topic, mark.partition)
                    .and_then(|e| match e.offset() {
                        Offset::Offset(o) if o >= 0 => Some(o),
                        _ => None,
                    })
                    .unwrap_or(mark.high);
                (mark.partition, offset.clamp(mark.low, mark.high))
            })
            .collect())
    })
    .await
    .expect("the lookup task does not panic")
}
