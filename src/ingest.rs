//! The ingestion commands: the HTTP gateway, its API keys, the outbox relay, and `tail`.

use std::io::Write;
use std::sync::Arc;

use anyhow::{anyhow, Context};
use eventline_auth::{keys, Auth};
use eventline_consumers::projections::Projection;
use eventline_core::binding;
use eventline_core::config::Settings;
use eventline_core::registry::Registry;
use eventline_kafka::reader::{StartAt, TopicReader};
use eventline_producers::gateway::{self, Gateway};
use eventline_producers::outbox;
use eventline_producers::publisher::Publisher;
use eventline_producers::sealing::Sealer;
use eventline_store::generations::GenerationState;
use eventline_store::subject_keys::KeyRing;
use eventline_store::Store;
use tokio_util::sync::CancellationToken;

use crate::cli::{
    EraseArgs, KeyStoreIsolateArgs, KeysCreateArgs, KeysRevokeArgs, OutboxRelayArgs, TailArgs, TailFormat, TailStart,
};
use crate::commands::{load_registry, Failure, Outcome, EXIT_INCOMPLETE, EXIT_INVALID_INPUT};
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

/// Erases a data subject. First its key is destroyed with its blind-index entries and the
/// subject fenced, in one transaction with the audit entry: from then on its sealed personal data
/// is unreadable everywhere, and that holds whatever happens next. Then what still names it or
/// holds its personal data in clear is scrubbed: its id in the rows projections keep about it
/// (every generation), with the personal values in clear of those rows, the dead letters about it
/// and the unpublished outbox rows about it. A part not reached is named and
/// the command exits 75; running it again completes it.
pub async fn erase(settings: &Settings, projections: &[Arc<dyn Projection>], args: &EraseArgs) -> Outcome {
    let store = Store::connect(&settings.database_url, 1, settings.connect_timeout).await?;
    store.ensure_migrated().await?;
    // As the key store's own role when it has one.
    let keys = match settings.keys_database_url == settings.database_url {
        true => store.clone(),
        false => Store::connect(&settings.keys_database_url, 1, settings.connect_timeout).await?,
    };
    let (subject, actor) = (args.subject.as_str(), operate::actor(&args.actor));
    let erasure = keys.erase_subject_key(subject, &actor, &args.reason, &args.requested_by).await?;
    if erasure.key_destroyed {
        println!(
            "erased subject {subject}: its personal data is unreadable everywhere within 5 s; {}",
            plural(erasure.index_entries, "blind-index entry deleted", "blind-index entries deleted")
        );
    } else {
        println!("subject {subject} was already erased (or had no personal data): it stays fenced");
    }
    let mut not_reached = Vec::new();
    match store.erased_placeholder(subject).await {
        Ok(placeholder) => {
            for projection in projections.iter().filter(|p| !p.subject_columns().is_empty()) {
                match replace_subject_ids(&store, projection.as_ref(), subject, &placeholder).await {
                    Ok(0) => {}
                    Ok(rows) => println!("{}: its id replaced in {}", projection.name(), plural(rows, "row", "rows")),
                    Err(missed) => not_reached.push(format!("{} ({missed})", projection.name())),
                }
            }
        }
        Err(error) => not_reached.push(format!("the projections' rows about it ({error})")),
    }
    // Read once for both scrubs; a registry that cannot be read leaves both not reached.
    let registry = load_registry(settings).map_err(|failure| failure.error);
    match scrub_dead_letters(&registry, &store, projections, subject).await {
        Ok(0) => {}
        Ok(letters) => println!(
            "dead letters: personal data in clear removed from {}",
            plural(letters, "dead letter", "dead letters")
        ),
        Err(error) => not_reached.push(format!("the dead letters ({error:#})")),
    }
    match scrub_outbox(settings, &registry, &store, subject).await {
        Ok(0) => {}
        Ok(rows) => println!(
            "outbox: {} about it set aside, their personal data in clear removed",
            plural(rows, "unpublished row", "unpublished rows")
        ),
        Err(error) => not_reached.push(format!("the outbox ({error:#})")),
    }
    if !not_reached.is_empty() {
        return Err(Failure {
            code: EXIT_INCOMPLETE,
            error: anyhow!(
                "subject {subject} is fenced and its key destroyed, but not reached: {}; run erase again to complete it",
                not_reached.join("; ")
            ),
        });
    }
    Ok(())
}

fn plural(count: u64, one: &str, many: &str) -> String {
    format!("{count} {}", if count == 1 { one } else { many })
}

/// Replaces `subject`'s id by `placeholder` in `projection`'s subject columns, in the live tables
/// and every other generation's, and keeps it out of rows written there later: the rows changed,
/// or what failed.
async fn replace_subject_ids(
    store: &Store,
    projection: &dyn Projection,
    subject: &str,
    placeholder: &str,
) -> Result<u64, String> {
    let mut rows = 0;
    for schema in &generation_schemas(store, projection).await.map_err(|e| e.to_string())? {
        // First, so a row a worker writes meanwhile is not left with the id.
        if let Err(error) =
            store.guard_subject_columns_in(schema, projection.subject_columns(), projection.personal_columns()).await
        {
            return Err(format!("the subject columns' guard in {schema}: {error}"));
        }
        for column in projection.subject_columns() {
            match store.replace_subject_id(schema, column, subject, placeholder).await {
                Ok(changed) => rows += changed.unwrap_or(0),
                Err(error) => return Err(format!("{column} in {schema}: {error}")),
            }
        }
    }
    Ok(rows)
}

/// Where `projection`'s tables are in each of its generations: `public` for the live one, then
/// each other generation's schema.
async fn generation_schemas(store: &Store, projection: &dyn Projection) -> Result<Vec<String>, eventline_store::Error> {
    let generations = store.generations(projection.name()).await?;
    let others = generations.iter().filter(|g| g.state != GenerationState::Live).map(|g| g.schema());
    Ok(std::iter::once("public".to_string()).chain(others).collect())
}

/// Removes `subject`'s personal data in clear from the dead letters about it (structured or
/// binary mode), in the live runtime tables and every generation's (a record that reached Kafka
/// without passing the way in, where it would have been sealed): how many.
async fn scrub_dead_letters(
    registry: &anyhow::Result<Arc<Registry>>,
    store: &Store,
    projections: &[Arc<dyn Projection>],
    subject: &str,
) -> anyhow::Result<u64> {
    let registry = registry.as_ref().map_err(|error| anyhow!("{error:#}"))?;
    let subject_fields = registry.data_subject_fields();
    // The live runtime tables (`public`) hold every projection's dead letters: read once.
    let mut schemas = vec!["public".to_string()];
    for projection in projections {
        schemas.extend(generation_schemas(store, projection.as_ref()).await?);
    }
    schemas.sort();
    schemas.dedup();
    let mut scrubbed = 0;
    for schema in &schemas {
        let letters = store.dead_letters_holding(schema, subject).await?;
        let letters: Vec<(i64, Vec<u8>)> = letters
            .into_iter()
            .filter_map(|(id, payload, headers)| {
                let payload = without_clear_personal(registry, &subject_fields, subject, &payload, &headers)?;
                Some((id, payload))
            })
            .collect();
        if !letters.is_empty() {
            scrubbed += store.replace_dead_letter_payloads(schema, &letters).await?;
        }
    }
    Ok(scrubbed)
}

/// A dead letter's payload with `subject`'s personal data in clear removed, if it is about that
/// subject and held some. In structured mode the payload is the event; in binary mode it is the
/// event's data, its type and data version in the record's `ce_` headers.
fn without_clear_personal(
    registry: &Registry,
    subject_fields: &[(String, String)],
    subject: &str,
    payload: &[u8],
    headers: &serde_json::Value,
) -> Option<Vec<u8>> {
    let payload: serde_json::Value = serde_json::from_slice(payload).ok()?;
    let (mut event, structured) = eventline_core::binding::stored_event(payload, headers);
    let about = subject_fields
        .iter()
        .any(|(event_type, field)| event["type"] == event_type.as_str() && event["data"][field] == subject);
    if !about || !registry.remove_clear_personal(&mut event) {
        return None;
    }
    let scrubbed = if structured { &event } else { &event["data"] };
    Some(serde_json::to_vec(scrubbed).expect("a JSON value serializes"))
}

/// Sets aside the unpublished outbox rows about `subject` that hold its personal data in clear
/// (sealed values are unreadable already), with that data removed: how many.
async fn scrub_outbox(
    settings: &Settings,
    registry: &anyhow::Result<Arc<Registry>>,
    store: &Store,
    subject: &str,
) -> anyhow::Result<u64> {
    let outbox = match settings.outbox_database_url == settings.database_url {
        true => store.clone(),
        false => Store::connect(&settings.outbox_database_url, 1, settings.connect_timeout)
            .await
            .with_context(|| format!("database {}", settings.outbox_database_url.database_name()))?,
    };
    if !outbox.has_outbox().await? {
        return Ok(0);
    }
    let registry = registry.as_ref().map_err(|error| anyhow!("{error:#}"))?;
    let mut rows = outbox.unpublished_outbox_about(&registry.data_subject_fields(), subject).await?;
    rows.retain_mut(|(_, event)| registry.remove_clear_personal(event));
    if rows.is_empty() {
        return Ok(0);
    }
    let reason = "its data subject was erased: the personal data it held in clear was removed by eventline erase [subject-erased]";
    Ok(outbox.set_outbox_rows_aside(&rows, reason).await?)
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
