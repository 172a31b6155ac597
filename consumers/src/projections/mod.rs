//! The [`Handler`] contract a Rust projection implements to plug into the runtime, the [`Apply`]
//! trait the runtime drives, and the object-safe [`Projection`] every command works with.
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
//! The reference application's projections are in the `eventline-reference` crate.

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use eventline_core::check::Problem;
use eventline_core::config::Settings;
use eventline_core::contract::ValidatedEvent;
use eventline_core::registry::{Registry, SealedFields, CATALOG_FILE};
use eventline_store::declarative::{DefinitionError, Migrated, ProjectionMigration};
use eventline_store::generations::{Generation, NewGeneration, StartPosition};
use eventline_store::{Store, StoreTx};
use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use crate::dlq;
use crate::runtime::{self, WorkerError, WorkerReport};

/// An event ready to apply: the validated event, the projection's own reading of its data
/// ([`Handler::decode`]), and the time the projection records for it.
#[derive(Debug, Clone)]
pub struct Applicable<E> {
    pub event: ValidatedEvent,
    pub payload: E,
    /// Where it was read: the Kafka topic (as named on the broker), partition and offset.
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
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
    /// The projection's typed reading of the events it handles.
    type Event: Clone + Send + Sync + 'static;

    /// The projection's name; its consumer group is `eventline.<NAME>`.
    const NAME: &'static str;
    /// The catalog topics it reads.
    const TOPICS: &'static [&'static str];
    /// Each event type it applies, with every data version it has been reviewed against. It
    /// receives them upcast to the current version.
    const HANDLES: &'static [(&'static str, &'static [u32])];
    /// The tables it owns (created by its migrations), copied into each rebuild generation.
    const TABLES: &'static [&'static str];
    /// The columns of its tables holding personal data, as `table.column`: the query API shows
    /// them in clear only to callers holding the `personal` scope, and audits each such read.
    const PERSONAL_COLUMNS: &'static [&'static str] = &[];
    /// The columns of its tables holding a data subject's id, as `table.column`: rows about that
    /// person (like a set of who was active each day). `eventline erase` replaces the subject's
    /// id there with a placeholder of its own in every generation, so counts over the rows stay
    /// exact and nothing links them to the person; a rebuild's cutover does the same.
    const SUBJECT_COLUMNS: &'static [&'static str] = &[];
    /// Its migrations, in version order (for example `include_str!` of numbered files), applied
    /// by `eventline migrate` and recorded per projection; an applied one must never change.
    const MIGRATIONS: &'static [Migration] = &[];
    /// Types on its topics it deliberately passes over, at any version.
    const IGNORES: &'static [&'static str] = &[];
    /// Whether it may start mid-stream (a replay or rebuild from a time or an offset): true when
    /// its rows are per time window, each exact once its window starts after the start, and
    /// false when a row folds an entity's whole history.
    const STARTS_MID_STREAM: bool = false;

    /// Reads a handled event's data (valid under its schema, at the current version) as
    /// [`Self::Event`]. An error sets the event aside as a dead letter with that reason.
    fn decode(event: &ValidatedEvent) -> Result<Self::Event, String>;

    /// Reads the rows these events touch, locking those it will rewrite.
    fn load(
        tx: &mut StoreTx,
        events: &[&Applicable<Self::Event>],
    ) -> impl Future<Output = Result<Self::State, eventline_store::Error>> + Send;

    /// Applies the events, in order, to the state. Pure.
    fn fold(state: Self::State, events: &[&Applicable<Self::Event>]) -> Folded<Self::State>;

    /// Writes the folded state.
    fn save(tx: &mut StoreTx, state: Self::State) -> impl Future<Output = Result<(), eventline_store::Error>> + Send;
}

/// One migration of a Rust projection.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i64,
    pub description: &'static str,
    pub sql: &'static str,
}

/// A Rust projection's migrations as the store applies them.
fn migrations_of<H: Handler>() -> Vec<ProjectionMigration> {
    H::MIGRATIONS
        .iter()
        .map(|m| ProjectionMigration {
            version: m.version,
            description: m.description.to_string(),
            path: format!("{} migration {} ({})", H::NAME, m.version, m.description),
            sql: m.sql.to_string(),
        })
        .collect()
}

/// What the runtime drives: one projection's way of applying a batch, whatever it is made of
/// (a Rust [`Handler`], or a declarative definition's SQL function).
pub trait Apply: Send + Sync + 'static {
    /// The projection's reading of an event it handles.
    type Event: Clone + Send + Sync + 'static;

    fn name(&self) -> &str;
    /// The catalog topics it reads.
    fn topics(&self) -> &[String];
    /// The tables it owns.
    fn tables(&self) -> &[String];
    /// Whether it applies events of this type (others on its topics are passed over).
    fn handles(&self, event_type: &str) -> bool;
    /// How it is handed the sealed personal fields of the events it reads: named (`elc1.`, what
    /// a personal column holds) when it declares personal columns, as carried otherwise.
    fn sealed_fields(&self) -> SealedFields;
    /// Reads a handled event; an error sets it aside as a dead letter with that reason.
    fn decode(&self, event: &ValidatedEvent) -> Result<Self::Event, String>;
    /// Applies `events`, in order, inside `tx`: `Ok` with no refusal when all of them are
    /// written; otherwise the position (in `events`) and reason of each event a domain rule
    /// refused, and nothing written. The runtime then calls again without the refused events
    /// and the later events of their keys.
    fn apply(
        &self,
        tx: &mut StoreTx,
        events: &[&Applicable<Self::Event>],
    ) -> impl Future<Output = Result<Vec<(usize, String)>, ApplyError>> + Send;
}

/// Why a batch could not be applied at all.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Store(#[from] eventline_store::Error),
    /// The projection's definition is broken (its function answered what it must not): the
    /// worker stops, nothing of the batch is written.
    #[error("projection {projection}: {reason}")]
    Definition { projection: String, reason: String },
}

/// How a projection with `personal_columns` is handed sealed personal fields: only one that
/// keeps them needs the form that names what each is bound to.
pub fn sealed_fields_for(personal_columns: &[String]) -> SealedFields {
    match personal_columns.is_empty() {
        true => SealedFields::AsCarried,
        false => SealedFields::Named,
    }
}

/// A projection as the runtime and the operator commands see it, whatever it is made of: a
/// Rust [`Handler`] ([`rust`]) or a declarative definition
/// ([`Declarative`](crate::declarative::Declarative)). Object safe, so an application lists its
/// projections in one [`Projections`].
pub trait Projection: Send + Sync + 'static {
    /// Its name; its consumer group is `eventline.<name>`.
    fn name(&self) -> &str;
    /// The catalog topics it reads (before any namespace prefix).
    fn topics(&self) -> &[String];
    /// The tables it owns, copied into each rebuild generation.
    fn tables(&self) -> &[String];
    /// The columns of its tables holding personal data, as `table.column`.
    fn personal_columns(&self) -> &[String];
    /// The columns of its tables holding a data subject's id, as `table.column`.
    fn subject_columns(&self) -> &[String];
    /// Whether it may be replayed or rebuilt from a time or an offset.
    fn starts_mid_stream(&self) -> bool;
    /// What is wrong between its declarations and the registry (see [`review`]).
    fn review(&self, registry: &Registry) -> Vec<Problem>;
    /// Applies its migrations and installs what it runs (`eventline migrate`).
    fn migrate<'a>(&'a self, store: &'a Store) -> BoxFuture<'a, Result<Migrated, DefinitionError>>;
    /// Creates its next generation, to rebuild it into beside the live one (see
    /// [`Store::create_generation`]).
    fn create_generation<'a>(
        &'a self,
        store: &'a Store,
        started_from: &'a str,
        positions: &'a [StartPosition],
    ) -> BoxFuture<'a, Result<Generation, DefinitionError>>;
    /// Runs its worker as a member of `group` (a rebuild has its own) until `shutdown`.
    fn run_in_group<'a>(
        &'a self,
        settings: &'a Settings,
        registry: Arc<Registry>,
        store: Store,
        group: String,
        shutdown: CancellationToken,
    ) -> BoxFuture<'a, Result<WorkerReport, WorkerError>>;
    /// Applies dead letters again (see [`crate::dlq`]); with `skip`, first drops that one.
    fn retry_dead_letters<'a>(
        &'a self,
        store: &'a Store,
        registry: &'a Registry,
        target: &'a dlq::Target,
        skip: Option<(i64, &'a str)>,
        actor: &'a str,
    ) -> BoxFuture<'a, Result<dlq::RetryReport, dlq::DlqError>>;
}

impl dyn Projection {
    /// Runs its worker in its own consumer group until `shutdown`.
    pub async fn run(
        &self,
        settings: &Settings,
        registry: Arc<Registry>,
        store: Store,
        shutdown: CancellationToken,
    ) -> Result<WorkerReport, WorkerError> {
        let group = settings.namespace.group_id(self.name());
        self.run_in_group(settings, registry, store, group, shutdown).await
    }
}

/// A Rust [`Handler`] as a [`Projection`].
pub fn rust<H: Handler>() -> Arc<dyn Projection> {
    Arc::new(RustProjection::<H>::new())
}

/// A Rust [`Handler`] as the runtime drives it.
pub struct RustProjection<H> {
    topics: Vec<String>,
    tables: Vec<String>,
    personal_columns: Vec<String>,
    subject_columns: Vec<String>,
    handler: PhantomData<fn() -> H>,
}

impl<H: Handler> RustProjection<H> {
    pub fn new() -> Self {
        Self {
            topics: H::TOPICS.iter().map(|t| t.to_string()).collect(),
            tables: H::TABLES.iter().map(|t| t.to_string()).collect(),
            personal_columns: H::PERSONAL_COLUMNS.iter().map(|c| c.to_string()).collect(),
            subject_columns: H::SUBJECT_COLUMNS.iter().map(|c| c.to_string()).collect(),
            handler: PhantomData,
        }
    }
}

impl<H: Handler> Default for RustProjection<H> {
    fn default() -> Self {
        Self::new()
    }
}

impl<H: Handler> Apply for RustProjection<H> {
    type Event = H::Event;

    fn name(&self) -> &str {
        H::NAME
    }

    fn topics(&self) -> &[String] {
        &self.topics
    }

    fn tables(&self) -> &[String] {
        &self.tables
    }

    fn handles(&self, event_type: &str) -> bool {
        H::HANDLES.iter().any(|(t, _)| *t == event_type)
    }

    fn sealed_fields(&self) -> SealedFields {
        sealed_fields_for(&self.personal_columns)
    }

    fn decode(&self, event: &ValidatedEvent) -> Result<H::Event, String> {
        H::decode(event)
    }

    /// Load, fold, and save unless the fold refused something (then the next call loads the
    /// same rows again: nothing was written).
    async fn apply(
        &self,
        tx: &mut StoreTx,
        events: &[&Applicable<H::Event>],
    ) -> Result<Vec<(usize, String)>, ApplyError> {
        let loaded = H::load(tx, events).await?;
        let folded = H::fold(loaded, events);
        if !folded.rejected.is_empty() {
            return Ok(folded.rejected);
        }
        H::save(tx, folded.state).await?;
        Ok(Vec::new())
    }
}

impl<H: Handler> Projection for RustProjection<H> {
    fn name(&self) -> &str {
        H::NAME
    }

    fn topics(&self) -> &[String] {
        &self.topics
    }

    fn tables(&self) -> &[String] {
        &self.tables
    }

    fn personal_columns(&self) -> &[String] {
        &self.personal_columns
    }

    fn subject_columns(&self) -> &[String] {
        &self.subject_columns
    }

    fn starts_mid_stream(&self) -> bool {
        H::STARTS_MID_STREAM
    }

    fn review(&self, registry: &Registry) -> Vec<Problem> {
        review::<H>(registry)
    }

    fn migrate<'a>(&'a self, store: &'a Store) -> BoxFuture<'a, Result<Migrated, DefinitionError>> {
        Box::pin(async move { store.migrate_projection(H::NAME, None, &self.tables, &migrations_of::<H>()).await })
    }

    fn create_generation<'a>(
        &'a self,
        store: &'a Store,
        started_from: &'a str,
        positions: &'a [StartPosition],
    ) -> BoxFuture<'a, Result<Generation, DefinitionError>> {
        Box::pin(async move {
            // Unversioned: the same code builds it, so its tables are copies of the live ones.
            let new = NewGeneration {
                projection: H::NAME,
                tables: &self.tables,
                declared_in: H::NAME,
                started_from,
                positions,
                version: None,
                migrations: &[],
            };
            store.create_generation(&new).await
        })
    }

    fn run_in_group<'a>(
        &'a self,
        settings: &'a Settings,
        registry: Arc<Registry>,
        store: Store,
        group: String,
        shutdown: CancellationToken,
    ) -> BoxFuture<'a, Result<WorkerReport, WorkerError>> {
        Box::pin(async move {
            let migrations = migrations_of::<H>();
            let migrating =
                eventline_store::availability::wait_out_unavailable("migrating the projection", &shutdown, || async {
                    store.ensure_projection_migrated(H::NAME, None, &migrations).await?;
                    store
                        .guard_subject_columns(&self.subject_columns, &self.personal_columns)
                        .await
                        .map_err(DefinitionError::from)
                });
            if migrating.await.map_err(|error| WorkerError::Definition(error.to_string()))?.is_none() {
                return Ok(WorkerReport::default());
            }
            runtime::run_in_group(Arc::new(Self::new()), settings, registry, store, group, shutdown).await
        })
    }

    fn retry_dead_letters<'a>(
        &'a self,
        store: &'a Store,
        registry: &'a Registry,
        target: &'a dlq::Target,
        skip: Option<(i64, &'a str)>,
        actor: &'a str,
    ) -> BoxFuture<'a, Result<dlq::RetryReport, dlq::DlqError>> {
        Box::pin(async move { dlq::retry(self, store, registry, target, skip, actor).await })
    }
}

/// The projections of an application, in the order it listed them; names are unique.
#[derive(Clone, Default)]
pub struct Projections(Vec<Arc<dyn Projection>>);

/// A name no projection of the application has.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown projection `{name}` (known: {known})")]
pub struct UnknownProjection {
    pub name: String,
    pub known: String,
}

impl Projections {
    /// Adds a projection; a second one with a taken name is refused.
    pub fn add(&mut self, projection: Arc<dyn Projection>) -> Result<(), String> {
        if self.get(projection.name()).is_some() {
            return Err(format!("two projections are named `{}`", projection.name()));
        }
        self.0.push(projection);
        Ok(())
    }

    pub fn all(&self) -> &[Arc<dyn Projection>] {
        &self.0
    }

    /// Keeps only the projections `keep` says yes to.
    pub fn retain(&mut self, keep: impl Fn(&dyn Projection) -> bool) {
        self.0.retain(|p| keep(&**p));
    }

    pub fn names(&self) -> Vec<&str> {
        self.0.iter().map(|p| p.name()).collect()
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn Projection>> {
        self.0.iter().find(|p| p.name() == name)
    }

    /// The projection named `name`, or an error that lists the known names.
    pub fn find(&self, name: &str) -> Result<Arc<dyn Projection>, UnknownProjection> {
        self.get(name)
            .cloned()
            .ok_or_else(|| UnknownProjection { name: name.to_string(), known: self.names().join(", ") })
    }
}

/// What is wrong between projection `H`'s declarations and the registry (see [`review_declared`]).
pub fn review<H: Handler>(registry: &Registry) -> Vec<Problem> {
    let handles: Vec<(String, Vec<u32>)> = H::HANDLES.iter().map(|(t, v)| (t.to_string(), v.to_vec())).collect();
    let declared = Declared {
        name: H::NAME,
        // A handler's declarations are code; problems with them are named by the catalog.
        declared_in: registry.shown_path(CATALOG_FILE),
        topics: &H::TOPICS.iter().map(|t| t.to_string()).collect::<Vec<_>>(),
        handles: &handles,
        ignores: &H::IGNORES.iter().map(|t| t.to_string()).collect::<Vec<_>>(),
    };
    review_declared(&declared, registry, |event| H::decode(event).map(|_| ()))
}

/// What a projection says it reads.
pub struct Declared<'a> {
    pub name: &'a str,
    /// Where the declarations are written, as problems with them name it.
    pub declared_in: String,
    pub topics: &'a [String],
    pub handles: &'a [(String, Vec<u32>)],
    pub ignores: &'a [String],
}

/// What is wrong between a projection's declarations and the registry: a handled type or
/// version the registry does not have, a handled type on a topic it does not read, a registered
/// version on its topics it neither handles nor ignores, and a registry example (brought up to
/// the current version) it cannot `decode`.
pub fn review_declared(
    declared: &Declared<'_>,
    registry: &Registry,
    decode: impl Fn(&ValidatedEvent) -> Result<(), String>,
) -> Vec<Problem> {
    let name = declared.name;
    let mut problems = Vec::new();
    let catalog = &declared.declared_in;
    for (event_type, versions) in declared.handles {
        let Some(contract) = registry.contract(event_type) else {
            problems.push(Problem {
                path: catalog.clone(),
                reason: format!("projection {name} handles {event_type}, which the registry does not know"),
            });
            continue;
        };
        for version in versions.iter().filter(|v| !contract.versions.contains_key(v)) {
            problems.push(Problem {
                path: catalog.clone(),
                reason: format!("projection {name} handles {event_type} v{version}, which the registry does not have"),
            });
        }
        if !declared.topics.contains(&contract.topic) {
            problems.push(Problem {
                path: catalog.clone(),
                reason: format!(
                    "projection {name} handles {event_type}, which travels on {}, a topic it does not read",
                    contract.topic
                ),
            });
        }
        for version in contract.versions.values() {
            let examples = version.schema.get("examples").and_then(serde_json::Value::as_array);
            for (index, example) in examples.into_iter().flatten().enumerate() {
                let envelope = serde_json::json!({
                    "specversion": "1.0", "id": "example", "source": "/schemas/check", "type": event_type,
                    "subject": example.get(&contract.key), "dataversion": version.version, "data": example,
                });
                // An example its schema refuses, or that upcasting breaks, is reported by the
                // registry's own check.
                let Ok(event) = registry.validate_slice(envelope.to_string().as_bytes()) else { continue };
                if !contract.versions[&contract.current()].accepts(event.data()) {
                    continue;
                }
                if let Err(reason) = decode(&event) {
                    problems.push(Problem {
                        path: registry.shown_path(&version.path),
                        reason: format!("example {index} does not fit projection {name}: {reason}"),
                    });
                }
            }
        }
    }
    for contract in registry.contracts().filter(|c| declared.topics.contains(&c.topic)) {
        if declared.ignores.contains(&contract.event_type) {
            continue;
        }
        let handled = declared.handles.iter().find(|(t, _)| *t == contract.event_type).map_or(&[][..], |(_, v)| v);
        for version in contract.versions.values().filter(|v| !handled.contains(&v.version)) {
            problems.push(Problem {
                path: registry.shown_path(&version.path),
                reason: format!(
                    "projection {name} reads {} but does not declare that it handles {} v{}",
                    contract.topic, contract.event_type, version.version
                ),
            });
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A handler whose declarations disagree with the shipped registry in every way `review` knows.
    struct Mistaken;

    impl Handler for Mistaken {
        type State = ();
        type Event = ();
        const NAME: &'static str = "mistaken";
        const TOPICS: &'static [&'static str] = &["activity.events"];
        const TABLES: &'static [&'static str] = &[];
        const HANDLES: &'static [(&'static str, &'static [u32])] =
            &[("accounts.Nope", &[1]), ("accounts.AccountClosed", &[1, 7]), ("activity.FeatureUsed", &[1])];

        fn decode(_: &ValidatedEvent) -> Result<(), String> {
            Err("no field `plan`".into())
        }
        async fn load(_: &mut StoreTx, _: &[&Applicable<()>]) -> Result<(), eventline_store::Error> {
            Ok(())
        }
        fn fold(state: (), _: &[&Applicable<()>]) -> Folded<()> {
            Folded { state, rejected: Vec::new() }
        }
        async fn save(_: &mut StoreTx, _: ()) -> Result<(), eventline_store::Error> {
            Ok(())
        }
    }

    #[test]
    fn review_names_every_disagreement_with_the_registry() {
        let registry =
            Registry::from_dir(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas")).unwrap();
        let reasons: Vec<String> = review::<Mistaken>(&registry).into_iter().map(|p| p.reason).collect();
        assert_eq!(
            reasons,
            [
                "projection mistaken handles accounts.Nope, which the registry does not know",
                "projection mistaken handles accounts.AccountClosed v7, which the registry does not have",
                "projection mistaken handles accounts.AccountClosed, which travels on accounts.events, a topic it does not read",
                "example 0 does not fit projection mistaken: no field `plan`",
                "example 0 does not fit projection mistaken: no field `plan`",
                "projection mistaken reads activity.events but does not declare that it handles activity.PageViewed v1",
            ]
        );
    }
}
