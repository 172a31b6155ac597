//! Client configuration and the context every eventline Kafka client shares.

use std::time::Duration;

use eventline_core::config::KafkaSettings;
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;

/// Builds a librdkafka configuration: brokers, the user's passthrough properties, then what
/// eventline's guarantees depend on (set last so nothing overrides it).
pub(crate) fn base_config(settings: &KafkaSettings, client_id: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("client.id", client_id);
    // librdkafka's own default for `socket.timeout.ms`-bound requests is 60 s; make the first
    // connection attempt fail in time for our connect timeout to report it.
    config.set("socket.connection.setup.timeout.ms", "10000");
    for (key, value) in &settings.properties {
        config.set(key, value);
    }
    config.set("bootstrap.servers", settings.bootstrap_servers());
    config.set_log_level(RDKafkaLogLevel::Warning);
    config
}

/// Routes librdkafka's log lines and errors into `tracing`, at levels an operator acts on:
/// a broker that is briefly unreachable is a warning, not an error, because librdkafka retries.
#[derive(Clone, Default)]
pub(crate) struct TracingContext;

impl ClientContext for TracingContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        // One set of passthrough properties serves producers and consumers alike, so a consumer
        // property reaching a producer (or the reverse) is expected, not worth a warning.
        if facility == "CONFWARN" && message.contains("will be ignored by this") {
            tracing::debug!(target: "librdkafka", facility, "{message}");
            return;
        }
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", facility, "{message}")
            }
            RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", facility, "{message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", facility, "{message}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", facility, "{message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(target: "librdkafka", %error, "{reason}");
    }
}

/// Group-less consumers (metadata, watermarks) need no rebalance handling.
impl ConsumerContext for TracingContext {}

/// The `Timeout` librdkafka calls take, from a plain duration.
pub(crate) fn timeout(duration: Duration) -> rdkafka::util::Timeout {
    rdkafka::util::Timeout::After(duration)
}
