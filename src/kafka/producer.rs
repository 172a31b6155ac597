//! The idempotent producer: acks from all in-sync replicas, no duplicates from its own retries,
//! and records of one key kept in the order they were handed in.

use std::time::Duration;

use eventline_core::config::KafkaSettings;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;

use crate::client::{base_config, timeout, TracingContext};
use crate::{admin, Error};

/// Where a record landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// A record to produce.
#[derive(Debug, Clone, Copy)]
pub struct OutgoingRecord<'a> {
    pub topic: &'a str,
    pub key: &'a str,
    pub payload: &'a [u8],
    pub headers: &'a [(&'a str, &'a [u8])],
}

/// A record the client has accepted; await it for the broker's acknowledgement.
pub struct PendingDelivery {
    topic: String,
    future: DeliveryFuture,
    producer: FutureProducer<TracingContext>,
}

impl PendingDelivery {
    pub async fn acknowledged(self) -> Result<Position, Error> {
        let outcome = match self.future.await {
            Ok(Ok(delivery)) => {
                metrics::counter!("eventline_producer_acknowledged_total", "topic" => self.topic.clone()).increment(1);
                Ok(Position { topic: self.topic, partition: delivery.partition, offset: delivery.offset })
            }
            Ok(Err((error, _))) => Err(delivery_error(self.topic, error.to_string())),
            Err(_) => Err(delivery_error(self.topic, "the producer was shut down".into())),
        };
        // librdkafka still counts this record until its delivery report is served: not waiting.
        metrics::gauge!("eventline_producer_queue_messages")
            .set(f64::from((self.producer.in_flight_count() - 1).max(0)));
        outcome
    }
}

/// A failed delivery, counted by topic.
fn delivery_error(topic: String, reason: String) -> Error {
    metrics::counter!("eventline_producer_delivery_errors_total", "topic" => topic.clone()).increment(1);
    Error::Delivery { topic, reason }
}

/// Records waiting in the producer for the broker's acknowledgement.
fn record_queue_depth(producer: &FutureProducer<TracingContext>) {
    metrics::gauge!("eventline_producer_queue_messages").set(f64::from(producer.in_flight_count()));
}

fn future_record<'a>(record: &OutgoingRecord<'a>) -> FutureRecord<'a, str, [u8]> {
    let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
    for (key, value) in record.headers {
        headers = headers.insert(Header { key, value: Some(*value) });
    }
    FutureRecord::to(record.topic).key(record.key).payload(record.payload).headers(headers)
}

pub struct EventProducer {
    inner: FutureProducer<TracingContext>,
}

impl EventProducer {
    /// Creates the producer after checking a broker answers within `connect_timeout`.
    /// `delivery_timeout` bounds how long a record may wait for its acknowledgement.
    pub async fn connect(
        settings: &KafkaSettings,
        connect_timeout: Duration,
        delivery_timeout: Duration,
    ) -> Result<Self, Error> {
        admin::check_reachable(settings, connect_timeout).await?;
        let mut config = base_config(settings, "eventline-producer");
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            // The Java client's partitioner, so every producer of a topic agrees on key → partition.
            .set("partitioner", "murmur2_random")
            .set("linger.ms", "5")
            .set("message.timeout.ms", delivery_timeout.as_millis().to_string());
        Ok(Self { inner: config.create_with_context(TracingContext)? })
    }

    /// Hands a record to the client, waiting while its queue is full. Records handed in one after
    /// another keep that order within their partition.
    pub async fn enqueue(&self, record: OutgoingRecord<'_>) -> Result<PendingDelivery, Error> {
        let mut future_record = future_record(&record);
        loop {
            match self.inner.send_result(future_record) {
                Ok(future) => return Ok(self.pending(record.topic, future)),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    metrics::counter!("eventline_producer_queue_full_total").increment(1);
                    future_record = returned;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err((error, _)) => return Err(delivery_error(record.topic.to_string(), error.to_string())),
            }
        }
    }

    /// Hands a record to the client without waiting: a full queue is [`Error::QueueFull`], for
    /// callers that would rather tell their own caller to come back (the gateway's 503).
    pub fn try_enqueue(&self, record: OutgoingRecord<'_>) -> Result<PendingDelivery, Error> {
        match self.inner.send_result(future_record(&record)) {
            Ok(future) => Ok(self.pending(record.topic, future)),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                metrics::counter!("eventline_producer_queue_full_total").increment(1);
                Err(Error::QueueFull)
            }
            Err((error, _)) => Err(delivery_error(record.topic.to_string(), error.to_string())),
        }
    }

    /// A record the producer took, waiting for its acknowledgement.
    fn pending(&self, topic: &str, future: DeliveryFuture) -> PendingDelivery {
        record_queue_depth(&self.inner);
        PendingDelivery { topic: topic.to_string(), future, producer: self.inner.clone() }
    }

    /// Produces one record and waits for the acknowledgement.
    pub async fn send(&self, record: OutgoingRecord<'_>) -> Result<Position, Error> {
        self.enqueue(record).await?.acknowledged().await
    }

    /// Waits until everything handed in was acknowledged or failed.
    pub async fn flush(&self, within: Duration) -> Result<(), Error> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.flush(timeout(within)))
            .await
            .expect("flush does not panic")
            .map_err(Error::from)
    }
}
