//! The ingestion commands: the HTTP gateway, its API keys, the outbox relay, and `tail`.

use std::io::Write;
use std::sync::Arc;

use anyhow::{anyhow, Context};
use eventline_auth::{keys, Auth};
use eventline_core::binding;
use eventline_core::config::Settings;
use eventline_core::registry::Registry;
use eventline_kafka::reader::{StartAt, TopicReader};
use eventline_producers::gateway::{self, Gateway};
use eventline_producers::outbox;
use eventline_producers::publisher::Publisher;
use eventline_producers::sealing::Sealer;
use eventline_store::subject_keys::KeyRing;
use eventline_store::Store;
use tokio_util::sync::CancellationToken;

use crate::cli::{
    EraseArgs, KeyStoreIsolateArgs, KeysCreateArgs, KeysRevokeArgs, OutboxRelayArgs, TailArgs, TailFormat, TailStart,
};
use crate::commands::{load_registry, Failure, Outcome, EXIT_INVALID_INPUT};
use crate::operate;
use crate::serve::Service;
use crate::App;

/// The gateway's part of the HTTP application.
pub async fn gateway_service(
    settings: &Settings,
    store: Store,
    auth: Arc<Auth>,
    shutdown: CancellationToken,
) -> Result<Service, Failure> {
    let registry = load_registry(settings)?;
    let publisher = Publisher::connect(settings, registry.clone()).await?;
    let sealer = crate::commands::key_ring(settings, &store).await?.map(|keys| Sealer::new(registry.clone(), keys));
    let gateway = Gateway::new(registry, publisher, sealer, auth, settings.gateway);
    gateway.watch_broker(settings.kafka.clone(), shutdown);
    let (router, openapi) = gateway::router(gateway.clone());
    Ok(Service { router, openapi, readiness: Some(Arc::new(gateway)) })
}

pub async fn keys_create(settings: &Settings, app: &App, args: &KeysCreateArgs) -> Outcome {
    if let Some(bad) = args.types.iter().find(|p| !keys::valid_pattern(p)) {
        return Err(Failure {
            code: 2,
            error: anyhow!("`{bad}` is not an event type pattern (use *, a prefix like accounts.*, or a type name)"),
        });
    }
    let projections: Vec<&str> = app.projections().all().iter().map(|p| p.name()).collect();
    for scope in &args.scopes {
        eventline_auth::check_key_scope(scope, &projections)
            .map_err(|reason| Failure { code: 2, error: anyhow!(reason) })?;
    }
    let store = Store::connect(&settings.database_url, 1, settings.connect_timeout).await?;
    store.ensure_migrated().await?;
    let key = keys::new_key();
    let actor = operate::actor(&args.actor);
    store.insert_api_key(&key.key_id, &args.name, &key.secret_hash, &args.types, &args.scopes, &actor).await?;
    println!("{}", key.token);
    let mut may = Vec::new();
    if !args.types.is_empty() {
        may.push(format!("publish {}", args.types.join(", ")));
    }
    if !args.scopes.is_empty() {
        may.push(format!("hold {}", args.scopes.join(", ")));
    }
    eprintln!(
        "created key {} ({}), which may {}; the line above is its only copy: store it now",
        key.key_id,
        args.name,
        may.join(" and ")
    );
    Ok(())
}

pub async fn keys_list(settings: &Settings) -> Outcome {
    let store = Store::connect(&settings.database_url, 1, settings.connect_timeout).await?;
    store.ensure_migrated().await?;
    let keys = store.api_keys().await?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{:<12}  {:<20}  {:<25}  {:<25}  {:<20}  REVOKED", "ID", "NAME", "TYPES", "SCOPES", "CREATED")?;
    for key in keys {
        let revoked = key.revoked_at.map_or("-".to_string(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string());
        writeln!(
            out,
            "{:<12}  {:<20}  {:<25}  {:<25}  {:<20}  {}",
            key.key_id,
            key.name,
            key.event_types.join(","),
            key.scopes.join(","),
            key.created_at.format("%Y-%m-%d %H:%M:%S"),
            revoked
        )?;
    }
    Ok(())
}

pub async fn keys_revoke(settings: &Settings, args: &KeysRevokeArgs) -> Outcome {
    let store = Store::connect(&settings.database_url, 1, settings.connect_timeout).await?;
    store.ensure_migrated().await?;
    if store.revoke_api_key(&args.key_id, &operate::actor(&args.actor)).await? {
        println!("revoked key {} (requests with it are refused within {} s)", args.key_id, keys::CACHE_FOR.as_secs());
        Ok(())
    } else {
        Err(anyhow!("no active key with id `{}`", args.key_id).into())
    }
}

/// Destroys a data subject's key and fences it, with its audit entry.
pub async fn erase(settings: &Settings, args: &EraseArgs) -> Outcome {
    let store = Store::connect(&settings.database_url, 1, settings.connect_timeout).await?;
    store.ensure_migrated().await?;
    // As the key store's own role when it has one.
    let store = match settings.keys_database_url == settings.database_url {
        true => store,
        false => Store::connect(&settings.keys_database_url, 1, settings.connect_timeout).await?,
    };
    let (subject, actor) = (args.subject.as_str(), operate::actor(&args.actor));
    let erasure = store.erase_subject_key(subject, &actor, &args.reason, &args.requested_by).await?;
    if erasure.key_destroyed {
        println!(
            "erased subject {subject}: its personal data is unreadable everywhere within 5 s; {} blind-index entr{} deleted",
            erasure.index_entries,
            if erasure.index_entries == 1 { "y" } else { "ies" }
        );
    } else {
        println!("subject {subject} was already erased (or had no personal data): it stays fenced");
    }
    Ok(())
}

/// Gives the key store to a database role of its own, with its audit entry.
pub async fn key_store_isolate(settings: &Settings, args: &KeyStoreIsolateArgs) -> Outcome {
    let store = Store::connect(&settings.database_url, 1, settings.connect_timeout).await?;
    store.ensure_migrated().await?;
    let role = &args.role;
    match store.isolate_key_store(role, &operate::actor(&args.actor)).await {
        Ok(true) => println!(
            "the key store is role {role}'s now: set EVENTLINE_KEYS_DATABASE_URL to connect as {role} wherever \
             personal data is sealed, opened or erased"
        ),
        Ok(false) => println!("the key store was role {role}'s already"),
        Err(eventline_store::Error::Refused(reason)) => return Err(Failure { code: 2, error: anyhow!(reason) }),
        Err(error) => return Err(error.into()),
    }
    Ok(())
}

/// Relays the outbox until `shutdown`.
pub async fn outbox_relay(settings: &Settings, args: &OutboxRelayArgs, shutdown: CancellationToken) -> Outcome {
    let registry = load_registry(settings)?;
    let store = Store::connect(&settings.outbox_database_url, 3, settings.connect_timeout).await?;
    if args.install {
        store.install_outbox().await?;
        tracing::info!(database = settings.outbox_database_url.database_name(), "Outbox installed.");
    }
    let publisher = Publisher::connect(settings, registry.clone()).await?;
    // With a key-encryption key, personal data is sealed under keys kept in eventline's own
    // database (the outbox may be in another).
    let keys = match settings.key_encryption_key.clone() {
        Some(kek) => {
            let keys = Store::connect(&settings.keys_database_url, 2, settings.connect_timeout).await?;
            Some(Sealer::new(registry.clone(), KeyRing::new(keys, kek)))
        }
        None => None,
    };
    outbox::run(registry, &publisher, keys.as_ref(), &store, shutdown).await.context("the outbox relay stopped")?;
    store.close().await;
    Ok(())
}

/// Prints records of a topic until `shutdown`, the limit, or (with --no-follow) the end.
pub async fn tail(settings: &Settings, args: &TailArgs, shutdown: CancellationToken) -> Outcome {
    if let (TailStart::Time(from), Some(to)) = (args.from, args.to) {
        if to <= from {
            return Err(Failure { code: 2, error: anyhow::anyhow!("--to must be later than --from") });
        }
    }
    let registry: Arc<Registry> = load_registry(settings)?;
    let known = registry.catalog().domains().iter().any(|d| d.topic == args.topic);
    let topic = if known { settings.namespace.topic(&args.topic) } else { args.topic.clone() };
    let start = match args.from {
        TailStart::End => StartAt::End,
        TailStart::Start => StartAt::Beginning,
        TailStart::Offset { partition, offset } => StartAt::Offset { partition, offset },
        TailStart::Time(ms) => StartAt::Time(ms),
    };
    let mut reader =
        TopicReader::open(&settings.kafka, &topic, start, settings.connect_timeout).await.map_err(|error| Failure {
            code: if matches!(error, eventline_kafka::Error::UnknownPartition { .. }) { EXIT_INVALID_INPUT } else { 1 },
            error: error.into(),
        })?;
    if let Some(until) = args.to {
        reader = reader.until(until);
    }
    let stop_at_end = args.no_follow || args.to.is_some();
    let mut printed = 0u64;
    let mut out = std::io::stdout().lock();
    loop {
        if args.limit.is_some_and(|limit| printed >= limit) {
            break;
        }
        let record = tokio::select! {
            () = shutdown.cancelled() => break,
            record = reader.next(stop_at_end) => match record? {
                Some(record) => record,
                None => break,
            },
        };
        let value = record.payload.as_deref().unwrap_or_default();
        let event = binding::from_kafka_record(&record.headers, record.payload.as_deref());
        match args.format {
            TailFormat::Ndjson => {
                // Structured records as they are; binary-mode ones in the structured form, so
                // the export can be published again.
                match &event {
                    Ok(event) if binding::is_binary_record(&record.headers) => out.write_all(&event.to_bytes())?,
                    _ => out.write_all(value)?,
                }
                out.write_all(b"\n")?;
            }
            TailFormat::Pretty => {
                let key = record.key.as_deref().map(String::from_utf8_lossy).unwrap_or_default();
                let description = match event {
                    Ok(event) => format!(
                        "{} v{} id={} {}",
                        event.event_type,
                        event.dataversion,
                        event.id,
                        event.data.map(|d| d.to_string()).unwrap_or_default()
                    ),
                    Err(error) => format!("(not a CloudEvent: {error}) {}", String::from_utf8_lossy(value)),
                };
                let time = record
                    .timestamp_ms
                    .and_then(chrono::DateTime::from_timestamp_millis)
                    .map_or("-".to_string(), |t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string());
                writeln!(
                    out,
                    "{}/{}@{} {time} key={key} {description}",
                    record.topic, record.partition, record.offset
                )?;
            }
        }
        out.flush()?;
        printed += 1;
    }
    Ok(())
}
