//! The process's metrics recorder: every `metrics::counter!`/`histogram!` in the layers lands
//! here and is served at `/metrics` in the Prometheus text format.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use eventline_http::MetricsText;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Upper bounds of the duration histograms, in seconds.
const SECONDS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// Upper bounds of the batch size histogram, in events.
const EVENTS: &[f64] = &[1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 5000.0];

struct Prometheus(PrometheusHandle);

impl MetricsText for Prometheus {
    fn render(&self) -> String {
        self.0.render()
    }
}

/// What `/metrics` says when metrics are turned off: a comment, which is valid text format.
struct TurnedOff;

impl MetricsText for TurnedOff {
    fn render(&self) -> String {
        "# eventline's metrics are turned off (EVENTLINE_METRICS=false)\n".to_string()
    }
}

static RECORDER: OnceLock<Arc<dyn MetricsText>> = OnceLock::new();

/// Installs the recorder, or with `enabled` false leaves every `metrics::` call a no-op. The
/// first call decides; call it before anything is counted, so nothing counted early is lost.
pub fn init(enabled: bool) -> Arc<dyn MetricsText> {
    RECORDER.get_or_init(|| if enabled { install() } else { Arc::new(TurnedOff) }).clone()
}

/// What `/metrics` renders: the installed recorder (installed now if [`init`] was not called).
pub fn recorder() -> Arc<dyn MetricsText> {
    init(true)
}

fn install() -> Arc<dyn MetricsText> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)
        .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_events".into()), EVENTS))
        .expect("the buckets are not empty")
        .install_recorder()
        .expect("no other metrics recorder is installed");
    // Histograms keep their recent samples until upkeep folds them in.
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(5));
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    Arc::new(Prometheus(handle))
}
