//! One broker connection kept for repeated status reads.
//!
//! A status read every second or two (the console's snapshots, the API's gauges) that opened a
//! new client each time would pay, on both sides, a connection, its TLS and SASL handshakes and a
//! metadata request per read; an [`Inspector`] pays them once and then only asks its questions.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventline_core::config::KafkaSettings;
use rdkafka::admin::AdminClient;
use rdkafka::consumer::BaseConsumer;

use crate::admin::{record_times_blocking, watermarks_blocking, PartitionWatermarks};
use crate::client::{base_config, TracingContext};
use crate::groups::{describe_with, GroupDescription};
use crate::Error;

/// A kept inspection client: cheap to clone, every clone shares its connections. Its calls run
/// one at a time (record reads move the consumer's single assignment).
#[derive(Clone)]
pub struct Inspector(Arc<Clients>);

struct Clients {
    settings: KafkaSettings,
    consumer: Mutex<BaseConsumer<TracingContext>>,
    admin: AdminClient<TracingContext>,
}

impl Inspector {
    /// Creates the clients; they connect on their first call. Fails only on settings librdkafka
    /// refuses.
    pub fn new(settings: &KafkaSettings) -> Result<Self, Error> {
        let mut config = base_config(settings, "eventline-admin");
        // A consumer that never joins its group, and reads one record per position: prefetch
        // nothing beyond it, and do not let that full queue postpone the next read's fetch by
        // librdkafka's default second.
        config
            .set("group.id", "eventline-inspector")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("queued.min.messages", "1")
            .set("fetch.queue.backoff.ms", "0");
        let consumer = config.create_with_context(TracingContext)?;
        let admin = base_config(settings, "eventline-admin").create_with_context(TracingContext)?;
        Ok(Self(Arc::new(Clients { settings: settings.clone(), consumer: Mutex::new(consumer), admin })))
    }

    /// As [`crate::admin::watermarks`].
    pub async fn watermarks(&self, topic: &str, within: Duration) -> Result<Vec<PartitionWatermarks>, Error> {
        let topic = topic.to_string();
        self.run(move |clients| {
            watermarks_blocking(&clients.consumer.lock().expect("not poisoned"), &clients.settings, &topic, within)
        })
        .await
    }

    /// As [`crate::admin::record_times`].
    pub async fn record_times(
        &self,
        topic: &str,
        wanted: &[(i32, i64)],
        within: Duration,
    ) -> Result<HashMap<(i32, i64), i64>, Error> {
        if wanted.is_empty() {
            return Ok(HashMap::new());
        }
        let (topic, wanted) = (topic.to_string(), wanted.to_vec());
        self.run(move |clients| {
            record_times_blocking(&clients.consumer.lock().expect("not poisoned"), &topic, &wanted, within)
        })
        .await
    }

    /// As [`crate::groups::describe`].
    pub async fn describe_groups(&self, groups: &[String], within: Duration) -> Result<Vec<GroupDescription>, Error> {
        if groups.is_empty() {
            return Ok(Vec::new());
        }
        let groups = groups.to_vec();
        self.run(move |clients| describe_with(&clients.admin, &clients.settings, &groups, within)).await
    }

    /// librdkafka's calls block: run one off the async workers.
    async fn run<T: Send + 'static>(&self, call: impl FnOnce(&Clients) -> T + Send + 'static) -> T {
        let clients = Arc::clone(&self.0);
        tokio::task::spawn_blocking(move || call(&clients)).await.expect("an inspection does not panic")
    }
}
