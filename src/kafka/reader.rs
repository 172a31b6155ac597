//! Reading a topic outside any consumer group, from a chosen position, for people looking at
//! what is on it (`eventline tail`). Nothing is committed anywhere.

use std::collections::HashMap;
use std::time::Duration;

use eventline_core::config::KafkaSettings;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};

use crate::client::{base_config, timeout, TracingContext};
use crate::consumer::{to_record, ConsumedRecord};
use crate::{admin, Error};

/// Where reading starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// The earliest retained record of every partition.
    Beginning,
    /// After the last record of every partition: only new records.
    End,
    /// One partition, from this offset.
    Offset { partition: i32, offset: i64 },
    /// Every partition, from its first record timestamped at or after this (ms since the epoch).
    Time(i64),
}

/// A reader of one topic.
pub struct TopicReader {
    consumer: StreamConsumer<TracingContext>,
    /// Each read partition's end offset when the reader opened.
    ends: HashMap<i32, i64>,
    /// Each read partition's next offset to read.
    positions: HashMap<i32, i64>,
    /// With an end time: partitions are done at their first record timestamped at or after it.
    until: Option<i64>,
    /// Partitions that reached the end time.
    done: std::collections::HashSet<i32>,
}

impl TopicReader {
    pub async fn open(settings: &KafkaSettings, topic: &str, start: StartAt, within: Duration) -> Result<Self, Error> {
        let watermarks = admin::watermarks(settings, topic, within).await?;
        let mut config = base_config(settings, "eventline-tail");
        // A group id is required by the client, but the reader never joins it or commits.
        config
            .set("group.id", "eventline-tail")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false");
        let consumer: StreamConsumer<TracingContext> = config.create_with_context(TracingContext)?;

        let mut tpl = TopicPartitionList::new();
        let mut positions = HashMap::new();
        for w in &watermarks {
            let offset = match start {
                StartAt::Beginning => Some(w.low),
                StartAt::End => Some(w.high),
                StartAt::Offset { partition, offset } if partition == w.partition => Some(offset.clamp(w.low, w.high)),
                StartAt::Offset { .. } => None,
                StartAt::Time(ms) => Some(ms),
            };
            if let Some(offset) = offset {
                tpl.add_partition_offset(topic, w.partition, Offset::Offset(offset))?;
                positions.insert(w.partition, offset);
            }
        }
        if let StartAt::Offset { partition, .. } = start {
            if positions.is_empty() {
                return Err(Error::UnknownPartition { topic: topic.to_string(), partition });
            }
        }
        if let StartAt::Time(_) = start {
            // The list holds timestamps; the broker answers with the first offset at or after
            // each (or the end, -1, when there is none).
            let found = consumer.offsets_for_times(tpl, timeout(within))?;
            tpl = TopicPartitionList::new();
            for element in found.elements() {
                let end = watermarks.iter().find(|w| w.partition == element.partition()).map_or(0, |w| w.high);
                let offset = match element.offset() {
                    Offset::Offset(o) if o >= 0 => o,
                    _ => end,
                };
                tpl.add_partition_offset(topic, element.partition(), Offset::Offset(offset))?;
                positions.insert(element.partition(), offset);
            }
        }
        consumer.assign(&tpl)?;
        let ends =
            watermarks.iter().filter(|w| positions.contains_key(&w.partition)).map(|w| (w.partition, w.high)).collect();
        Ok(Self { consumer, ends, positions, until: None, done: Default::default() })
    }

    /// Ends each partition before its first record timestamped at or after `ms` (ms since the
    /// epoch), as Kafka's time index would: an export of a time range.
    pub fn until(mut self, ms: i64) -> Self {
        self.until = Some(ms);
        self
    }

    /// Whether every read partition has been read up to where it ended when the reader opened
    /// (or up to the end time).
    pub fn caught_up(&self) -> bool {
        self.ends.iter().all(|(partition, end)| {
            self.done.contains(partition) || self.positions.get(partition).is_some_and(|at| at >= end)
        })
    }

    /// The next record, waiting for one; with `stop_at_end`, `None` once [`Self::caught_up`].
    pub async fn next(&mut self, stop_at_end: bool) -> Result<Option<ConsumedRecord>, Error> {
        loop {
            if stop_at_end && self.caught_up() {
                return Ok(None);
            }
            let record = self.consumer.recv().await.map(|m| to_record(&m))?;
            self.positions.insert(record.partition, record.offset + 1);
            if self.done.contains(&record.partition) {
                continue;
            }
            if let (Some(until), Some(time)) = (self.until, record.timestamp_ms) {
                if time >= until {
                    self.done.insert(record.partition);
                    continue;
                }
            }
            return Ok(Some(record));
        }
    }
}

/// What [`read_through`] read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadThrough {
    pub records: u64,
    pub bytes: u64,
    /// From the first record to the last.
    pub elapsed: Duration,
}

/// Reads every record of `topic` from the start to the end it had when called, as fast as
/// librdkafka delivers them (a poll loop on one thread, records looked at in place, nothing
/// copied or decoded): the ceiling any consumer of the topic on this machine meets, which the
/// benchmarks print beside the workers' rates. Stops early when nothing arrives for `within`.
pub async fn read_through(settings: &KafkaSettings, topic: &str, within: Duration) -> Result<ReadThrough, Error> {
    let watermarks = admin::watermarks(settings, topic, within).await?;
    let (settings, topic) = (settings.clone(), topic.to_string());
    tokio::task::spawn_blocking(move || {
        let mut config = base_config(&settings, "eventline-read-through");
        config.set("group.id", "eventline-read-through").set("enable.auto.commit", "false");
        let consumer: BaseConsumer<TracingContext> = config.create_with_context(TracingContext)?;
        let mut tpl = TopicPartitionList::new();
        let mut left: u64 = 0;
        for w in watermarks.iter().filter(|w| w.high > w.low) {
            tpl.add_partition_offset(&topic, w.partition, Offset::Offset(w.low))?;
            left += (w.high - w.low) as u64;
        }
        consumer.assign(&tpl)?;
        let (mut records, mut bytes, mut first) = (0u64, 0u64, None);
        let mut last_record = std::time::Instant::now();
        while records < left && last_record.elapsed() < within {
            match consumer.poll(timeout(Duration::from_millis(100))) {
                Some(Ok(message)) => {
                    first.get_or_insert_with(std::time::Instant::now);
                    last_record = std::time::Instant::now();
                    records += 1;
                    bytes += message.payload_len() as u64;
                }
                Some(Err(error)) => return Err(error.into()),
                None => {}
            }
        }
        let elapsed = first.map_or(Duration::ZERO, |t| t.elapsed());
        Ok(ReadThrough { records, bytes, elapsed })
    })
    .await
    .expect("the read task does not panic")
}
