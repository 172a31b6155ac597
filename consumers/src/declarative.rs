//! Declarative projections: a projection written as a folder of SQL, run by eventline with the
//! same guarantees as a Rust one, without building eventline again.
//!
//! ```text
//! <EVENTLINE_PROJECTIONS_DIR>/<name>/
//!   projection.toml   name, version, topics, tables, [handles], ignores, starts_mid_stream,
//!                     personal_columns, subject_columns
//!   migrations/       <version>_<description>.sql, applied once each, append-only
//!   apply.sql         CREATE FUNCTION apply(batch jsonb) RETURNS TABLE(ord int, reason text)
//! ```
//!
//! The runtime calls `apply` ONCE per batch, in the batch's transaction (the one that moves the
//! offsets), behind a savepoint. `batch` is a JSON array of the batch's events in offset order,
//! each `{ord, id, type, source, subject, key, time, topic, partition, offset, dataversion,
//! data}` with `ord` counting from 1 and `data` at the type's current version, its sealed
//! personal fields named (`elc1.`) when the definition declares `personal_columns` and as the
//! event carries them (`elc2.`) when it keeps no personal data. Each row the
//! function returns refuses the event at `ord` with `reason`: the runtime rolls back to the
//! savepoint and calls again without the refused events and the later events of their keys
//! (which become dead letters behind them, their keys parked), so other keys of the batch still
//! apply. An error the SQL raises for the data (a constraint, a bad value, a `RAISE`) is traced
//! to the first event that causes it by calling again on halves of the batch, and that event
//! alone is refused with the database's message. A function that answers what it must not (an
//! `ord` not in the batch, an empty reason) or fails for any other reason stops the worker with
//! nothing written.
//!
//! Each version's function is installed in a schema of its own (`eventline_apply_<name>_v<N>`)
//! and the runtime reaches it through the generation's dispatcher (see
//! [`eventline_store::declarative`]): a new `version` is not migrated onto the live tables but
//! built by `eventline rebuild start`, from all its migrations, in the new generation's schema,
//! running its own function beside the live one. The tables a function names are found through
//! the connection's `search_path`, which puts a rebuild's generation first.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use eventline_core::check::Problem;
use eventline_core::config::Settings;
use eventline_core::contract::ValidatedEvent;
use eventline_core::registry::{Registry, SealedFields};
use eventline_store::declarative::{DefinitionError, Migrated, ProjectionMigration};
use eventline_store::generations::{Generation, NewGeneration, StartPosition};
use eventline_store::{Store, StoreTx};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::dlq;
use crate::projections::{review_declared, Applicable, Apply, ApplyError, Declared, Projection};
use crate::runtime::{self, WorkerError, WorkerReport};

pub const MANIFEST_FILE: &str = "projection.toml";
pub const APPLY_FILE: &str = "apply.sql";
pub const MIGRATIONS_DIR: &str = "migrations";
/// Longest projection name: it is part of schema names (63 bytes at most in PostgreSQL).
const MAX_NAME: usize = 40;

/// A definition that cannot be loaded: the file and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    pub path: String,
    pub reason: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.reason)
    }
}

impl std::error::Error for LoadError {}

/// `projection.toml` as written; unknown keys are refused so typos surface.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    name: String,
    version: i32,
    topics: Vec<String>,
    tables: Vec<String>,
    #[serde(default)]
    ignores: Vec<String>,
    #[serde(default)]
    starts_mid_stream: bool,
    #[serde(default)]
    personal_columns: Vec<String>,
    #[serde(default)]
    subject_columns: Vec<String>,
    handles: BTreeMap<String, Vec<u32>>,
}

/// A loaded, well-formed definition (its SQL is checked against a database by `migrate` and
/// `projections check`).
#[derive(Debug, Clone)]
pub struct Definition {
    pub name: String,
    pub version: i32,
    pub topics: Vec<String>,
    pub tables: Vec<String>,
    /// Columns of its tables holding personal data, as `table.column`.
    pub personal_columns: Vec<String>,
    /// Columns of its tables holding a data subject's id, as `table.column`.
    pub subject_columns: Vec<String>,
    pub handles: Vec<(String, Vec<u32>)>,
    pub ignores: Vec<String>,
    pub starts_mid_stream: bool,
    pub migrations: Vec<ProjectionMigration>,
    pub apply_sql: String,
    /// `apply.sql` as the user would find it.
    pub apply_path: String,
    /// `projection.toml` as the user would find it.
    pub manifest_path: String,
}

fn shown(path: &Path) -> String {
    path.display().to_string()
}

fn error(path: &Path, reason: impl Into<String>) -> LoadError {
    LoadError { path: shown(path), reason: reason.into() }
}

fn read(path: &Path) -> Result<String, LoadError> {
    std::fs::read_to_string(path).map_err(|e| error(path, format!("cannot be read: {e}")))
}

/// A name PostgreSQL and Kafka take as it is: lowercase letters, digits and `_`, from a letter.
fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Loads every definition in `dir` (one subfolder each, in name order).
pub fn load_dir(dir: &Path) -> Result<Vec<Definition>, LoadError> {
    let entries = std::fs::read_dir(dir).map_err(|e| error(dir, format!("cannot be read: {e}")))?;
    let mut folders: Vec<PathBuf> = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| error(dir, format!("cannot be read: {e}")))?.path();
        if path.is_dir() {
            folders.push(path);
        }
    }
    folders.sort();
    folders.iter().map(|folder| load(folder)).collect()
}

/// A definition's files as text: what [`load`] reads from a folder, or what an application
/// embeds in its binary (`include_str!`) to ship declarative projections of its own.
#[derive(Debug, Clone)]
pub struct DefinitionFiles {
    /// The definition's folder, as errors name it; its last part is the projection's name.
    pub folder: PathBuf,
    /// `projection.toml`.
    pub manifest: String,
    /// Each file of `migrations/`: its name and contents.
    pub migrations: Vec<(String, String)>,
    /// `apply.sql`.
    pub apply: String,
}

/// Loads the definition in `folder`.
pub fn load(folder: &Path) -> Result<Definition, LoadError> {
    let manifest = read(&folder.join(MANIFEST_FILE))?;
    let dir = folder.join(MIGRATIONS_DIR);
    let entries = std::fs::read_dir(&dir).map_err(|e| error(&dir, format!("cannot be read: {e}")))?;
    let mut migrations = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| error(&dir, format!("cannot be read: {e}")))?.path();
        let file = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        migrations.push((file, read(&path)?));
    }
    let apply = read(&folder.join(APPLY_FILE))?;
    parse(DefinitionFiles { folder: folder.to_path_buf(), manifest, migrations, apply })
}

/// Checks a definition's files and makes them a [`Definition`]; every mistake is named by its
/// file.
pub fn parse(files: DefinitionFiles) -> Result<Definition, LoadError> {
    let folder = files.folder.as_path();
    let manifest_path = folder.join(MANIFEST_FILE);
    let manifest: Manifest =
        toml::from_str(&files.manifest).map_err(|e| error(&manifest_path, e.to_string().trim_end()))?;
    let bad = |reason: String| Err(error(&manifest_path, reason));
    if !is_identifier(&manifest.name) || manifest.name.len() > MAX_NAME {
        return bad(format!(
            "name `{}` must be lowercase letters, digits and `_`, start with a letter, and be at most {MAX_NAME} long",
            manifest.name
        ));
    }
    let folder_name = folder.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if folder_name != manifest.name {
        return bad(format!("the projection is named `{}` but its folder `{folder_name}`", manifest.name));
    }
    if manifest.version < 1 {
        return bad(format!("version must be a whole number from 1, not {}", manifest.version));
    }
    if manifest.topics.is_empty() {
        return bad("topics must name at least one catalog topic".into());
    }
    if manifest.tables.is_empty() {
        return bad("tables must name at least one table it owns".into());
    }
    if let Some(table) = manifest.tables.iter().find(|t| !is_identifier(t)) {
        return bad(format!("table `{table}` must be lowercase letters, digits and `_`, starting with a letter"));
    }
    for (setting, columns) in
        [("personal_columns", &manifest.personal_columns), ("subject_columns", &manifest.subject_columns)]
    {
        for column in columns {
            let declared = column
                .split_once('.')
                .is_some_and(|(table, name)| manifest.tables.iter().any(|t| t == table) && is_identifier(name));
            if !declared {
                return bad(format!(
                    "{setting}: `{column}` must be `<table>.<column>` of a table in `tables` ({})",
                    manifest.tables.join(", ")
                ));
            }
        }
    }
    if manifest.handles.is_empty() {
        return bad("[handles] must name at least one event type with its versions".into());
    }
    if let Some((event_type, _)) = manifest.handles.iter().find(|(_, versions)| versions.is_empty()) {
        return bad(format!("[handles] `{event_type}` lists no version"));
    }
    if let Some(both) = manifest.ignores.iter().find(|t| manifest.handles.contains_key(*t)) {
        return bad(format!("`{both}` is both handled and ignored"));
    }
    let migrations = parse_migrations(&folder.join(MIGRATIONS_DIR), files.migrations)?;
    Ok(Definition {
        name: manifest.name,
        version: manifest.version,
        topics: manifest.topics,
        tables: manifest.tables,
        personal_columns: manifest.personal_columns,
        subject_columns: manifest.subject_columns,
        handles: manifest.handles.into_iter().collect(),
        ignores: manifest.ignores,
        starts_mid_stream: manifest.starts_mid_stream,
        migrations,
        apply_sql: files.apply,
        apply_path: shown(&folder.join(APPLY_FILE)),
        manifest_path: shown(&manifest_path),
    })
}

/// The files of `dir` as `<version>_<description>.sql` migrations, in version order.
fn parse_migrations(dir: &Path, mut files: Vec<(String, String)>) -> Result<Vec<ProjectionMigration>, LoadError> {
    files.sort();
    let mut migrations: Vec<ProjectionMigration> = Vec::new();
    for (file, sql) in files {
        let path = dir.join(&file);
        let parsed = file
            .strip_suffix(".sql")
            .and_then(|stem| stem.split_once('_'))
            .and_then(|(version, description)| Some((version.parse::<i64>().ok()?, description)));
        let Some((version, description)) = parsed.filter(|(v, d)| *v > 0 && !d.is_empty()) else {
            return Err(error(
                &path,
                "a migration is named <version>_<description>.sql, the version a whole number from 1",
            ));
        };
        if let Some(same) = migrations.iter().find(|m| m.version == version) {
            return Err(error(&path, format!("version {version} is taken by {}", same.path)));
        }
        migrations.push(ProjectionMigration {
            version,
            description: description.replace('_', " "),
            path: shown(&path),
            sql,
        });
    }
    if migrations.is_empty() {
        return Err(error(dir, "needs at least one migration creating the projection's tables"));
    }
    migrations.sort_by_key(|m| m.version);
    Ok(migrations)
}

/// One event of the batch `apply` receives.
#[derive(Serialize)]
struct BatchEvent<'a> {
    ord: usize,
    id: &'a str,
    #[serde(rename = "type")]
    event_type: &'a str,
    source: &'a str,
    subject: Option<&'a str>,
    key: &'a str,
    time: String,
    topic: &'a str,
    partition: i32,
    offset: i64,
    dataversion: u32,
    data: &'a Value,
}

/// A declarative projection, as the runtime and the commands drive it.
#[derive(Clone)]
pub struct Declarative {
    definition: Arc<Definition>,
    handled: Arc<HashSet<String>>,
}

impl Declarative {
    pub fn new(definition: Definition) -> Self {
        let handled = definition.handles.iter().map(|(t, _)| t.clone()).collect();
        Self { definition: Arc::new(definition), handled: Arc::new(handled) }
    }

    pub fn definition(&self) -> &Definition {
        &self.definition
    }

    /// The batch as `apply` receives it, written straight to JSON text (no intermediate tree).
    fn batch_json(events: &[&Applicable<()>]) -> String {
        let batch: Vec<BatchEvent<'_>> = events
            .iter()
            .enumerate()
            .map(|(index, applicable)| {
                let envelope = applicable.event.envelope();
                BatchEvent {
                    ord: index + 1,
                    id: &envelope.id,
                    event_type: &envelope.event_type,
                    source: &envelope.source,
                    subject: envelope.subject.as_deref(),
                    key: applicable.event.key(),
                    // PostgreSQL keeps microseconds: cut here as a Rust projection's bound
                    // timestamp is, not rounded by the text cast.
                    time: applicable.time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                    topic: &applicable.topic,
                    partition: applicable.partition,
                    offset: applicable.offset,
                    dataversion: applicable.event.current_version(),
                    data: applicable.event.data(),
                }
            })
            .collect();
        serde_json::to_string(&batch).expect("a batch serializes")
    }

    /// Installs this version's function unless it is there already (see
    /// [`Store::install_apply`]), and the dispatcher beside the tables `store` writes if missing.
    async fn install(&self, store: &Store) -> Result<(), DefinitionError> {
        let definition = &self.definition;
        store
            .install_apply(&definition.name, definition.version, &definition.apply_path, &definition.apply_sql)
            .await?;
        store.ensure_dispatcher(&definition.name, definition.version).await
    }

    fn broken(&self, reason: String) -> ApplyError {
        ApplyError::Definition { projection: self.definition.name.clone(), reason }
    }

    /// One call of `apply` on `events`, behind the savepoint: the refusals it returned (checked),
    /// or its error. What it wrote is kept only when it refused nothing and `keep` is set.
    async fn call(
        &self,
        tx: &mut StoreTx,
        events: &[&Applicable<()>],
        keep: bool,
    ) -> Result<Vec<(usize, String)>, ApplyError> {
        let refusals = match tx.call_apply(&self.definition.name, &Self::batch_json(events)).await {
            Ok(refusals) => refusals,
            Err(error) => {
                tx.rollback_apply().await?;
                return Err(error.into());
            }
        };
        if refusals.is_empty() && keep {
            return Ok(Vec::new());
        }
        tx.rollback_apply().await?;
        let mut refused: Vec<(usize, String)> = Vec::new();
        for (ord, reason) in refusals {
            let Some(position) = usize::try_from(ord).ok().filter(|o| (1..=events.len()).contains(o)).map(|o| o - 1)
            else {
                return Err(self.broken(format!(
                    "{} returned ord {ord}, which is not in the batch (1..={})",
                    self.definition.apply_path,
                    events.len()
                )));
            };
            let Some(reason) = reason.filter(|r| !r.trim().is_empty()) else {
                return Err(self.broken(format!(
                    "{} refused the event at ord {ord} without a reason (reason must be a non-empty text)",
                    self.definition.apply_path
                )));
            };
            if !refused.iter().any(|(p, _)| *p == position) {
                refused.push((position, reason));
            }
        }
        refused.sort_by_key(|(p, _)| *p);
        Ok(refused)
    }

    /// The first event whose data makes `apply` fail, found by calling it on ever shorter
    /// prefixes of `events` (whose whole fails with `whole`), with the database's message.
    async fn first_failing(
        &self,
        tx: &mut StoreTx,
        events: &[&Applicable<()>],
        whole: String,
    ) -> Result<(usize, String), ApplyError> {
        let (mut shortest_failing, mut message) = (events.len(), whole);
        let mut longest_passing = 0;
        while longest_passing + 1 < shortest_failing {
            let middle = (longest_passing + shortest_failing) / 2;
            // A probe: whatever it writes is rolled back.
            match self.call(tx, &events[..middle], false).await {
                Ok(_) => longest_passing = middle,
                Err(ApplyError::Store(error)) if error.is_data_error() => {
                    shortest_failing = middle;
                    message = error.database_message();
                }
                Err(other) => return Err(other),
            }
        }
        Ok((shortest_failing - 1, format!("apply failed on this event: {message}")))
    }
}

impl Apply for Declarative {
    type Event = ();

    fn name(&self) -> &str {
        &self.definition.name
    }

    fn topics(&self) -> &[String] {
        &self.definition.topics
    }

    fn tables(&self) -> &[String] {
        &self.definition.tables
    }

    fn sealed_fields(&self) -> SealedFields {
        crate::projections::sealed_fields_for(&self.definition.personal_columns)
    }

    fn handles(&self, event_type: &str) -> bool {
        self.handled.contains(event_type)
    }

    fn decode(&self, _: &ValidatedEvent) -> Result<(), String> {
        // The function reads the validated JSON itself.
        Ok(())
    }

    async fn apply(&self, tx: &mut StoreTx, events: &[&Applicable<()>]) -> Result<Vec<(usize, String)>, ApplyError> {
        match self.call(tx, events, true).await {
            Err(ApplyError::Store(error)) if error.is_data_error() => {
                let (position, reason) = self.first_failing(tx, events, error.database_message()).await?;
                Ok(vec![(position, reason)])
            }
            Err(ApplyError::Store(error))
                if !error.is_transient() && !matches!(error, eventline_store::Error::Fenced { .. }) =>
            {
                Err(self.broken(format!("{} failed: {}", self.definition.apply_path, error.database_message())))
            }
            other => other,
        }
    }
}

impl Projection for Declarative {
    fn name(&self) -> &str {
        &self.definition.name
    }

    fn topics(&self) -> &[String] {
        &self.definition.topics
    }

    fn tables(&self) -> &[String] {
        &self.definition.tables
    }

    fn personal_columns(&self) -> &[String] {
        &self.definition.personal_columns
    }

    fn subject_columns(&self) -> &[String] {
        &self.definition.subject_columns
    }

    fn starts_mid_stream(&self) -> bool {
        self.definition.starts_mid_stream
    }

    fn review(&self, registry: &Registry) -> Vec<Problem> {
        let definition = &self.definition;
        let declared = Declared {
            name: &definition.name,
            declared_in: definition.manifest_path.clone(),
            topics: &definition.topics,
            handles: &definition.handles,
            ignores: &definition.ignores,
        };
        review_declared(&declared, registry, |_| Ok(()))
    }

    fn migrate<'a>(&'a self, store: &'a Store) -> BoxFuture<'a, Result<Migrated, DefinitionError>> {
        Box::pin(async move {
            let definition = &self.definition;
            let migrated = store
                .migrate_projection(
                    &definition.name,
                    Some(definition.version),
                    &definition.tables,
                    &definition.migrations,
                )
                .await?;
            if let Migrated::Ran(_) = migrated {
                store.check_tables(&definition.manifest_path, &definition.tables).await?;
                let mut declared = Vec::new();
                for (setting, columns) in [
                    ("personal_columns", &definition.personal_columns),
                    ("subject_columns", &definition.subject_columns),
                ] {
                    declared.extend(columns.iter().map(|column| (setting, column.clone())));
                }
                for (setting, declared) in declared {
                    let (table, column) = declared.split_once('.').expect("checked when loaded");
                    let shape = store.table_shape(table).await?;
                    if shape.is_none_or(|shape| shape.column(column).is_none()) {
                        return Err(DefinitionError::Table {
                            path: definition.manifest_path.clone(),
                            table: table.to_string(),
                            reason: format!("has no column `{column}`, which {setting} names"),
                        });
                    }
                }
            }
            self.install(store).await?;
            Ok(migrated)
        })
    }

    fn create_generation<'a>(
        &'a self,
        store: &'a Store,
        started_from: &'a str,
        positions: &'a [StartPosition],
    ) -> BoxFuture<'a, Result<Generation, DefinitionError>> {
        Box::pin(async move {
            let definition = &self.definition;
            self.install(store).await?;
            let new = NewGeneration {
                projection: &definition.name,
                tables: &definition.tables,
                declared_in: &definition.manifest_path,
                started_from,
                positions,
                version: Some(definition.version),
                migrations: &definition.migrations,
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
            let definition = &self.definition;
            let ready = eventline_store::availability::wait_out_unavailable(
                "migrating and installing the projection",
                &shutdown,
                || async {
                    store
                        .ensure_projection_migrated(&definition.name, Some(definition.version), &definition.migrations)
                        .await?;
                    store
                        .guard_subject_columns(&definition.subject_columns, &definition.personal_columns)
                        .await
                        .map_err(DefinitionError::from)?;
                    self.install(&store).await
                },
            );
            if ready.await.map_err(|error| WorkerError::Definition(error.to_string()))?.is_none() {
                return Ok(WorkerReport::default());
            }
            runtime::run_in_group(Arc::new(self.clone()), settings, registry, store, group, shutdown).await
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
        Box::pin(async move {
            self.install(store).await.map_err(|error| dlq::DlqError::Definition(error.to_string()))?;
            dlq::retry(self, store, registry, target, skip, actor).await
        })
    }
}
