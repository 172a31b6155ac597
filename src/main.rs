//! The `eventline` binary: parses the command line, loads settings, sets up telemetry and runs
//! one subcommand. The work itself lives in the library crates; see ARCHITECTURE.md.

mod cli;
mod commands;
mod ingest;
mod metrics;
mod operate;
mod serve;

use std::process::ExitCode;

use clap::Parser;
use eventline_consumers::Projection;
use eventline_core::config::Settings;
use eventline_core::telemetry;
use tokio_util::sync::CancellationToken;

use crate::cli::{Cli, Command, KeysCommand, SchemasCommand, TopicsCommand};
use crate::commands::EXIT_BAD_CONFIG;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
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

    // Several worker threads: the rebalance callback blocks one while it reads stored offsets.
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("the runtime starts");
    let outcome = runtime.block_on(run(cli.command, settings));
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

async fn run(command: Command, settings: Settings) -> commands::Outcome {
    let shutdown = shutdown_on_signal();
    if matches!(
        command,
        Command::Up(_) | Command::Gateway(_) | Command::Api | Command::Worker(_) | Command::OutboxRelay(_)
    ) {
        // Before anything is counted, so nothing counted early is lost.
        metrics::init(settings.metrics_enabled);
    }
    match command {
        Command::Up(args) => {
            together(
                &shutdown,
                commands::workers(&settings, Projection::ALL, shutdown.clone()),
                serve::http(&settings, Some(&args), true, true, shutdown.clone()),
            )
            .await
        }
        Command::Gateway(args) => serve::http(&settings, Some(&args), false, false, shutdown).await,
        Command::Api => serve::http(&settings, None, true, false, shutdown).await,
        Command::Keys(KeysCommand::Create(args)) => ingest::keys_create(&settings, &args).await,
        Command::Keys(KeysCommand::List) => ingest::keys_list(&settings).await,
        Command::Keys(KeysCommand::Revoke(args)) => ingest::keys_revoke(&settings, &args).await,
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
            let projections: Vec<Projection> = args
                .projections
                .iter()
                .map(|name| Projection::from_name(name).expect("clap admits only known names"))
                .collect();
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
        Command::Migrate => commands::migrate(&settings).await,
        Command::Topics(TopicsCommand::Create(args)) => commands::topics_create(&settings, &args).await,
        Command::Publish(args) => commands::publish(&settings, &args).await,
        Command::Loadgen(args) => commands::loadgen(&settings, &args, shutdown).await,
        Command::Schemas(SchemasCommand::Check(args)) => commands::schemas_check(&args),
        Command::Status(args) => operate::status(&settings, &args).await,
        Command::Replay(args) => operate::replay(&settings, &args).await,
        Command::Rebuild(command) => operate::rebuild(&settings, &command, shutdown).await,
        Command::Dlq(command) => operate::dlq(&settings, &command).await,
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
