//! Operator commands: `status`, `replay`, `rebuild`, `dlq`. They print for people (tables, a
//! progress bar) or for scripts (`--json`, JSON lines), and map refusals to exit codes.

use std::io::{IsTerminal, Write};
use std::sync::Arc;

use anyhow::anyhow;
use eventline_api::status::{self, ProjectionStatus};
use eventline_consumers::dlq::{self, DlqError, Target};
use eventline_consumers::rebuild::{self, OperationError, Progress, Rebuild};
use eventline_consumers::Projection;

use crate::App;
use eventline_core::config::Settings;
use eventline_store::dead_letters::DeadLetterFilter;
use eventline_store::declarative::DefinitionError;
use eventline_store::Store;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::cli::{
    ActorArgs, AuditLogArgs, DlqCommand, DlqFilterArgs, ProgressStyle, RebuildCommand, RebuildTarget, ReplayArgs,
    StatusArgs,
};
use crate::commands::{load_registry, Failure, Outcome, EXIT_BAD_CONFIG, EXIT_INVALID_INPUT};

/// Exit code of `status` when a projection is behind its threshold.
pub const EXIT_BEHIND: u8 = 3;
/// Exit code of `audit verify` when the chain is broken.
pub const EXIT_AUDIT_BROKEN: u8 = 4;
/// Exit code for an operation that may succeed later (sysexits' EX_TEMPFAIL).
pub const EXIT_TRY_LATER: u8 = 75;

async fn connect(settings: &Settings) -> Result<Store, Failure> {
    let store = Store::connect(&settings.database_url, 4, settings.connect_timeout).await?;
    store.ensure_migrated().await?;
    Ok(store)
}

/// `$USER@host` unless --actor says otherwise.
pub(crate) fn actor(args: &ActorArgs) -> String {
    args.actor.clone().unwrap_or_else(|| {
        let user = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "unknown".into());
        format!("{user}@{}", gethostname::gethostname().to_string_lossy())
    })
}

fn operation_failure(error: OperationError) -> Failure {
    let code = match &error {
        OperationError::Busy(_) | OperationError::NotCaughtUp { .. } | OperationError::CutoverTimedOut { .. } => {
            EXIT_TRY_LATER
        }
        OperationError::NotMidStream { .. }
        | OperationError::NoSuchPartition { .. }
        | OperationError::OffsetOutOfRange { .. }
        | OperationError::NoRebuild(_)
        | OperationError::DifferentStart { .. }
        | OperationError::NothingToRollBack(_) => EXIT_INVALID_INPUT,
        OperationError::Definition(DefinitionError::Store(_)) => 1,
        OperationError::Definition(_) => EXIT_BAD_CONFIG,
        _ => 1,
    };
    Failure { code, error: error.into() }
}

fn dlq_failure(error: DlqError) -> Failure {
    let code = match &error {
        DlqError::NoSuchLetter { .. } | DlqError::NoLettersForKey { .. } | DlqError::NotInKey { .. } => {
            EXIT_INVALID_INPUT
        }
        DlqError::Store(_) => 1,
        DlqError::Definition(_) => EXIT_BAD_CONFIG,
    };
    Failure { code, error: error.into() }
}

pub async fn status(settings: &Settings, app: &App, args: &StatusArgs) -> Outcome {
    let chosen = app.chosen(&args.projections)?;
    let store = connect(settings).await?;
    let served: Vec<status::Watched> = chosen
        .iter()
        .map(|p| status::Watched {
            name: p.name().to_string(),
            group: settings.namespace.group_id(p.name()),
            topics: p.topics().iter().map(|t| settings.namespace.topic(t)).collect(),
        })
        .collect();
    let statuses =
        status::collect(&store, &eventline_api::status::BrokerConnection::new(&settings.kafka)?, &served).await?;
    store.close().await;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &json!({ "projections": statuses }))?;
        writeln!(out)?;
    } else {
        print_status(&mut out, &statuses)?;
    }
    let behind: Vec<String> = statuses
        .iter()
        .filter(|s| s.lag_seconds > args.max_lag_seconds || args.max_lag_events.is_some_and(|max| s.lag_events > max))
        .map(|s| format!("{} ({} events, {:.1}s behind)", s.name, s.lag_events, s.lag_seconds))
        .collect();
    if behind.is_empty() {
        Ok(())
    } else {
        Err(Failure { code: EXIT_BEHIND, error: anyhow!("behind the lag threshold: {}", behind.join(", ")) })
    }
}

fn print_status(out: &mut impl Write, statuses: &[ProjectionStatus]) -> std::io::Result<()> {
    for s in statuses {
        let rebuild = match &s.rebuild {
            Some(r) if r.caught_up_at.is_some() => format!("generation {} caught up", r.generation),
            Some(r) => format!("generation {} building, {} events behind", r.generation, r.lag_events),
            None => "none".into(),
        };
        let version = s.version.map(|v| format!(" (version {v})")).unwrap_or_default();
        let retired = if s.retired_generations.is_empty() {
            String::new()
        } else {
            format!(", retired generations {:?}", s.retired_generations)
        };
        writeln!(
            out,
            "{}  generation {}{version}{retired}  lag {} events / {:.1}s  dead letters {}  parked keys {}  rebuild: {rebuild}",
            s.name, s.generation, s.lag_events, s.lag_seconds, s.dead_letters, s.parked_keys
        )?;
        match (&s.group_state, s.group_members) {
            (Some(state), Some(members)) => {
                write!(out, "  group {}: {state}, {members} live member(s)", s.group)?;
                if s.unowned_partitions.is_empty() {
                    writeln!(out)?;
                } else {
                    writeln!(
                        out,
                        "; UNOWNED: {} partition(s) with events to apply and no live member: {}",
                        s.unowned_partitions.len(),
                        s.unowned_partitions.join(", ")
                    )?;
                }
            }
            _ => writeln!(out, "  group {}: could not be described (ownership unknown)", s.group)?,
        }
        writeln!(
            out,
            "  {:<32} {:>9} {:>12} {:>12} {:>10} {:>9}  {:<40} written by",
            "topic", "partition", "stored", "end", "lag", "lag (s)", "held by"
        )?;
        for p in &s.partitions {
            let held = match (&p.held_by, p.unowned) {
                (Some(member), _) => member.clone(),
                (None, true) => "UNOWNED".into(),
                (None, false) => "-".into(),
            };
            writeln!(
                out,
                "  {:<32} {:>9} {:>12} {:>12} {:>10} {:>9}  {:<40} {}",
                p.topic,
                p.partition,
                p.stored_offset.map_or("-".into(), |o| o.to_string()),
                p.end_offset,
                p.lag_events,
                p.lag_seconds.map_or("?".into(), |l| format!("{l:.1}")),
                held,
                p.owner.as_deref().unwrap_or("-"),
            )?;
        }
    }
    Ok(())
}

pub async fn replay(settings: &Settings, app: &App, args: &ReplayArgs) -> Outcome {
    let projection = app.find(&args.projection)?;
    let store = connect(settings).await?;
    let report = rebuild::replay(settings, &store, &*projection, &args.from, &actor(&args.actor))
        .await
        .map_err(operation_failure)?;
    store.close().await;
    println!("{}", serde_json::to_string(&report)?);
    eprintln!(
        "{} reset ({} rows, {} dead letters, {} parked keys removed); running workers re-read from {} within about a second.",
        projection.name(),
        report.rows_removed,
        report.dead_letters_removed,
        report.parked_keys_removed,
        report.from
    );
    Ok(())
}

pub async fn rebuild(settings: &Settings, app: &App, command: &RebuildCommand, shutdown: CancellationToken) -> Outcome {
    let projection = app.find(match command {
        RebuildCommand::Start(args) => &args.target.projection,
        RebuildCommand::Cutover(args) => &args.target.projection,
        RebuildCommand::Diff(target) | RebuildCommand::Rollback(target) | RebuildCommand::Cleanup(target) => {
            &target.projection
        }
    })?;
    let store = connect(settings).await?;
    let outcome = match command {
        RebuildCommand::Start(args) => {
            let registry = load_registry(settings)?;
            start(settings, registry, &store, projection, args, shutdown).await
        }
        RebuildCommand::Diff(_) => {
            let registry = load_registry(settings)?;
            let rebuild =
                Rebuild::open(settings, registry, &store, projection, None).await.map_err(operation_failure)?;
            let outcome = print_diff(&rebuild).await;
            rebuild.pause().await.map_err(operation_failure)?;
            outcome
        }
        RebuildCommand::Cutover(args) => {
            let registry = load_registry(settings)?;
            let RebuildTarget { projection: name, actor: who } = &args.target;
            let rebuild =
                Rebuild::open(settings, registry, &store, projection, None).await.map_err(operation_failure)?;
            let generation = rebuild.cutover(args.max_lag, &actor(who)).await.map_err(operation_failure)?;
            println!("{}", json!({ "event": "cutover", "projection": name, "live_generation": generation }));
            Ok(())
        }
        RebuildCommand::Rollback(target) => {
            let (live, retired) =
                rebuild::rollback(&store, &*projection, &actor(&target.actor)).await.map_err(operation_failure)?;
            println!(
                "{}",
                json!({ "event": "rollback", "projection": target.projection, "live_generation": live, "retired_generation": retired })
            );
            Ok(())
        }
        RebuildCommand::Cleanup(target) => {
            let dropped =
                rebuild::cleanup(&store, &*projection, &actor(&target.actor)).await.map_err(operation_failure)?;
            println!(
                "{}",
                json!({ "event": "cleanup", "projection": target.projection, "dropped_generations": dropped })
            );
            Ok(())
        }
    };
    store.close().await;
    outcome
}

async fn start(
    settings: &Settings,
    registry: Arc<eventline_core::registry::Registry>,
    store: &Store,
    projection: Arc<dyn Projection>,
    args: &crate::cli::RebuildStartArgs,
    shutdown: CancellationToken,
) -> Outcome {
    let name = &args.target.projection;
    let mut rebuild = Rebuild::open(settings, registry, store, projection, Some(args.from.clone()))
        .await
        .map_err(operation_failure)?;
    let verb = if rebuild.created { "started" } else { "resumed" };
    println!(
        "{}",
        json!({ "event": verb, "projection": name, "generation": rebuild.generation.generation, "version": rebuild.generation.version, "schema": rebuild.generation.schema(), "from": rebuild.generation.started_from })
    );
    let bar = match args.progress {
        ProgressStyle::Bar => true,
        ProgressStyle::Json => false,
        ProgressStyle::Auto => std::io::stderr().is_terminal(),
    };
    let shown = indicatif::ProgressBar::new(0);
    if bar {
        shown.set_style(
            indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} events, {per_sec}, ETA {eta}")
                .expect("the template is valid")
                .progress_chars("=> "),
        );
        shown.set_message(format!("{name} generation {}", rebuild.generation.generation));
    } else {
        shown.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let caught_up = rebuild
        .catch_up(&shutdown, |progress: &Progress| {
            if bar {
                shown.set_length(progress.total.max(0) as u64);
                shown.set_position(progress.done.max(0) as u64);
            } else {
                println!("{}", json!({ "event": "progress", "projection": name, "progress": progress }));
            }
        })
        .await
        .map_err(operation_failure)?;
    shown.finish_and_clear();
    if !caught_up {
        rebuild.pause().await.map_err(operation_failure)?;
        eprintln!("Stopped; `eventline rebuild start {name}` resumes where this left off.");
        return Ok(());
    }
    println!("{}", json!({ "event": "caught_up", "projection": name, "generation": rebuild.generation.generation }));
    if args.diff {
        print_diff(&rebuild).await?;
    }
    if args.cutover {
        let generation = rebuild.cutover(i64::MAX, &actor(&args.target.actor)).await.map_err(operation_failure)?;
        println!("{}", json!({ "event": "cutover", "projection": name, "live_generation": generation }));
    } else {
        rebuild.pause().await.map_err(operation_failure)?;
        eprintln!(
            "Caught up. Compare with `eventline rebuild diff {name}`; switch readers with `eventline rebuild cutover {name}`."
        );
    }
    Ok(())
}

async fn print_diff(rebuild: &Rebuild) -> Outcome {
    let diffs = rebuild.diff().await.map_err(operation_failure)?;
    for diff in diffs {
        println!(
            "{}",
            json!({
                "event": "diff",
                "table": diff.table,
                "equal": diff.equal(),
                "live": { "rows": diff.live_rows, "checksum": diff.live_checksum },
                "rebuilt": { "generation": rebuild.generation.generation, "rows": diff.other_rows, "checksum": diff.other_checksum },
            })
        );
    }
    Ok(())
}

fn filter(projection: Option<&str>, args: &DlqFilterArgs, limit: i64) -> DeadLetterFilter {
    DeadLetterFilter {
        projection: projection.map(str::to_string),
        key: args.key.clone(),
        kind: args.kind.clone(),
        reason_contains: args.reason.clone(),
        since: None,
        limit,
    }
}

pub async fn dlq(settings: &Settings, app: &App, command: &DlqCommand) -> Outcome {
    let projection = match command {
        DlqCommand::List(args) => args.projection.as_deref().map(|name| app.find(name)).transpose()?,
        DlqCommand::Retry(args) => Some(app.find(&args.projection)?),
        DlqCommand::Skip(args) => Some(app.find(&args.projection)?),
        DlqCommand::Purge(args) => Some(app.find(&args.projection)?),
        DlqCommand::Log(args) => args.projection.as_deref().map(|name| app.find(name)).transpose()?,
        DlqCommand::Show(_) => None,
    };
    let store = connect(settings).await?;
    let mut out = std::io::stdout().lock();
    match command {
        DlqCommand::List(args) => {
            let letters =
                store.find_dead_letters(&filter(args.projection.as_deref(), &args.filter, args.limit)).await?;
            if !args.json {
                writeln!(
                    out,
                    "{:>8}  {:<20} {:<28} {:>18}  {:<20} {:<11} reason",
                    "id", "projection", "topic", "partition@offset", "key", "kind"
                )?;
            }
            for l in letters {
                if args.json {
                    serde_json::to_writer(
                        &mut out,
                        &json!({
                            "id": l.id, "projection": l.projection, "topic": l.topic, "partition": l.partition,
                            "offset": l.offset, "key": l.record_key, "event_id": l.event_id, "event_type": l.event_type,
                            "kind": l.reason_kind, "reason": l.reason, "created_at": l.created_at,
                        }),
                    )?;
                    writeln!(out)?;
                } else {
                    writeln!(
                        out,
                        "{:>8}  {:<20} {:<28} {:>18}  {:<20} {:<11} {}",
                        l.id,
                        l.projection,
                        l.topic,
                        format!("{}@{}", l.partition, l.offset),
                        l.record_key.as_deref().unwrap_or("-"),
                        l.reason_kind,
                        l.reason
                    )?;
                }
            }
        }
        DlqCommand::Show(args) => {
            let record = store.dead_record(args.id).await?.ok_or_else(|| Failure {
                code: EXIT_INVALID_INPUT,
                error: anyhow!("there is no dead letter {}", args.id),
            })?;
            let l = &record.letter;
            let payload = record.payload.as_deref().map(|p| {
                serde_json::from_slice::<serde_json::Value>(p).unwrap_or_else(|_| String::from_utf8_lossy(p).into())
            });
            serde_json::to_writer_pretty(
                &mut out,
                &json!({
                    "id": l.id, "projection": l.projection, "topic": l.topic, "partition": l.partition, "offset": l.offset,
                    "key": l.record_key, "event_id": l.event_id, "event_type": l.event_type, "kind": l.reason_kind,
                    "reason": l.reason, "created_at": l.created_at, "record_time": record.record_time,
                    "headers": record.headers, "payload": payload,
                }),
            )?;
            writeln!(out)?;
        }
        DlqCommand::Retry(args) => {
            let registry = load_registry(settings)?;
            let target = match (&args.key, args.id) {
                (Some(key), _) => Target::Key(key.clone()),
                (None, Some(id)) => Target::Id(id),
                (None, None) => unreachable!("clap requires --key or --id"),
            };
            let report = projection
                .as_ref()
                .expect("retry and skip name their projection")
                .retry_dead_letters(&store, &registry, &target, None, &actor(&args.actor))
                .await
                .map_err(dlq_failure)?;
            writeln!(out, "{}", serde_json::to_string(&report)?)?;
            if let Some(reason) = &report.reason {
                return Err(Failure {
                    code: EXIT_INVALID_INPUT,
                    error: anyhow!(
                        "dead letter {} still fails: {reason}; {} applied, {} still waiting",
                        report.still_dead[0],
                        report.applied.len(),
                        report.still_dead.len()
                    ),
                });
            }
        }
        DlqCommand::Skip(args) => {
            let registry = load_registry(settings)?;
            let report = projection
                .as_ref()
                .expect("retry and skip name their projection")
                .retry_dead_letters(
                    &store,
                    &registry,
                    &Target::Id(args.id),
                    Some((args.id, &args.reason)),
                    &actor(&args.actor),
                )
                .await
                .map_err(dlq_failure)?;
            writeln!(out, "{}", serde_json::to_string(&report)?)?;
        }
        DlqCommand::Purge(args) => {
            if !args.yes {
                return Err(Failure {
                    code: 2,
                    error: anyhow!("purged dead letters are gone for good; pass --yes to confirm"),
                });
            }
            let purged = dlq::purge(
                &store,
                &filter(Some(&args.projection), &args.filter, 0),
                &args.because,
                &actor(&args.actor),
            )
            .await
            .map_err(dlq_failure)?;
            writeln!(out, "{}", json!({ "purged": purged.iter().map(|l| l.id).collect::<Vec<_>>() }))?;
        }
        DlqCommand::Log(args) => print_audit_log(&store, args, &mut out).await?,
    }
    store.close().await;
    Ok(())
}

/// `audit log` (and `dlq log`): the latest entries, oldest of them first, as JSON lines.
pub async fn audit_log(settings: &Settings, app: &App, args: &AuditLogArgs) -> Outcome {
    if let Some(name) = &args.projection {
        app.find(name)?;
    }
    let store = connect(settings).await?;
    let printed = print_audit_log(&store, args, &mut std::io::stdout().lock()).await;
    store.close().await;
    printed
}

async fn print_audit_log(store: &Store, args: &AuditLogArgs, out: &mut impl Write) -> Outcome {
    for entry in store.audit_log(args.projection.as_deref(), args.limit).await? {
        let line = json!({
            "id": entry.id, "at": entry.at, "actor": entry.actor, "action": entry.action,
            "projection": entry.projection, "target": entry.target, "reason": entry.reason,
            "outcome": entry.outcome, "origin": entry.origin,
        });
        writeln!(out, "{line}")?;
    }
    Ok(())
}

/// `audit verify`: the chain's state on standard output; a broken chain is a failure naming the
/// first entry that does not verify.
pub async fn audit_verify(settings: &Settings) -> Outcome {
    let store = connect(settings).await?;
    let verification = store.verify_audit().await;
    store.close().await;
    let verification = verification?;
    let earlier = match verification.before_the_chain {
        0 => String::new(),
        n => format!(" ({n} written before the chain, not verifiable)"),
    };
    match verification.broken {
        None => {
            println!("audit chain intact: {} entries{earlier}, head {}", verification.entries, verification.head);
            Ok(())
        }
        Some(broken) => Err(Failure {
            code: EXIT_AUDIT_BROKEN,
            error: match broken.id {
                Some(id) => anyhow!("the audit chain is broken at entry id {id}: {}", broken.reason),
                None => anyhow!("the audit chain is broken: {}", broken.reason),
            },
        }),
    }
}
