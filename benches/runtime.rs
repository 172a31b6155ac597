//! Projection runtime throughput, against the real broker and PostgreSQL (start them with
//! `scripts/services.sh up`). Run with:
//!
//! ```sh
//! cargo bench --bench runtime                     # 1,000,000 events
//! cargo bench --bench runtime -- --events 200000
//! cargo bench --bench runtime -- --only c,e        # some of the measures below
//! ```
//!
//! It fills an accounts topic and an activity topic with N events each once (kept and reused by
//! later runs with the same N, since filling takes longer than measuring), then measures in the
//! same run: the read-through (librdkafka's poll loop, records looked at in place: the client's
//! ceiling); (a) raw consumption through eventline's group consumer with no processing; (b) a
//! naive worker that validates and applies each event in its own transaction, as hand-written
//! consumers do (on the first `--naive-events`, default 20,000, since it is slow); the
//! eventline worker process for (c) `account_balances` (a Rust state machine with refusal rules)
//! and (d) `daily_activity` (a declarative aggregate), each with the default lanes and with one
//! (c1, d1), and on the same traffic with its personal fields sealed as the gateway seals them
//! (cs, ds: topics of their own, filled once), printing its rate, the CPU the worker and
//! PostgreSQL spent per event (from /proc), its peak RSS and its batches; (e) `daily_activity` catching up a backlog of N events (a
//! topic of its own) while 1,000 events/s keep arriving, then publish→visible latency of what
//! arrives after it has caught up; and apply-only: batches of `account_balances` fed straight
//! to the projection and PostgreSQL, no broker.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use eventline_consumers::projections::{Applicable, Handler};
use eventline_core::cipher::KeyEncryptionKey;
use eventline_core::config::Settings;
use eventline_core::contract::ValidatedEvent;
use eventline_core::registry::Registry;
use eventline_kafka::consumer::{ConsumerEvent, GroupConsumer, StartingOffsets, TopicPartition};
use eventline_producers::publisher::Publisher;
use eventline_producers::sealing::Sealer;
use eventline_reference::account_balances::AccountBalances;
use eventline_reference::events::AccountEvent;
use eventline_reference::loadgen::{AccountsTraffic, ActivityTraffic};
use eventline_store::runtime::ReadEvent;
use eventline_store::subject_keys::KeyRing;

mod support;
use support::{
    fresh_store, number_option, peak_rss_kb, percentile, run_worker, spawn_worker, text_option, topic_records,
};

/// Apply-only batches: the size a worker behind its topics writes (`worker.batch_max_events`).
const BATCH: usize = 5000;

struct FromTheStart;

impl StartingOffsets for FromTheStart {
    fn starting_offsets(&self, partitions: &[TopicPartition]) -> Vec<Option<i64>> {
        vec![None; partitions.len()]
    }
}

struct Options {
    events: usize,
    accounts: usize,
    naive_events: usize,
    /// The measures to take (`read`, `a`, `b`, `c`, `c1`, `cs`, `d`, `d1`, `ds`, `e`, `apply`); all
    /// by default.
    only: Option<Vec<String>>,
}

impl Options {
    fn measures(&self, measure: &str) -> bool {
        self.only.as_ref().is_none_or(|only| only.iter().any(|m| m == measure))
    }
}

fn options() -> Options {
    let mut options = Options {
        events: number_option("--events", 1_000_000),
        accounts: number_option("--accounts", 10_000),
        naive_events: number_option("--naive-events", 20_000),
        only: text_option("--only").map(|list| list.split(',').map(|m| m.trim().to_string()).collect()),
    };
    options.naive_events = options.naive_events.min(options.events);
    options
}

/// The key-encryption key the sealed topics were filled with (their data keys are not kept: the
/// worker never opens what it applies).
const BENCH_KEK: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// Fills `topic` up to `events` records once (later runs with the same N reuse it) with the
/// traffic `make` generates for an id prefix, `sealed`: each event's personal fields sealed under
/// its subject's key as the gateway seals them; returns how many records the topic holds.
async fn fill_once(
    settings: &Settings,
    registry: &Arc<Registry>,
    topic: &str,
    events: usize,
    sealed: bool,
    make: impl FnOnce(&str) -> Box<dyn Iterator<Item = ValidatedEvent> + Send>,
) -> usize {
    let present = topic_records(settings, topic).await;
    if present < events {
        let missing = events - present;
        println!(
            "filling {topic} with {missing} events{} (once; later runs reuse it)",
            if sealed { ", personal data sealed" } else { "" }
        );
        let keys_db = settings.database_url.with_database(&format!("eventline_bench_keys_{}", rand::random::<u32>()));
        let sealer = match sealed {
            true => {
                let keys = fresh_store(&keys_db, settings).await;
                let kek = KeyEncryptionKey::from_base64(BENCH_KEK).unwrap();
                Some(Sealer::new(registry.clone(), KeyRing::new(keys, kek)))
            }
            false => None,
        };
        let publisher = Publisher::connect(settings, registry.clone()).await.unwrap();
        let started = Instant::now();
        let mut traffic = make(&format!("fill{present}"));
        let mut published = 0;
        while published < missing {
            let mut chunk: Vec<ValidatedEvent> = traffic.by_ref().take((missing - published).min(5_000)).collect();
            published += chunk.len();
            if let Some(sealer) = &sealer {
                chunk = sealer.seal_all(chunk).await.expect("sealed");
            }
            for result in publisher.publish_all(&chunk).await {
                result.expect("published");
            }
            eprint!("\r  {published}/{missing}");
        }
        eprintln!();
        println!("  filled at {:.0} events/s", rate(missing, started.elapsed()));
        if sealed {
            // The ring's erasure listener lets go of the database once the ring is dropped, and
            // may reconnect once in between.
            drop(sealer);
            let mut attempts = 0;
            while let Err(error) = eventline_store::drop_database(&keys_db).await {
                attempts += 1;
                assert!(attempts < 20, "cannot drop {}: {error}", keys_db.database_name());
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
    topic_records(settings, topic).await
}

/// A group consumer of `topic` that starts every partition at its beginning.
async fn subscribe_from_start(settings: &Settings, group: &str, topic: &str) -> GroupConsumer {
    GroupConsumer::subscribe(
        &settings.kafka,
        group,
        &[topic.to_string()],
        Arc::new(FromTheStart),
        settings.connect_timeout,
    )
    .await
    .unwrap()
}

fn rate(events: usize, elapsed: Duration) -> f64 {
    events as f64 / elapsed.as_secs_f64()
}

#[tokio::main]
async fn main() {
    let options = options();
    let mut env: HashMap<String, String> =
        std::env::vars().filter(|(k, _)| !k.starts_with("EVENTLINE_NAMESPACE")).collect();
    let namespace = format!("bench-runtime-n{}-a{}", options.events, options.accounts);
    env.insert("EVENTLINE_NAMESPACE".into(), namespace.clone());
    let settings = Settings::load_from(None, &env).expect("settings");
    let registry = Arc::new(eventline_reference::registry().expect("registry"));
    let topic = settings.namespace.topic("accounts.events");

    // The topics, filled once.
    let total = fill_once(&settings, &registry, &topic, options.events, false, |prefix| {
        Box::new(AccountsTraffic::new(registry.clone(), prefix, options.accounts, 7))
    })
    .await;
    let activity = settings.namespace.topic("activity.events");
    let activity_total = fill_once(&settings, &registry, &activity, options.events, false, |prefix| {
        Box::new(ActivityTraffic::new(registry.clone(), prefix, options.accounts, 7))
    })
    .await;

    // The same traffic with its personal fields sealed (every page view holds a session id, an
    // account's opening its owner), in a namespace of its own.
    let mut sealed_env = env.clone();
    // Named by the form sealed values travel in, so topics filled by an older build are not read.
    let form = eventline_core::cipher::SHORT_PREFIX.trim_end_matches('.');
    sealed_env.insert("EVENTLINE_NAMESPACE".into(), format!("{namespace}-sealed-{form}"));
    let sealed_totals = if options.measures("cs") || options.measures("ds") {
        let sealed_settings = Settings::load_from(None, &sealed_env).expect("settings");
        let accounts = fill_once(
            &sealed_settings,
            &registry,
            &sealed_settings.namespace.topic("accounts.events"),
            options.events,
            true,
            |prefix| Box::new(AccountsTraffic::new(registry.clone(), prefix, options.accounts, 7)),
        )
        .await;
        let activity = fill_once(
            &sealed_settings,
            &registry,
            &sealed_settings.namespace.topic("activity.events"),
            options.events,
            true,
            |prefix| Box::new(ActivityTraffic::new(registry.clone(), prefix, options.accounts, 7)),
        )
        .await;
        (accounts, activity)
    } else {
        (0, 0)
    };

    println!(
        "runtime benchmark: {total} events on {topic} (6 partitions), {} cores",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    // The client's ceiling: librdkafka's poll loop, records looked at in place.
    if options.measures("read") {
        let ceiling =
            eventline_kafka::reader::read_through(&settings.kafka, &topic, settings.connect_timeout).await.unwrap();
        assert_eq!(ceiling.records as usize, total, "the read-through saw every record");
        let ceiling_rate = rate(total - 1, ceiling.elapsed);
        println!(
            "    read-through (librdkafka poll loop, no copy)  {ceiling_rate:>10.0} events/s   ({:.0} MB/s)",
            ceiling.bytes as f64 / 1e6 / ceiling.elapsed.as_secs_f64()
        );
    }

    // (a) Raw consumption.
    let raw = if options.measures("a") {
        let group = format!("{namespace}.raw-{}", rand::random::<u32>());
        let mut consumer = subscribe_from_start(&settings, &group, &topic).await;
        let mut seen = 0usize;
        let mut started = None;
        while seen < total {
            if let Ok(ConsumerEvent::Record(record)) = consumer.next().await {
                started.get_or_insert_with(Instant::now);
                std::hint::black_box(&record.payload);
                seen += 1;
            }
        }
        let raw = rate(seen - 1, started.unwrap().elapsed());
        consumer.close().await;
        println!("(a) raw consume (group consumer, no processing) {raw:>10.0} events/s");
        Some(raw)
    } else {
        None
    };

    // (b) A naive worker: one transaction per event.
    let naive = if options.measures("b") {
        let naive_db = settings.database_url.with_database(&format!("eventline_bench_naive_{}", rand::random::<u32>()));
        let store = fresh_store(&naive_db, &settings).await;
        let group = format!("{namespace}.naive-{}", rand::random::<u32>());
        let mut consumer = subscribe_from_start(&settings, &group, &topic).await;
        let mut positions: HashMap<TopicPartition, Option<i64>> = HashMap::new();
        let mut applied = 0usize;
        let mut started = None;
        while applied < options.naive_events {
            let Ok(ConsumerEvent::Record(record)) = consumer.next().await else { continue };
            started.get_or_insert_with(Instant::now);
            let event = registry.validate_slice(record.payload.as_deref().unwrap_or_default()).expect("valid");
            let time = event.envelope().time.unwrap_or_default();
            let payload = AccountBalances::decode(&event).expect("an accounts event");
            let applicable = Applicable {
                event,
                payload,
                time,
                topic: record.topic.clone(),
                partition: record.partition,
                offset: record.offset,
            };
            let mut tx = store.begin().await.unwrap();
            let state = AccountBalances::load(&mut tx, &[&applicable]).await.unwrap();
            let folded = AccountBalances::fold(state, &[&applicable]);
            AccountBalances::save(&mut tx, folded.state).await.unwrap();
            let tp = record.topic_partition();
            let expected = positions.get(&tp).copied().flatten();
            tx.advance_checkpoint("naive", (&tp.topic, tp.partition), expected, record.offset + 1, "bench")
                .await
                .unwrap();
            tx.commit().await.unwrap();
            positions.insert(tp, Some(record.offset + 1));
            applied += 1;
        }
        let naive = rate(applied, started.unwrap().elapsed());
        consumer.close().await;
        store.close().await;
        eventline_store::drop_database(&naive_db).await.unwrap();
        println!("(b) naive worker (a transaction per event)      {naive:>10.0} events/s   (first {applied} events)");
        Some(naive)
    } else {
        None
    };

    // (c) The eventline worker, as a process, for a state machine and for an aggregate, each
    // also with one lane (one batch written at a time, as before lanes).
    println!("    eventline worker (a process), from its first commit to the last; CPU per event of the worker and of PostgreSQL");
    let runs = [
        ("c", "(c) account_balances (Rust, state machine)", "account_balances", total, None, None),
        ("c1", "(c1) the same, one lane", "account_balances", total, Some("1"), None),
        ("cs", "(cs) the same as (c), personal data sealed", "account_balances", sealed_totals.0, None, Some("c")),
        ("d", "(d) daily_activity (SQL, aggregate)", "daily_activity", activity_total, None, None),
        ("d1", "(d1) the same, one lane", "daily_activity", activity_total, Some("1"), None),
        ("ds", "(ds) the same as (d), personal data sealed", "daily_activity", sealed_totals.1, None, Some("d")),
    ];
    let mut rates: HashMap<&str, f64> = HashMap::new();
    for (measure, label, projection, events, lanes, sealed_of) in runs {
        if !options.measures(measure) {
            continue;
        }
        let db = settings.database_url.with_database(&format!("eventline_bench_worker_{}", rand::random::<u32>()));
        let store = fresh_store(&db, &settings).await;
        let mut run_env = if sealed_of.is_some() { sealed_env.clone() } else { env.clone() };
        if let Some(lanes) = lanes {
            run_env.insert("EVENTLINE_WORKER_LANES".into(), lanes.into());
        }
        let run = run_worker(&run_env, projection, &[], &db, &store, events).await;
        store.close().await;
        eventline_store::drop_database(&db).await.unwrap();
        let per_event = |seconds: f64| seconds * 1e6 / run.events as f64;
        println!(
            "{label:<47} {:>10.0} events/s   {}{}; worker {:.1} us/event, PostgreSQL {:.1} us/event, peak RSS {:.0} MB, {} batches",
            run.events_per_second,
            raw.map_or(String::new(), |raw| format!("= {:.0}% of (a)", 100.0 * run.events_per_second / raw)),
            naive.map_or(String::new(), |naive| format!(", {:.1}x (b)", run.events_per_second / naive)),
            per_event(run.worker_cpu_seconds),
            per_event(run.postgres_cpu_seconds),
            run.peak_rss_kb as f64 / 1024.0,
            run.batches.map_or("?".to_string(), |b| b.to_string()),
        );
        println!("        {}", run.statements_per_batch());
        if let Some(clear) = sealed_of.and_then(|of| rates.get(of)) {
            println!("        sealed: {:.1}% of the clear run's rate", 100.0 * run.events_per_second / clear);
        }
        rates.insert(measure, run.events_per_second);
    }

    if options.measures("e") {
        catching_up(&options, &env, &settings, &registry).await;
    }
    if options.measures("apply") {
        apply_only(&options, &settings, &registry).await;
    }
}

/// (e) Catching up while events keep arriving: daily_activity starts on a backlog of N events
/// (a topic of its own, filled once) while 1,000 events/s are published. Lag 0 is when the
/// committed positions cover the backlog and every live event acknowledged so far; each event
/// published from then on is timed from its publish call to the poll (every 2 ms) that finds a
/// committed position past its offset.
async fn catching_up(options: &Options, env: &HashMap<String, String>, settings: &Settings, registry: &Arc<Registry>) {
    let mut live_env = env.clone();
    live_env.insert("EVENTLINE_NAMESPACE".into(), format!("bench-runtime-live-n{}", options.events));
    let live_settings = Settings::load_from(None, &live_env).expect("settings");
    let live_topic = live_settings.namespace.topic("activity.events");
    let backlog = fill_once(&live_settings, registry, &live_topic, options.events, false, |prefix| {
        Box::new(ActivityTraffic::new(registry.clone(), prefix, options.accounts, 7))
    })
    .await;
    let live_publisher = Arc::new(Publisher::connect(&live_settings, registry.clone()).await.unwrap());
    let db = settings.database_url.with_database(&format!("eventline_bench_live_{}", rand::random::<u32>()));
    let store = fresh_store(&db, settings).await;
    let caught_up = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop_publishing = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (sent_tx, mut sent_rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, i32, i64, bool)>();
    let publishing = {
        let (publisher, caught_up, stop) = (live_publisher.clone(), caught_up.clone(), stop_publishing.clone());
        let mut traffic = ActivityTraffic::new(registry.clone(), &format!("live{}", rand::random::<u32>()), 1000, 11);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(Duration::from_millis(1));
            let mut tasks = tokio::task::JoinSet::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                ticker.tick().await;
                let event = traffic.next().expect("endless traffic");
                let (publisher, caught_up, sent) = (publisher.clone(), caught_up.clone(), sent_tx.clone());
                tasks.spawn(async move {
                    let counts = caught_up.load(std::sync::atomic::Ordering::Relaxed);
                    let at = Instant::now();
                    let position = publisher.publish(&event).await.expect("published");
                    let _ = sent.send((at, position.partition, position.offset, counts));
                });
            }
            while tasks.join_next().await.is_some() {}
        })
    };
    let started = Instant::now();
    let mut worker = spawn_worker(&live_env, "daily_activity", &[], &db);
    let mut pending: Vec<(Instant, i32, i64)> = Vec::new();
    let mut visible: Vec<Duration> = Vec::new();
    let mut caught_up_after = None;
    let mut live_published = 0usize;
    loop {
        tokio::time::sleep(Duration::from_millis(2)).await;
        let positions: HashMap<i32, i64> =
            store.checkpoints("daily_activity").await.unwrap().iter().map(|c| (c.partition, c.next_offset)).collect();
        let now = Instant::now();
        while let Ok((at, partition, offset, counts)) = sent_rx.try_recv() {
            live_published += 1;
            if counts {
                pending.push((at, partition, offset));
            }
        }
        if caught_up_after.is_none() && positions.values().sum::<i64>() as usize >= backlog + live_published {
            caught_up_after = Some(started.elapsed());
            caught_up.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        pending.retain(|(at, partition, offset)| {
            let seen = positions.get(partition).is_some_and(|next| next > offset);
            if seen {
                visible.push(now - *at);
            }
            !seen
        });
        let measured_long_enough = caught_up_after.is_some_and(|at| started.elapsed() > at + Duration::from_secs(20));
        if measured_long_enough && !stop_publishing.load(std::sync::atomic::Ordering::Relaxed) {
            stop_publishing.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        if stop_publishing.load(std::sync::atomic::Ordering::Relaxed) && publishing.is_finished() && pending.is_empty()
        {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(600), "the worker caught up and kept up within 10 minutes");
    }
    let rss_mb = peak_rss_kb(worker.id()) as f64 / 1024.0;
    let _ = std::process::Command::new("kill").args(["-TERM", &worker.id().to_string()]).status();
    let _ = worker.wait();
    store.close().await;
    eventline_store::drop_database(&db).await.unwrap();
    visible.sort();
    println!(
        "(e) daily_activity catching up {backlog} events while 1,000/s arrive: lag 0 after {:.1} s; then {} events publish->visible p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; peak RSS {rss_mb:.0} MB",
        caught_up_after.unwrap().as_secs_f64(),
        visible.len(),
        percentile(&visible, 0.5).as_secs_f64() * 1e3,
        percentile(&visible, 0.99).as_secs_f64() * 1e3,
        visible.last().unwrap().as_secs_f64() * 1e3,
    );
}

/// Apply-only: batches of `account_balances` straight to PostgreSQL, no broker.
async fn apply_only(options: &Options, settings: &Settings, registry: &Arc<Registry>) {
    let apply_db = settings.database_url.with_database(&format!("eventline_bench_apply_{}", rand::random::<u32>()));
    let store = fresh_store(&apply_db, settings).await;
    let events: Vec<Applicable<AccountEvent>> = AccountsTraffic::new(registry.clone(), "apply", options.accounts, 7)
        .take(options.events.min(200_000))
        .map(|event| {
            let time = event.envelope().time.unwrap_or_default();
            let payload = AccountBalances::decode(&event).expect("an accounts event");
            Applicable { event, payload, time, topic: "apply".into(), partition: 0, offset: 0 }
        })
        .collect();
    let started = Instant::now();
    for (n, batch) in events.chunks(BATCH).enumerate() {
        let refs: Vec<&Applicable<AccountEvent>> = batch.iter().collect();
        let mut tx = store.begin().await.unwrap();
        let state = AccountBalances::load(&mut tx, &refs).await.unwrap();
        let folded = AccountBalances::fold(state, &refs);
        AccountBalances::save(&mut tx, folded.state).await.unwrap();
        let first = (n * BATCH) as i64;
        let ids: Vec<ReadEvent> = batch
            .iter()
            .zip(first..)
            .map(|(a, offset)| ReadEvent { event_id: &a.event.envelope().id, topic: "t", partition: 0, offset })
            .collect();
        tx.claim_event_ids("apply", &ids).await.unwrap();
        let expected = (n > 0).then(|| (n * BATCH) as i64);
        tx.advance_checkpoint("apply", ("t", 0), expected, ((n + 1) * BATCH) as i64, "bench").await.unwrap();
        tx.commit().await.unwrap();
    }
    let apply = rate(events.len(), started.elapsed());
    store.close().await;
    eventline_store::drop_database(&apply_db).await.unwrap();
    println!("apply-only (batches of {BATCH}, no broker)           {apply:>10.0} events/s   ({} events)", events.len());
}
