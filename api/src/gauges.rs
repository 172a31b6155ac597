//! Freshness as Prometheus gauges: every few seconds, each projection's positions (the same
//! reading as `GET /v1/projections`) are set as gauges, so `/metrics` shows lag in events and in
//! seconds per projection and partition without the scrape waiting on the broker.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::status::{self, ProjectionStatus};
use crate::Api;

/// How often positions are read.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// Reads the positions of the projections `api` serves every [`SAMPLE_EVERY`] until
/// `shutdown`, setting the gauges each time.
pub async fn sample(api: Api, shutdown: CancellationToken) {
    let projections = api.served();
    let mut every = tokio::time::interval(SAMPLE_EVERY);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        match status::collect(&api.0.store, &api.0.kafka, &projections).await {
            Ok(statuses) => statuses.iter().for_each(set),
            // The gauges keep their last values; the status endpoint reports the cause.
            Err(error) => tracing::debug!(%error, "Cannot read positions for the gauges."),
        }
    }
}

fn set(status: &ProjectionStatus) {
    let projection = status.name.clone();
    metrics::gauge!("eventline_projection_dead_letters", "projection" => projection.clone())
        .set(status.dead_letters as f64);
    metrics::gauge!("eventline_projection_parked_keys", "projection" => projection.clone())
        .set(status.parked_keys as f64);
    metrics::gauge!("eventline_projection_generation", "projection" => projection.clone())
        .set(status.generation as f64);
    if let Some(members) = status.group_members {
        metrics::gauge!("eventline_projection_group_members", "projection" => projection.clone()).set(members as f64);
    }
    for p in &status.partitions {
        let labels =
            [("projection", projection.clone()), ("topic", p.topic.clone()), ("partition", p.partition.to_string())];
        if let Some(stored) = p.stored_offset {
            metrics::gauge!("eventline_projection_stored_offset", &labels).set(stored as f64);
        }
        metrics::gauge!("eventline_projection_end_offset", &labels).set(p.end_offset as f64);
        metrics::gauge!("eventline_projection_lag_events", &labels).set(p.lag_events as f64);
        if let Some(seconds) = p.lag_seconds {
            metrics::gauge!("eventline_projection_lag_seconds", &labels).set(seconds);
        }
        // Only when the group could be described: unknown is not "owned".
        if status.group_state.is_some() {
            metrics::gauge!("eventline_projection_partition_unowned", &labels).set(if p.unowned { 1.0 } else { 0.0 });
        }
    }
}
