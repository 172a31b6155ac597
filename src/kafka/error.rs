use std::time::Duration;

use rdkafka::error::KafkaError;

/// What can go wrong talking to Kafka, in terms a caller can act on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot reach the Kafka brokers at {brokers} within {}s: {reason}", timeout.as_secs())]
    Unreachable { brokers: String, timeout: Duration, reason: String },
    #[error("topic `{0}` does not exist (create it with `eventline topics create`)")]
    UnknownTopic(String),
    #[error("topic `{topic}` has no partition {partition}")]
    UnknownPartition { topic: String, partition: i32 },
    #[error("the producer's queue is full")]
    QueueFull,
    #[error("cannot create topic `{topic}`: {reason}")]
    TopicCreation { topic: String, reason: String },
    #[error("cannot delete topic `{topic}`: {reason}")]
    TopicDeletion { topic: String, reason: String },
    #[error("delivery to `{topic}` failed: {reason}")]
    Delivery { topic: String, reason: String },
    /// librdkafka refused its configuration: a property eventline passed through from the
    /// user's settings (or the files they name) is wrong.
    #[error("invalid librdkafka settings (EVENTLINE_RDKAFKA_* or kafka.properties): {0}")]
    Settings(String),
    #[error("Kafka client error: {0}")]
    Client(KafkaError),
}

impl From<KafkaError> for Error {
    fn from(error: KafkaError) -> Self {
        match error {
            KafkaError::ClientConfig(_, description, _, _) => Self::Settings(description),
            KafkaError::ClientCreation(reason) => Self::Settings(reason),
            other => Self::Client(other),
        }
    }
}
