//! # eventline
//!
//! The `eventline` command as a library: an application lists its projections in an [`App`]
//! and hands it to [`main_with`], which parses the command line, loads settings, sets up
//! telemetry and runs one subcommand for those projections. The shipped binary is
//! `main_with(App::reference())`; a user's crate builds its own the same way:
//!
//! ```no_run
//! # use eventline::App;
//! # use eventline_reference::daily_activity::DailyActivity as Mine;
//! fn main() -> std::process::ExitCode {
//!     eventline::main_with(App::new().projection::<Mine>())
//! }
//! ```
//!
//! The work itself lives in the layer crates; see ARCHITECTURE.md.

mod cli;
mod commands;
mod ingest;
mod metrics;
mod operate;
mod serve;

use std::process::ExitCode;

use std::sync::Arc;

use eventline_consumers::declarative::{self, Declarative};
use eventline_consumers::projections::{self, Handler, Projection, Projections};
use eventline_core::catalog::Catalog;
use eventline_core::config::Settings;
use eventline_core::registry::CATALOG_FILE;
use eventline_core::telemetry;
use tokio_util::sync::CancellationToken;

use crate::cli::{
    AuditCommand, Cli, Command, KeyStoreCommand, KeysCommand, ProjectionsCommand, SchemasCommand, TopicsCommand,
};
use crate::commands::{Failure, EXIT_BAD_CONFIG, EXIT_USAGE};
use crate::serve::Parts;

/// An application: the projections its `eventline` command runs and operates.
#[derive(Clone, Default)]
pub struct App {
    projections: Projections,
    /// Query endpoints of its own, added to the query API's.
    api_routes: Vec<eventline_api::Routes>,
    /// Whether its projections are the reference examples, which take part only where the
    /// registry carries their topics.
    examples: bool,
    /// The registry it carries in its binary, used when `EVENTLINE_SCHEMAS_DIR` is not set.
    registry: Option<commands::BuiltInRegistry>,
    /// Mistakes in how the application was put together, reported at start.
    problems: Vec<String>,
}

impl App {
    /// An application with no projection yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The shipped reference application: the reference domains' registry and their four
    /// projections.
    pub fn reference() -> Self {
        let mut app = Self {
            examples: true,
            api_routes: vec![eventline_reference::api::routes],
            registry: Some(eventline_reference::registry),
            ..Self::default()
        };
        for projection in eventline_reference::projections() {
            app = app.with(projection);
        }
        app
    }

    /// Adds a Rust projection.
    pub fn projection<H: Handler>(self) -> Self {
        self.with(projections::rust::<H>())
    }

    /// Builds `registry` into the application: its event types when `EVENTLINE_SCHEMAS_DIR` is
    /// not set (without one, that setting is required).
    pub fn registry(mut self, registry: commands::BuiltInRegistry) -> Self {
        self.registry = Some(registry);
        self
    }

    /// Adds query endpoints of the application's own (beside `/v1/tables` and `/v1/projections`).
    pub fn routes(mut self, routes: eventline_api::Routes) -> Self {
        self.api_routes.push(routes);
        self
    }

    /// Adds a projection of any kind.
    pub fn with(mut self, projection: Arc<dyn Projection>) -> Self {
        if let Err(problem) = self.projections.add(projection) {
            self.problems.push(problem);
        }
        self
    }

    pub fn projections(&self) -> &Projections {
        &self.projections
    }

    /// The projections named, all of them when none is; an unknown name is a usage error.
    fn chosen(&self, names: &[String]) -> Result<Vec<Arc<dyn Projection>>, Failure> {
        if names.is_empty() {
            return Ok(self.projections.all().to_vec());
        }
        names.iter().map(|name| self.find(name)).collect()
    }

    fn find(&self, name: &str) -> Result<Arc<dyn Projection>, Failure> {
        self.projections.find(name).map_err(|error| Failure { code: EXIT_USAGE, error: error.into() })
    }
}

/// Runs the `eventline` command for `app`: the whole of a binary's `main`.
pub fn main_with(app: App) -> ExitCode {
    let matches = <Cli as clap::CommandFactory>::command().get_matches();
    let cli = match <Cli as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    // PostgreSQL shows (and the audit records as an entry's origin) which command connected.
    let command_path: Vec<&str> =
        std::iter::successors(matches.subcommand(), |(_, sub)| sub.subcommand()).map(|(name, _)| name).collect();
    eventline_store::name_connections(&format!("eventline {}", command_path.join(" ")));
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    let mut app = app;
    commands::set_built_in_registry(app.registry);
    if app.examples {
        // With a registry of the user's own domains, the shipped binary runs the user's
        // projections only: a reference projection none of whose topics that registry carries
        // is not part of the application.
        // Only its catalog is read here: the command loads (and reports on) the whole registry.
        let catalog = settings
            .schemas_dir
            .as_deref()
            .and_then(|dir| std::fs::read_to_string(dir.join(CATALOG_FILE)).ok())
            .and_then(|text| Catalog::from_json(&text).ok());
        if let Some(catalog) = catalog {
            app.projections.retain(|p| p.topics().iter().any(|t| catalog.domain_for_topic(t).is_some()));
        }
    }
    // `projections check` reports a broken definition as its finding; every other command
    // refuses to start with one.
    if let (Some(dir), false) = (&settings.projections_dir, matches!(cli.command, Command::Projections(_))) {
        match declarative::load_dir(dir) {
            Ok(definitions) => {
                for definition in definitions {
                    app = app.with(Arc::new(Declarative::new(definition)));
                }
            }
            Err(error) => {
                eprintln!("error: invalid projection definition: {error}");
                return ExitCode::from(EXIT_BAD_CONFIG);
            }
        }
    }
    if !app.problems.is_empty() {
        eprintln!("error: {}", app.problems.join("; "));
        return ExitCode::from(EXIT_BAD_CONFIG);
    }
    let log_format = match cli.log_format.as_deref() {
        Some(format) => format.parse().expect("clap admits only known formats"),
        None => settings.log_format,
    };
    // Before the runtime: the span exporter's HTTP client runs on its own thread.
    let telemetry = match telemetry::init(log_format, &settings.tracing) {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };

    if let Err(error) = eventline_kafka::admin::check_settings(&settings.kafka) {
        eprintln!("error: {error}");
        return ExitCode::from(EXIT_BAD_CONFIG);
    }
    for warning in &settings.insecure_databases {
        tracing::warn!("Unverified connection to PostgreSQL on another machine: {warning}");
    }

    // Several worker threads: the rebalance callback blocks one while it reads stored offsets.
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("the runtime starts");
    let outcome = runtime.block_on(run(cli.command, settings, &app));
    drop(runtime);
    telemetry.shutdown();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {:#}", failure.error);
            ExitCode::from(failure.code)
        }
    }
}

async fn run(command: Command, settings: Settings, app: &App) -> commands::Outcome {
    let shutdown = shutdown_on_signal();
    if matches!(
        command,
        Command::Up(_) | Command::Gateway(_) | Command::Api(_) | Command::Worker(_) | Command::OutboxRelay(_)
    ) {
        // Before anything is counted, so nothing counted early is lost.
        metrics::init(settings.metrics_enabled);
    }
    match command {
        Command::Up(args) => {
            together(
                &shutdown,
                commands::workers(&settings, app.projections.all(), shutdown.clone()),
                serve::http(
                    &settings,
                    app,
                    &args,
                    Parts { gateway: true, api: true, console: true, workers: true },
                    shutdown.clone(),
                ),
            )
            .await
        }
        Command::Gateway(args) => {
            serve::http(
                &settings,
                app,
                &args,
                Parts { gateway: true, api: false, console: false, workers: false },
                shutdown,
            )
            .await
        }
        Command::Api(args) => {
            serve::http(
                &settings,
                app,
                &args,
                Parts { gateway: false, api: true, console: false, workers: false },
                shutdown,
            )
            .await
        }
        Command::Console(args) => {
            serve::http(
                &settings,
                app,
                &args,
                Parts { gateway: false, api: false, console: true, workers: false },
                shutdown,
            )
            .await
        }
        Command::Keys(KeysCommand::Create(args)) => ingest::keys_create(&settings, app, &args).await,
        Command::Keys(KeysCommand::List) => ingest::keys_list(&settings).await,
        Command::Keys(KeysCommand::Revoke(args)) => ingest::keys_revoke(&settings, &args).await,
        Command::Erase(args) => ingest::erase(&settings, app.projections.all(), &args).await,
        Command::KeyStore(KeyStoreCommand::Isolate(args)) => ingest::key_store_isolate(&settings, &args).await,
        Command::OutboxRelay(args) => match args.listen {
            None => ingest::outbox_relay(&settings, &args, shutdown).await,
            Some(listen) => {
                together(
                    &shutdown,
                    ingest::outbox_relay(&settings, &args, shutdown.clone()),
                    serve::relay_health(&settings, listen, shutdown.clone()),
                )
                .await
            }
        },
        Command::Tail(args) => ingest::tail(&settings, &args, shutdown).await,
        Command::Worker(args) => {
            let projections = app.chosen(&args.projections)?;
            let Some(listen) = args.listen else {
                return commands::workers(&settings, &projections, shutdown).await;
            };
            together(
                &shutdown,
                commands::workers(&settings, &projections, shutdown.clone()),
                serve::worker_health(&settings, listen, shutdown.clone()),
            )
            .await
        }
        Command::Migrate => commands::migrate(&settings, app.projections.all()).await,
        Command::Projections(ProjectionsCommand::Check(args)) => {
            commands::projections_check(&settings, &args, app.projections.all()).await
        }
        Command::Topics(TopicsCommand::Create(args)) => commands::topics_create(&settings, &args).await,
        Command::Publish(args) => commands::publish(&settings, &args).await,
        Command::Loadgen(args) => {
            let reference_registry = app.examples && settings.schemas_dir.is_none();
            commands::loadgen(&settings, &args, reference_registry, shutdown).await
        }
        Command::Schemas(SchemasCommand::Check(args)) => commands::schemas_check(&args, app.projections.all()),
        Command::Status(args) => operate::status(&settings, app, &args).await,
        Command::Replay(args) => operate::replay(&settings, app, &args).await,
        Command::Rebuild(command) => operate::rebuild(&settings, app, &command, shutdown).await,
        Command::Dlq(command) => operate::dlq(&settings, app, &command).await,
        Command::Audit(AuditCommand::Verify) => operate::audit_verify(&settings).await,
        Command::Audit(AuditCommand::Log(args)) => operate::audit_log(&settings, app, &args).await,
    }
}

/// Runs two halves of one process until both end; either ending (failing or not) stops the other.
async fn together(
    shutdown: &CancellationToken,
    first: impl std::future::Future<Output = commands::Outcome>,
    second: impl std::future::Future<Output = commands::Outcome>,
) -> commands::Outcome {
    async fn stop_after(
        half: impl std::future::Future<Output = commands::Outcome>,
        shutdown: &CancellationToken,
    ) -> commands::Outcome {
        let outcome = half.await;
        shutdown.cancel();
        outcome
    }
    let (first, second) = tokio::join!(stop_after(first, shutdown), stop_after(second, shutdown));
    first.and(second)
}

/// A token cancelled on the first Ctrl-C or SIGTERM.
fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM can be handled");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("Ctrl-C received; stopping."),
            _ = terminate.recv() => tracing::info!("SIGTERM received; stopping."),
        }
        cancel.cancel();
    });
    token
}
