//! The projections eventline ships, and the [`Handler`] contract any projection implements to plug
//! into the runtime.
//!
//! A projection is three things: a name (its consumer group is `eventline.<name>`), the event
//! types it handles at each data version, and a handler that applies a batch inside the
//! transaction the runtime gives it, as load, fold, save:
//! - `load` reads (and locks) the rows the batch touches;
//! - `fold` applies the events to them in memory, in order, and names each event a domain rule
//!   refuses: it is pure, so the runtime can fold again without a refused event and the later
//!   events of its key, which it parks;
//! - `save` writes the result back with set-based statements.
//!
//! Its tables and queries live in the store layer (`src/store/projections/<name>/`).

pub mod account_balances;
pub mod daily_activity;
pub mod feature_usage_daily;
pub mod project_progress;

use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use eventline_core::check::Problem;
use eventline_core::config::Settings;
use eventline_core::contract::ValidatedEvent;
use eventline_core::registry::Registry;
use eventline_store::{Store, StoreTx};
use tokio_util::sync::CancellationToken;

use crate::dlq;
use crate::runtime::{self, WorkerError, WorkerReport};

/// An event ready to apply, with the time the projection records for it.
#[derive(Debug, Clone)]
pub struct Applicable {
    pub event: ValidatedEvent,
    /// The event's `time`, or the Kafka record's timestamp when it has none.
    pub time: DateTime<Utc>,
}

/// The result of folding a batch: the new state, and the position (in the slice given to
/// `fold`) and reason of each event a domain rule refused. A refused event changes nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct Folded<S> {
    pub state: S,
    pub rejected: Vec<(usize, String)>,
}

/// What a projection implements to plug into the runtime.
///
/// During a rebuild the same handler applies history into a new generation of its tables
/// ([`StoreTx::rebuilding`] says so): a handler with effects beyond its own tables (mail, calls
/// to other systems) must not repeat them then.
pub trait Handler: Send + Sync + 'static {
    /// The rows one batch touches, as loaded and then as folded.
    type State: Clone + Send + Sync;

    /// The projection's name; its consumer group is `eventline.<NAME>`.
    const NAME: &'static str;
    /// The catalog topics it reads.
    const TOPICS: &'static [&'static str];
    /// Each event type it applies, with every data version it has been reviewed against. It
    /// receives them upcast to the current version.
    const HANDLES: &'static [(&'static str, &'static [u32])];
    /// Types on its topics it deliberately passes over, at any version.
    const IGNORES: &'static [&'static str] = &[];
    /// Whether it may start mid-stream (a replay or rebuild from a time or an offset): true when
    /// its rows are per time window, each exact once its window starts after the start, and
    /// false when a row folds an entity's whole history.
    const STARTS_MID_STREAM: bool = false;

    /// Reads the rows these events touch, locking those it will rewrite.
    fn load(
        tx: &mut StoreTx,
        events: &[&Applicable],
    ) -> impl Future<Output = Result<Self::State, eventline_store::Error>> + Send;

    /// Applies the events, in order, to the state. Pure.
    fn fold(state: Self::State, events: &[&Applicable]) -> Folded<Self::State>;

    /// Writes the folded state.
    fn save(tx: &mut StoreTx, state: Self::State) -> impl Future<Output = Result<(), eventline_store::Error>> + Send;
}

/// The shipped projections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Projection {
    AccountBalances,
    ProjectProgress,
    DailyActivity,
    FeatureUsageDaily,
}

/// A projection's declarations, read from its handler.
#[derive(Debug, Clone, Copy)]
pub struct Declarations {
    pub name: &'static str,
    pub topics: &'static [&'static str],
    pub handles: &'static [(&'static str, &'static [u32])],
    pub ignores: &'static [&'static str],
    pub starts_mid_stream: bool,
}

fn declarations<H: Handler>() -> Declarations {
    Declarations {
        name: H::NAME,
        topics: H::TOPICS,
        handles: H::HANDLES,
        ignores: H::IGNORES,
        starts_mid_stream: H::STARTS_MID_STREAM,
    }
}

impl Projection {
    pub const ALL: &'static [Projection] =
        &[Self::AccountBalances, Self::ProjectProgress, Self::DailyActivity, Self::FeatureUsageDaily];

    pub fn declarations(self) -> Declarations {
        match self {
            Self::AccountBalances => declarations::<account_balances::AccountBalances>(),
            Self::ProjectProgress => declarations::<project_progress::ProjectProgress>(),
            Self::DailyActivity => declarations::<daily_activity::DailyActivity>(),
            Self::FeatureUsageDaily => declarations::<feature_usage_daily::FeatureUsageDaily>(),
        }
    }

    pub fn name(self) -> &'static str {
        self.declarations().name
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|p| p.name() == name)
    }

    /// The catalog topics it reads (before any namespace prefix).
    pub fn topics(self) -> &'static [&'static str] {
        self.declarations().topics
    }

    /// Whether it may be replayed or rebuilt from a time or an offset.
    pub fn starts_mid_stream(self) -> bool {
        self.declarations().starts_mid_stream
    }

    /// Runs this projection's worker until `shutdown`.
    pub async fn run(
        self,
        settings: &Settings,
        registry: Arc<Registry>,
        store: Store,
        shutdown: CancellationToken,
    ) -> Result<WorkerReport, WorkerError> {
        let group = settings.namespace.group_id(self.name());
        self.run_in_group(settings, registry, store, group, shutdown).await
    }

    /// Runs this projection's worker as a member of `group` (a rebuild has its own).
    pub async fn run_in_group(
        self,
        settings: &Settings,
        registry: Arc<Registry>,
        store: Store,
        group: String,
        shutdown: CancellationToken,
    ) -> Result<WorkerReport, WorkerError> {
        use runtime::run_in_group as run;
        match self {
            Self::AccountBalances => {
                run::<account_balances::AccountBalances>(settings, registry, store, group, shutdown).await
            }
            Self::ProjectProgress => {
                run::<project_progress::ProjectProgress>(settings, registry, store, group, shutdown).await
            }
            Self::DailyActivity => {
                run::<daily_activity::DailyActivity>(settings, registry, store, group, shutdown).await
            }
            Self::FeatureUsageDaily => {
                run::<feature_usage_daily::FeatureUsageDaily>(settings, registry, store, group, shutdown).await
            }
        }
    }

    /// Applies dead letters again (see [`crate::dlq`]); with `skip`, first drops that one.
    pub async fn retry_dead_letters(
        self,
        store: &Store,
        registry: &Registry,
        target: &dlq::Target,
        skip: Option<(i64, &str)>,
        actor: &str,
    ) -> Result<dlq::RetryReport, dlq::DlqError> {
        use dlq::retry;
        match self {
            Self::AccountBalances => {
                retry::<account_balances::AccountBalances>(store, registry, target, skip, actor).await
            }
            Self::ProjectProgress => {
                retry::<project_progress::ProjectProgress>(store, registry, target, skip, actor).await
            }
            Self::DailyActivity => retry::<daily_activity::DailyActivity>(store, registry, target, skip, actor).await,
            Self::FeatureUsageDaily => {
                retry::<feature_usage_daily::FeatureUsageDaily>(store, registry, target, skip, actor).await
            }
        }
    }

    /// Registered type versions on this projection's topics that it neither handles nor ignores.
    pub fn undeclared(self, registry: &Registry) -> Vec<Problem> {
        let declared = self.declarations();
        let mut problems = Vec::new();
        for contract in registry.contracts().filter(|c| declared.topics.contains(&c.topic.as_str())) {
            if declared.ignores.contains(&contract.event_type.as_str()) {
                continue;
            }
            let handled = declared.handles.iter().find(|(t, _)| *t == contract.event_type).map_or(&[][..], |(_, v)| *v);
            for version in contract.versions.values().filter(|v| !handled.contains(&v.version)) {
                problems.push(Problem {
                    path: registry.shown_path(&version.path),
                    reason: format!(
                        "projection {} reads {} but does not declare that it handles {} v{}",
                        declared.name, contract.topic, contract.event_type, version.version
                    ),
                });
            }
        }
        problems
    }
}

/// Whether `H` applies events of this type (others on its topics are passed over).
pub(crate) fn handles<H: Handler>(event_type: &str) -> bool {
    H::HANDLES.iter().any(|(t, _)| *t == event_type)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_projections_declare_every_registered_version() {
        let registry = Registry::embedded().unwrap();
        for &projection in Projection::ALL {
            assert_eq!(projection.undeclared(&registry), vec![], "{}", projection.name());
        }
    }

    #[test]
    fn names_are_unique_and_found() {
        let names: Vec<&str> = Projection::ALL.iter().map(|p| p.name()).collect();
        assert_eq!(names, ["account_balances", "project_progress", "daily_activity", "feature_usage_daily"]);
        assert_eq!(Projection::from_name("daily_activity"), Some(Projection::DailyActivity));
        assert_eq!(Projection::from_name("nope"), None);
    }
}
