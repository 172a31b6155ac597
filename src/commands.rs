//! What each subcommand does: wiring settings to the layers, and reporting to the user.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{anyhow, Context};
use eventline_consumers::declarative::{self, Declarative};
use eventline_consumers::runtime::WorkerError;
use eventline_consumers::Projection;
use eventline_core::check;
use eventline_core::config::Settings;
use eventline_core::contract::ValidatedEvent;
use eventline_core::registry::{Registry, RegistryError};
use eventline_kafka::admin::{self, TopicOutcome, TopicSpec};
use eventline_producers::input;
use eventline_producers::loadgen::ExamplesTraffic;
use eventline_producers::publisher::Publisher;
use eventline_producers::sealing::{SealError, Sealer};
use eventline_reference::loadgen::{self, Domain};
use eventline_store::availability::wait_out_unavailable;
use eventline_store::declarative::Migrated;
use eventline_store::subject_keys::KeyRing;
use eventline_store::Store;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::cli::{LoadgenArgs, ProjectionsCheckArgs, PublishArgs, SchemasCheckArgs, TopicsCreateArgs};

/// A command line clap accepts but the application does not (an unknown projection).
pub const EXIT_USAGE: u8 = 2;
/// Exit code for input that was refused (sysexits' EX_DATAERR).
pub const EXIT_INVALID_INPUT: u8 = 65;
/// Exit code for work left partly done that running the command again completes (sysexits'
/// EX_TEMPFAIL).
pub const EXIT_INCOMPLETE: u8 = 75;
/// Exit code for a configuration that failed validation (sysexits' EX_CONFIG).
pub const EXIT_BAD_CONFIG: u8 = 78;

/// A failed command and the exit code it deserves.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub error: anyhow::Error,
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(error: E) -> Self {
        Self { code: 1, error: error.into() }
    }
}

pub type Outcome = Result<(), Failure>;

/// How an application builds the registry it carries in its binary.
pub type BuiltInRegistry = fn() -> Result<Registry, RegistryError>;

/// The application's built-in registry, if it has one: fixed once, at start, by `main_with`.
static BUILT_IN_REGISTRY: OnceLock<Option<BuiltInRegistry>> = OnceLock::new();

pub fn set_built_in_registry(registry: Option<BuiltInRegistry>) {
    // A second application in one process (tests) keeps the first one's: the same binary.
    let _ = BUILT_IN_REGISTRY.set(registry);
}

/// The registry `dir` holds, or the application's built-in one without a folder.
fn registry_at(dir: Option<&Path>) -> Result<Registry, Failure> {
    let loaded = match (dir, BUILT_IN_REGISTRY.get().copied().flatten()) {
        (Some(dir), _) => Registry::from_dir(dir),
        (None, Some(built_in)) => built_in(),
        (None, None) => {
            return Err(Failure {
                code: EXIT_BAD_CONFIG,
                error: anyhow!(
                    "no schema registry: this application has none built in; set EVENTLINE_SCHEMAS_DIR (or `schemas_dir` in the config file) to your registry's folder"
                ),
            })
        }
    };
    loaded.map_err(|error| Failure { code: EXIT_BAD_CONFIG, error: anyhow!("invalid schema registry: {error}") })
}

/// The schema registry this process validates with: `EVENTLINE_SCHEMAS_DIR`, or the
/// application's built-in one. A bad registry stops start-up, naming the file and the reason.
pub fn load_registry(settings: &Settings) -> Result<Arc<Registry>, Failure> {
    registry_at(settings.schemas_dir.as_deref()).map(Arc::new)
}

/// The key ring personal data is sealed and opened with, when a key-encryption key is set:
/// through `store` when the key store is reached as the same role, else through a connection of
/// its own (`EVENTLINE_KEYS_DATABASE_URL`, the role `eventline key-store isolate` gave the keys).
pub async fn key_ring(settings: &Settings, store: &Store) -> Result<Option<KeyRing>, Failure> {
    let Some(kek) = settings.key_encryption_key.clone() else { return Ok(None) };
    let keys = if settings.keys_database_url == settings.database_url {
        store.clone()
    } else {
        Store::connect(&settings.keys_database_url, 4, settings.connect_timeout).await?
    };
    Ok(Some(KeyRing::new(keys, kek)))
}

/// A worker must not start on a registry with versions its projection has not been reviewed
/// against: it would apply data it was never written for.
fn ensure_declared(registry: &Registry, projections: &[Arc<dyn Projection>]) -> Outcome {
    let problems: Vec<String> =
        projections.iter().flat_map(|p| p.review(registry)).map(|problem| problem.to_string()).collect();
    if problems.is_empty() {
        return Ok(());
    }
    Err(Failure { code: EXIT_BAD_CONFIG, error: anyhow!("invalid schema registry: {}", problems.join("; ")) })
}

pub fn schemas_check(args: &SchemasCheckArgs, projections: &[Arc<dyn Projection>]) -> Outcome {
    // A broken folder is this command's finding (exit 1), not a configuration error.
    let registry = match &args.dir {
        Some(dir) => Registry::from_dir(dir).map_err(|error| anyhow!("{error}"))?,
        None => registry_at(None)?,
    };
    let mut problems = check::check(&registry);
    for projection in projections {
        problems.extend(projection.review(&registry));
    }
    if !problems.is_empty() {
        for problem in &problems {
            eprintln!("error: {problem}");
        }
        return Err(anyhow!("{} problem(s) in the schema registry", problems.len()).into());
    }
    let types = registry.contracts().count();
    let schemas: usize = registry.contracts().map(|c| c.versions.len()).sum();
    let upcasters: usize = registry.contracts().map(|c| c.upcasters.len()).sum();
    println!(
        "schemas: {types} event types in {} domains, {schemas} schemas, {upcasters} upcaster(s); all checks passed",
        registry.catalog().domains().len()
    );
    Ok(())
}
pub async fn migrate(settings: &Settings, projections: &[Arc<dyn Projection>]) -> Outcome {
    let url = &settings.database_url;
    let created = eventline_store::create_database_if_missing(url, settings.connect_timeout).await?;
    if created {
        tracing::info!(database = url.database_name(), "Database created.");
    }
    let store = Store::connect(url, 2, settings.connect_timeout).await?;
    store.migrate().await?;
    for projection in projections {
        let migrated = projection.migrate(&store).await.map_err(|error| Failure {
            code: EXIT_BAD_CONFIG,
            error: anyhow!("projection {}: {error}", projection.name()),
        })?;
        match migrated {
            Migrated::Ran(0) => {}
            Migrated::Ran(ran) => tracing::info!(projection = projection.name(), migrations = ran, "Projection migrated."),
            Migrated::AwaitsRebuild { live } => println!(
                "projection {name}: the live generation is version {live}; this version is built beside it by `eventline rebuild start {name}` (its migrations run there, not on the live tables)",
                name = projection.name()
            ),
        }
    }
    store.close().await;
    println!("database {}: {}migrations applied", url.database_name(), if created { "created, " } else { "" });
    Ok(())
}

/// Checks declarative projections: loadable, consistent with the registry, and their SQL runs
/// (in a scratch database dropped afterwards).
pub async fn projections_check(
    settings: &Settings,
    args: &ProjectionsCheckArgs,
    existing: &[Arc<dyn Projection>],
) -> Outcome {
    let Some(dir) = args.dir.as_ref().or(settings.projections_dir.as_ref()) else {
        return Err(Failure {
            code: EXIT_USAGE,
            error: anyhow!("no projections to check: pass --dir or set EVENTLINE_PROJECTIONS_DIR"),
        });
    };
    let definitions = declarative::load_dir(dir).map_err(|error| anyhow!("{error}"))?;
    let registry = load_registry(settings)?;
    let mut problems: Vec<String> = Vec::new();
    let projections: Vec<Declarative> = definitions.into_iter().map(Declarative::new).collect();
    for projection in &projections {
        if existing.iter().any(|p| p.name() == Projection::name(projection)) {
            problems.push(format!(
                "{}: the application already has a projection named `{}`",
                projection.definition().manifest_path,
                Projection::name(projection)
            ));
        }
        problems.extend(projection.review(&registry).iter().map(ToString::to_string));
    }
    if problems.is_empty() {
        problems = check_in_scratch_database(settings, &projections).await?;
    }
    if !problems.is_empty() {
        for problem in &problems {
            eprintln!("error: {problem}");
        }
        return Err(anyhow!("{} problem(s) in the projection definitions", problems.len()).into());
    }
    let names: Vec<&str> = projections.iter().map(Projection::name).collect();
    println!("{} projection(s) checked: {}", names.len(), names.join(", "));
    Ok(())
}

/// Runs each definition's migrations and installs its function in a database of its own.
async fn check_in_scratch_database(settings: &Settings, projections: &[Declarative]) -> Result<Vec<String>, Failure> {
    let url = settings.database_url.with_database(&format!("eventline_check_{}", rand::random::<u32>()));
    eventline_store::create_database_if_missing(&url, settings.connect_timeout).await?;
    let store = Store::connect(&url, 2, settings.connect_timeout).await?;
    let mut problems = Vec::new();
    let outcome = store.migrate().await;
    if outcome.is_ok() {
        for projection in projections {
            if let Err(error) = projection.migrate(&store).await {
                problems.push(error.to_string());
            }
        }
    }
    store.close().await;
    eventline_store::drop_database(&url).await?;
    outcome?;
    Ok(problems)
}

pub async fn topics_create(settings: &Settings, args: &TopicsCreateArgs) -> Outcome {
    let specs: Vec<TopicSpec> = load_registry(settings)?
        .catalog()
        .domains()
        .iter()
        .map(|domain| TopicSpec {
            name: settings.namespace.topic(&domain.topic),
            partitions: args.partitions,
            replication_factor: args.replication_factor,
        })
        .collect();
    let outcomes = admin::create_topics(&settings.kafka, &specs, settings.connect_timeout).await?;
    for (topic, outcome) in outcomes {
        match outcome {
            TopicOutcome::Created => println!("created {topic} ({} partitions)", args.partitions),
            TopicOutcome::AlreadyExisted => println!("exists  {topic} (left as it is)"),
        }
    }
    Ok(())
}

pub async fn publish(settings: &Settings, args: &PublishArgs) -> Outcome {
    let registry = load_registry(settings)?;
    let mut input = Vec::new();
    let name = match &args.file {
        Some(path) if path.as_os_str() != "-" => {
            let mut file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
            file.read_to_end(&mut input).with_context(|| format!("cannot read {}", path.display()))?;
            path.display().to_string()
        }
        _ => {
            std::io::stdin().read_to_end(&mut input).context("cannot read standard input")?;
            "standard input".to_string()
        }
    };
    let events = match input::read_events(&input, &registry) {
        Ok(events) => events,
        Err(errors) => {
            for error in &errors {
                eprintln!("error: {name}: {error}");
            }
            return Err(Failure {
                code: EXIT_INVALID_INPUT,
                error: anyhow!("{name}: {} invalid event(s); nothing was published", errors.len()),
            });
        }
    };
    if events.is_empty() {
        println!("{name}: no events");
        return Ok(());
    }

    // With a key-encryption key, personal fields leave sealed, as through the gateway.
    let events = match settings.key_encryption_key.clone() {
        Some(kek) => {
            let store = Store::connect(&settings.keys_database_url, 2, settings.connect_timeout).await?;
            let sealer = Sealer::new(registry.clone(), KeyRing::new(store, kek));
            match sealer.seal_all(events).await {
                Ok(sealed) => sealed,
                Err(error @ SealError::Erased { .. }) => {
                    return Err(Failure {
                        code: EXIT_INVALID_INPUT,
                        error: anyhow!("{name}: {error}; nothing was published"),
                    })
                }
                Err(SealError::Keys(error)) => return Err(anyhow!(error).context("cannot seal personal data").into()),
            }
        }
        None => events,
    };
    let publisher = Publisher::connect(settings, registry.clone()).await?;
    let results = publisher.publish_all(&events).await;
    let mut stdout = std::io::stdout().lock();
    let mut failed = 0usize;
    for (event, result) in events.iter().zip(&results) {
        match result {
            Ok(position) if args.positions => {
                let line = serde_json::json!({
                    "id": event.envelope().id,
                    "topic": position.topic,
                    "partition": position.partition,
                    "offset": position.offset,
                });
                writeln!(stdout, "{line}")?;
            }
            Ok(_) => {}
            Err(error) => {
                failed += 1;
                eprintln!("error: event {}: {error}", event.envelope().id);
            }
        }
    }
    if failed > 0 {
        return Err(anyhow!("{failed} of {} events were not acknowledged by the broker", events.len()).into());
    }
    eprintln!("published {} events from {name}", events.len());
    Ok(())
}

/// `loadgen`'s events: from the user's samples, the reference domains' own generator (the
/// shipped application on its built-in registry), or any registry's schema examples.
pub async fn loadgen(
    settings: &Settings,
    args: &LoadgenArgs,
    reference_registry: bool,
    shutdown: CancellationToken,
) -> Outcome {
    let registry = load_registry(settings)?;
    let prefix = args.prefix.clone().unwrap_or_else(|| format!("demo{:04x}", rand_suffix()));
    let seed = args.seed.unwrap_or_else(|| u64::from(rand_suffix()));
    let keys = args.keys as usize;
    let traffic: Box<dyn Iterator<Item = ValidatedEvent> + Send> = match (&args.from, reference_registry) {
        (Some(path), _) => {
            let text = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            let name = path.display().to_string();
            let samples = input::read_events(&text, &registry).map_err(|errors| {
                for error in &errors {
                    eprintln!("error: {name}: {error}");
                }
                Failure {
                    code: EXIT_INVALID_INPUT,
                    error: anyhow!("{name}: {} invalid sample event(s); nothing was published", errors.len()),
                }
            })?;
            let samples = ExamplesTraffic::from_samples(registry.clone(), &samples, &prefix, keys, seed)
                .map_err(|reason| Failure { code: EXIT_INVALID_INPUT, error: anyhow!("{name}: {reason}") })?;
            Box::new(samples)
        }
        (None, true) => {
            let domain = match args.domain.as_deref().unwrap_or("accounts") {
                "accounts" => Domain::Accounts,
                "projects" => Domain::Projects,
                "activity" => Domain::Activity,
                "all" => Domain::All,
                other => {
                    return Err(Failure {
                        code: EXIT_USAGE,
                        error: anyhow!(
                            "unknown domain `{other}` (the built-in registry has: accounts, projects, activity, all)"
                        ),
                    })
                }
            };
            loadgen::traffic(registry.clone(), domain, &prefix, keys, seed)
        }
        (None, false) => {
            let known: Vec<&str> = registry.catalog().domains().iter().map(|d| d.name.as_str()).collect();
            let chosen: Vec<&str> = match args.domain.as_deref().unwrap_or("all") {
                "all" => known.clone(),
                name if known.contains(&name) => vec![name],
                other => {
                    return Err(Failure {
                        code: EXIT_USAGE,
                        error: anyhow!("unknown domain `{other}` (the registry has: {}, all)", known.join(", ")),
                    })
                }
            };
            let examples = ExamplesTraffic::new(registry.clone(), &chosen, &prefix, keys, seed).map_err(|reason| {
                Failure { code: EXIT_BAD_CONFIG, error: anyhow!("cannot generate traffic: {reason}") }
            })?;
            Box::new(examples)
        }
    };
    let mut traffic = traffic.take(args.events as usize);
    if args.ndjson {
        let mut stdout = std::io::stdout().lock();
        for event in traffic {
            writeln!(stdout, "{}", event.envelope().to_value())?;
        }
        return Ok(());
    }

    let publisher = Publisher::connect(settings, registry.clone()).await?;
    // Publish in slices of a tenth of a second, so a rate is kept without a timer per event.
    let slice = if args.rate == 0 { 1_000 } else { (args.rate / 10).max(1) as usize };
    let mut ticker = tokio::time::interval(Duration::from_millis(100));
    let mut published = 0usize;
    loop {
        let chunk: Vec<_> = traffic.by_ref().take(slice).collect();
        if chunk.is_empty() {
            break;
        }
        if args.rate > 0 {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = ticker.tick() => {}
            }
        }
        for result in publisher.publish_all(&chunk).await {
            result?;
        }
        published += chunk.len();
        tracing::debug!(published, "Published.");
    }
    eprintln!("published {published} events (ids prefixed {prefix})");
    Ok(())
}

/// Runs workers for `projections` until `shutdown`; any worker failing stops them all.
pub async fn workers(settings: &Settings, projections: &[Arc<dyn Projection>], shutdown: CancellationToken) -> Outcome {
    let registry = load_registry(settings)?;
    ensure_declared(&registry, projections)?;
    // A connection for each lane of each worker, and two for pruning and position checks.
    let connections = 2 + (projections.len() * settings.worker.lanes) as u32;
    let store = Store::connect(&settings.database_url, connections, settings.connect_timeout).await?;
    let migrated = wait_out_unavailable("checking migrations", &shutdown, || store.ensure_migrated());
    if migrated.await?.is_none() {
        return Ok(());
    }
    let mut tasks = JoinSet::new();
    for projection in projections {
        let (settings, projection) = (settings.clone(), projection.clone());
        let (store, registry, shutdown) = (store.clone(), registry.clone(), shutdown.clone());
        tasks.spawn(async move {
            let result = projection.run(&settings, registry, store, shutdown).await;
            (projection, result)
        });
    }
    let mut first_failure = None;
    while let Some(joined) = tasks.join_next().await {
        let (projection, result) = joined.context("a worker task panicked")?;
        if let Err(error) = result {
            tracing::error!(projection = projection.name(), %error, "Worker failed; stopping the others.");
            shutdown.cancel();
            // A broken projection definition is a configuration to fix, not a failure to retry.
            let code = if matches!(error, WorkerError::Definition(_)) { EXIT_BAD_CONFIG } else { 1 };
            let error = anyhow!(error).context(format!("worker {} failed", projection.name()));
            first_failure.get_or_insert(Failure { code, error });
        }
    }
    store.close().await;
    match first_failure {
        Some(failure) => Err(failure),
        None => Ok(()),
    }
}

fn rand_suffix() -> u16 {
    rand::random()
}
