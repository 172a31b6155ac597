//! One task takes the status snapshot every open page shows: while any page listens, every
//! refresh period; otherwise only when a page is loaded and the last one is stale. The number of
//! open pages never changes how often the database and the broker are asked.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use eventline_api::status::BrokerConnection;
use eventline_api::status::{self, ProjectionStatus, Watched};
use eventline_store::Store;
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

/// How far back throughput is measured.
const THROUGHPUT_WINDOW: Duration = Duration::from_secs(60);
/// Longest a page load waits for a fresh snapshot before showing the last one.
const FRESH_WITHIN: Duration = Duration::from_secs(10);

/// The system as one snapshot saw it.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// When it was taken; `None` before the first.
    pub taken_at: Option<DateTime<Utc>>,
    /// Each projection, worst first.
    pub projections: Vec<ProjectionView>,
    /// How long taking it took.
    pub took: Duration,
    /// Why this snapshot could not be taken (the last good one's figures are gone with it: a
    /// stale number shown as current would mislead).
    pub error: Option<String>,
    /// Each live region rendered from it, by view: rendered once however many pages show it.
    rendered: std::sync::Mutex<HashMap<String, Arc<str>>>,
}

impl Snapshot {
    /// The live region `view` rendered from this snapshot by `render`, the first time it is asked.
    pub fn rendered(&self, view: &str, render: impl FnOnce(&Self) -> String) -> Arc<str> {
        if let Some(html) = self.rendered.lock().expect("never poisoned").get(view) {
            return html.clone();
        }
        // Rendered outside the lock; two pages asking at once may both render, harmlessly.
        let html: Arc<str> = render(self).into();
        self.rendered.lock().expect("never poisoned").insert(view.to_string(), html.clone());
        html
    }

    pub fn projection(&self, name: &str) -> Option<&ProjectionView> {
        self.projections.iter().find(|p| p.status.name == name)
    }
}

/// A projection's status with what only a series of snapshots can tell.
#[derive(Debug)]
pub struct ProjectionView {
    pub status: ProjectionStatus,
    /// Events applied per second over the last minute; `None` until two snapshots a second apart.
    pub throughput: Option<f64>,
    /// When a rebuild at its current pace catches up; `None` without a rebuild or progress.
    pub rebuild_eta: Option<Duration>,
}

impl ProjectionView {
    /// Worst first: a stuck partition, then the oldest unapplied event, then the most events
    /// behind, then dead letters.
    fn severity(&self) -> (usize, u64, i64, i64) {
        let s = &self.status;
        (s.unowned_partitions.len(), (s.lag_seconds * 1000.0) as u64, s.lag_events, s.dead_letters)
    }
}

/// The latest snapshot, and a way to ask for a fresh one.
#[derive(Clone)]
pub struct Snapshots {
    latest: Arc<watch::Sender<Arc<Snapshot>>>,
    wanted: Arc<Notify>,
    refresh: Duration,
    /// When an action last changed what snapshots show: one taken before is stale.
    changed_at: Arc<std::sync::Mutex<Option<DateTime<Utc>>>>,
}

impl Snapshots {
    /// Starts the task taking snapshots of `projections` until `shutdown`.
    pub fn start(
        store: Store,
        kafka: BrokerConnection,
        projections: Vec<Watched>,
        refresh: Duration,
        shutdown: CancellationToken,
    ) -> Self {
        let snapshots = Self {
            latest: Arc::new(watch::Sender::new(Arc::new(Snapshot::default()))),
            wanted: Arc::new(Notify::new()),
            refresh,
            changed_at: Arc::default(),
        };
        let taker = Taker { store, kafka, projections, history: HashMap::new() };
        tokio::spawn(taker.run(snapshots.clone(), shutdown));
        snapshots
    }

    /// The latest snapshot when it is fresh (see `is_fresh`); otherwise asks for one and waits
    /// for it (a while at most, then the stale one). A snapshot that was being taken when asked
    /// for is not fresh enough: waited past.
    pub async fn fresh(&self) -> Arc<Snapshot> {
        let deadline = tokio::time::Instant::now() + FRESH_WITHIN;
        let mut changes = self.latest.subscribe();
        loop {
            let latest = changes.borrow_and_update().clone();
            if self.is_fresh(&latest) {
                return latest;
            }
            self.wanted.notify_one();
            if !matches!(tokio::time::timeout_at(deadline, changes.changed()).await, Ok(Ok(()))) {
                return latest;
            }
        }
    }

    /// Whether `snapshot` is the latest a page open now would get anyway: while pages listen, a
    /// snapshot is taken a refresh period after the last one ended, so one younger than that
    /// (plus the time taking it takes) is current; and it must follow the last action.
    fn is_fresh(&self, snapshot: &Snapshot) -> bool {
        let Some(taken) = snapshot.taken_at else { return false };
        let changed = *self.changed_at.lock().expect("never poisoned");
        let young = (Utc::now() - taken).to_std().unwrap_or_default() < 2 * self.refresh + snapshot.took;
        young && changed.is_none_or(|changed| taken > changed)
    }

    /// Says an action just changed what snapshots show: the next page load takes a new one,
    /// and open pages get it now.
    pub fn changed(&self) {
        *self.changed_at.lock().expect("never poisoned") = Some(Utc::now());
        self.wanted.notify_one();
    }

    /// Every snapshot from now on, the latest first: what a live page listens to.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.latest.subscribe()
    }
}

/// The task's state: what it reads, and each projection's recent positions.
struct Taker {
    store: Store,
    kafka: BrokerConnection,
    projections: Vec<Watched>,
    history: HashMap<String, VecDeque<Sample>>,
}

/// Where a projection stood at one snapshot.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    applied: i64,
    rebuild_lag: Option<i64>,
}

impl Taker {
    async fn run(mut self, snapshots: Snapshots, shutdown: CancellationToken) {
        let mut ticks = tokio::time::interval(snapshots.refresh);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticks.tick() => {
                    // Nobody listening: no reason to ask the database and the broker.
                    if snapshots.latest.receiver_count() == 0 {
                        continue;
                    }
                }
                _ = snapshots.wanted.notified() => {}
            }
            let started = Instant::now();
            let mut snapshot = self.take().await;
            snapshot.took = started.elapsed();
            metrics::counter!("eventline_console_snapshots_total").increment(1);
            metrics::histogram!("eventline_console_snapshot_seconds").record(snapshot.took.as_secs_f64());
            snapshots.latest.send_replace(Arc::new(snapshot));
            ticks.reset();
        }
    }

    async fn take(&mut self) -> Snapshot {
        let taken_at = Some(Utc::now());
        let statuses = match status::collect(&self.store, &self.kafka, &self.projections).await {
            Ok(statuses) => statuses,
            Err(error) => {
                tracing::warn!(%error, "The console's status snapshot failed.");
                return Snapshot { taken_at, error: Some(error.to_string()), ..Snapshot::default() };
            }
        };
        let now = Instant::now();
        let mut projections: Vec<ProjectionView> =
            statuses.into_iter().map(|status| self.with_history(status, now)).collect();
        projections.sort_by(|a, b| b.severity().cmp(&a.severity()).then_with(|| a.status.name.cmp(&b.status.name)));
        Snapshot { taken_at, projections, ..Snapshot::default() }
    }

    /// `status` with its throughput and rebuild ETA, from the samples of the last window.
    fn with_history(&mut self, status: ProjectionStatus, now: Instant) -> ProjectionView {
        let sample = Sample {
            at: now,
            applied: status.partitions.iter().filter_map(|p| p.stored_offset).sum(),
            rebuild_lag: status.rebuild.as_ref().map(|r| r.lag_events),
        };
        let samples = self.history.entry(status.name.clone()).or_default();
        while samples.front().is_some_and(|oldest| now.duration_since(oldest.at) > THROUGHPUT_WINDOW) {
            samples.pop_front();
        }
        samples.push_back(sample);
        let oldest = samples.front().copied().expect("just pushed");
        let elapsed = now.duration_since(oldest.at).as_secs_f64();
        let throughput = (elapsed >= 1.0).then(|| (sample.applied - oldest.applied).max(0) as f64 / elapsed);
        let rebuild_eta = match (oldest.rebuild_lag, sample.rebuild_lag) {
            (Some(before), Some(now_lag)) if elapsed >= 1.0 && before > now_lag && now_lag > 0 => {
                let pace = (before - now_lag) as f64 / elapsed;
                Some(Duration::from_secs_f64(now_lag as f64 / pace))
            }
            _ => None,
        };
        ProjectionView { status, throughput, rebuild_eta }
    }
}
