//! Publishing validated events to their topics, keyed by entity, with CloudEvents headers.

use std::time::Duration;

use eventline_core::config::{Namespace, Settings};
use eventline_core::contract::ValidatedEvent;
use eventline_kafka::producer::{EventProducer, OutgoingRecord, PendingDelivery, Position};

/// How long a record may wait for the broker's acknowledgement before it counts as failed.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// Content type of a structured-mode CloudEvent in a Kafka record (the Kafka protocol binding).
pub const STRUCTURED_CONTENT_TYPE: &str = "application/cloudevents+json; charset=UTF-8";

/// Publishes [`ValidatedEvent`]s: only validated events can be handed to it.
pub struct Publisher {
    producer: EventProducer,
    namespace: Namespace,
}

impl Publisher {
    /// Connects to the brokers, failing within the configured connect timeout when none answers.
    pub async fn connect(settings: &Settings) -> Result<Self, eventline_kafka::Error> {
        let producer = EventProducer::connect(&settings.kafka, settings.connect_timeout, DELIVERY_TIMEOUT).await?;
        Ok(Self { producer, namespace: settings.namespace.clone() })
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

    async fn enqueue(&self, event: &ValidatedEvent) -> Result<PendingDelivery, eventline_kafka::Error> {
        let envelope = event.envelope();
        let payload = envelope.to_bytes();
        let topic = self.namespace.topic(event.topic());
        let dataversion = envelope.dataversion.to_string();
        let mut headers: Vec<(&str, &[u8])> = vec![
            ("content-type", STRUCTURED_CONTENT_TYPE.as_bytes()),
            ("ce_id", envelope.id.as_bytes()),
            ("ce_type", envelope.event_type.as_bytes()),
            ("ce_dataversion", dataversion.as_bytes()),
        ];
        if let Some(traceparent) = &envelope.traceparent {
            headers.push(("traceparent", traceparent.as_bytes()));
        }
        let record = OutgoingRecord { topic: &topic, key: event.key(), payload: &payload, headers: &headers };
        self.producer.enqueue(record).await
    }

    /// Waits for anything still in flight.
    pub async fn flush(&self) -> Result<(), eventline_kafka::Error> {
        self.producer.flush(DELIVERY_TIMEOUT).await
    }
}
