//! Publishing validated events to their topics, keyed by entity, with CloudEvents headers.

use std::time::Duration;

use std::sync::Arc;

use eventline_core::config::{Namespace, Settings};
use eventline_core::contract::{ContractError, ValidatedEvent};
use eventline_core::envelope::CloudEvent;
use eventline_core::registry::Registry;
use eventline_kafka::producer::{EventProducer, OutgoingRecord, PendingDelivery, Position};

use crate::sealing::{SealError, Sealer};

/// How long a record may wait for the broker's acknowledgement before it counts as failed.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// Content type of a structured-mode CloudEvent in a Kafka record (the Kafka protocol binding).
pub const STRUCTURED_CONTENT_TYPE: &str = "application/cloudevents+json; charset=UTF-8";

/// A record's topic, value and headers.
type RecordParts = (String, Vec<u8>, Vec<(&'static str, Vec<u8>)>);

/// Why one event of [`Publisher::publish_all_within`] was not published.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishFailure {
    #[error("the producer's queue is full")]
    QueueFull,
    #[error(
        "the broker did not acknowledge it in time (it may still arrive; publishing the same event id again is safe)"
    )]
    TimedOut,
    #[error("the broker refused it: {0}")]
    Rejected(String),
}

/// Why [`Publisher::publish_event`] or [`Publisher::publish_events`] published nothing.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// An event failed validation (with its index in the input); nothing was published.
    #[error("event {index}: {error}")]
    Invalid { index: usize, error: ContractError },
    #[error(transparent)]
    Kafka(#[from] eventline_kafka::Error),
    /// Personal data could not be sealed (an erased subject, or the key store); nothing was
    /// published.
    #[error(transparent)]
    Sealing(#[from] SealError),
}

/// The way in for Rust code: events are validated through the schema registry, then produced
/// with the idempotent producer (acks from all in-sync replicas), keyed by subject. Only
/// [`ValidatedEvent`]s reach Kafka.
pub struct Publisher {
    producer: EventProducer,
    namespace: Namespace,
    registry: Arc<Registry>,
    /// Seals personal fields in [`Publisher::publish_event`] and [`Publisher::publish_events`].
    sealer: Option<Sealer>,
}

impl Publisher {
    /// Connects to the brokers, failing within the configured connect timeout when none answers.
    pub async fn connect(settings: &Settings, registry: Arc<Registry>) -> Result<Self, eventline_kafka::Error> {
        let producer = EventProducer::connect(&settings.kafka, settings.connect_timeout, DELIVERY_TIMEOUT).await?;
        Ok(Self { producer, namespace: settings.namespace.clone(), registry, sealer: None })
    }

    /// Seals the personal fields of what [`Publisher::publish_event`] and
    /// [`Publisher::publish_events`] publish, as the gateway does with a key-encryption key.
    pub fn sealing(mut self, sealer: Sealer) -> Self {
        self.sealer = Some(sealer);
        self
    }

    async fn sealed(&self, events: Vec<ValidatedEvent>) -> Result<Vec<ValidatedEvent>, PublishError> {
        match &self.sealer {
            Some(sealer) => Ok(sealer.seal_all(events).await?),
            None => Ok(events),
        }
    }

    /// Validates and publishes one event; returns where it landed.
    pub async fn publish_event(&self, event: CloudEvent) -> Result<Position, PublishError> {
        let event = self.registry.validate(event).map_err(|error| PublishError::Invalid { index: 0, error })?;
        let event = self.sealed(vec![event]).await?.remove(0);
        Ok(self.publish(&event).await?)
    }

    /// Validates every event first (one invalid: nothing is published), then publishes them in
    /// order; returns each one's position.
    pub async fn publish_events(&self, events: Vec<CloudEvent>) -> Result<Vec<Position>, PublishError> {
        let validated =
            self.registry.validate_all(events).map_err(|(index, error)| PublishError::Invalid { index, error })?;
        let validated = self.sealed(validated).await?;
        let mut positions = Vec::with_capacity(validated.len());
        for result in self.publish_all(&validated).await {
            positions.push(result?);
        }
        Ok(positions)
    }

    /// Publishes one event and waits for the broker's acknowledgement.
    pub async fn publish(&self, event: &ValidatedEvent) -> Result<Position, eventline_kafka::Error> {
        self.enqueue(event).await?.acknowledged().await
    }

    /// Publishes events in order (per key, the order given is the order in the topic) and waits
    /// for every acknowledgement. Each event gets its own result: a failure of one does not hide
    /// the others' positions.
    pub async fn publish_all(&self, events: &[ValidatedEvent]) -> Vec<Result<Position, eventline_kafka::Error>> {
        let mut pending = Vec::with_capacity(events.len());
        for event in events {
            pending.push(self.enqueue(event).await);
        }
        let mut results = Vec::with_capacity(events.len());
        for delivery in pending {
            results.push(match delivery {
                Ok(delivery) => delivery.acknowledged().await,
                Err(error) => Err(error),
            });
        }
        results
    }

    /// Like [`Publisher::publish_all`] for callers that must answer promptly (the gateway): a full
    /// producer queue fails an event at once instead of waiting, and acknowledgements are awaited
    /// until `deadline` only. An event that timed out may still be delivered later.
    pub async fn publish_all_within(
        &self,
        events: &[ValidatedEvent],
        deadline: Duration,
    ) -> Vec<Result<Position, PublishFailure>> {
        let deadline = tokio::time::Instant::now() + deadline;
        let pending: Vec<Result<PendingDelivery, PublishFailure>> = events
            .iter()
            .map(|event| {
                let (topic, payload, headers) = self.record_parts(event);
                let headers: Vec<(&str, &[u8])> = headers.iter().map(|(k, v)| (*k, v.as_slice())).collect();
                let record = OutgoingRecord { topic: &topic, key: event.key(), payload: &payload, headers: &headers };
                self.producer.try_enqueue(record).map_err(|error| match error {
                    eventline_kafka::Error::QueueFull => PublishFailure::QueueFull,
                    other => PublishFailure::Rejected(other.to_string()),
                })
            })
            .collect();
        let mut results = Vec::with_capacity(pending.len());
        for delivery in pending {
            results.push(match delivery {
                Ok(delivery) => match tokio::time::timeout_at(deadline, delivery.acknowledged()).await {
                    Ok(Ok(position)) => Ok(position),
                    Ok(Err(error)) => Err(PublishFailure::Rejected(error.to_string())),
                    Err(_) => Err(PublishFailure::TimedOut),
                },
                Err(failure) => Err(failure),
            });
        }
        results
    }

    /// The topic, value and headers of an event's Kafka record.
    fn record_parts(&self, event: &ValidatedEvent) -> RecordParts {
        let envelope = event.envelope();
        let mut headers: Vec<(&'static str, Vec<u8>)> = vec![
            ("content-type", STRUCTURED_CONTENT_TYPE.as_bytes().to_vec()),
            ("ce_id", envelope.id.as_bytes().to_vec()),
            ("ce_type", envelope.event_type.as_bytes().to_vec()),
            ("ce_dataversion", envelope.dataversion.to_string().into_bytes()),
        ];
        if let Some(traceparent) = &envelope.traceparent {
            headers.push(("traceparent", traceparent.as_bytes().to_vec()));
        }
        (self.namespace.topic(event.topic()), envelope.to_bytes(), headers)
    }

    async fn enqueue(&self, event: &ValidatedEvent) -> Result<PendingDelivery, eventline_kafka::Error> {
        let (topic, payload, headers) = self.record_parts(event);
        let headers: Vec<(&str, &[u8])> = headers.iter().map(|(k, v)| (*k, v.as_slice())).collect();
        let record = OutgoingRecord { topic: &topic, key: event.key(), payload: &payload, headers: &headers };
        self.producer.enqueue(record).await
    }

    /// Waits for anything still in flight.
    pub async fn flush(&self) -> Result<(), eventline_kafka::Error> {
        self.producer.flush(DELIVERY_TIMEOUT).await
    }
}
