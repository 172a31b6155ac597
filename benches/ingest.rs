//! Ingestion throughput and latency against the real broker and PostgreSQL (start them with
//! `scripts/services.sh up`), all in one run on one broker: `cargo bench --bench ingest`.
//!
//! Rows: (a) raw rdkafka produce of the same serialized events, acks from all replicas (the
//! limit); the gateway process with single-event requests at several concurrencies (requests/s,
//! p50 and p99 latency) and open-loop at 1,000 requests/s; the gateway with batches of 500; and
//! the outbox relay draining rows committed to an outbox table. Then what sealing personal data
//! costs: two gateways alike but for a key-encryption key, each sent batches of account openings
//! (every event holds a personal field, every account a new data subject whose key is made: the
//! worst case) and batches of page views by users whose keys were made before (each holds a
//! session id), rounds taking turns (each round's figures printed): the best rate of each, the
//! median of each round's share, and each gateway's CPU per event (overall, and the median of
//! each round's share).
//! `-- --sealing-only` runs that part alone.

use std::sync::Arc;

use futures::StreamExt;
use std::time::{Duration, Instant};

use eventline_core::config::Settings;
use eventline_core::registry::Registry;
use eventline_kafka::admin;
use eventline_kafka::producer::{EventProducer, OutgoingRecord};
use eventline_producers::publisher::Publisher;
use eventline_reference::loadgen::AccountsTraffic;
use tokio_util::sync::CancellationToken;

mod support;
use support::{database_with_key, percentile, topic_records, HttpProcess};

const RAW_EVENTS: usize = 200_000;
const BATCH_EVENTS: usize = 200_000;
const BATCH_SIZE: usize = 1_000;
/// Batch requests in flight at once.
const BATCH_CONCURRENCY: usize = 16;
const OUTBOX_ROWS: usize = 20_000;
/// Openings and page views per round of the sealing comparison, and the rounds of each. A round
/// of page views takes about two seconds (shorter ones swung more), and there are 21 for a
/// steadier median: the broker, PostgreSQL, the benchmark and both gateways share the machine's
/// cores, so one round's rate can differ from the next by a fifth or more (the median of eleven
/// went from 84 % to 93 % over four runs).
const OPENING_EVENTS: usize = 50_000;
const OPENING_ROUNDS: usize = 7;
const PAGE_VIEW_EVENTS: usize = 250_000;
const PAGE_VIEW_ROUNDS: usize = 21;

/// `n` account openings, each for an account of its own: the most sealing can cost per event.
fn openings(prefix: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            serde_json::json!({"specversion": "1.0", "id": format!("{prefix}-{i}"), "source": "/bench",
                "type": "accounts.AccountOpened", "subject": format!("{prefix}-acc-{i}"),
                "data": {"account_id": format!("{prefix}-acc-{i}"), "owner": format!("Owner {i}"), "currency": "EUR"}})
            .to_string()
        })
        .collect()
}

/// Two gateways compared over alternating rounds.
struct Comparison {
    /// Each gateway's best rate, events/s.
    best: [f64; 2],
    /// The median over rounds of the second's rate as a share of the first's in the same round
    /// (steadier than the best rates when the machine's other load drifts).
    rate_share: f64,
    /// Each gateway's CPU per event over all rounds, µs.
    cpu_per_event: [f64; 2],
    /// The median over rounds of the first's CPU per event as a share of the second's: events
    /// per CPU second, each gateway measured over its own round only.
    cpu_share: f64,
}

/// `rounds` rounds alternating between two gateways; `round` (given a gateway, the round and its
/// index) sends `events` events and gives the rate; `cpu_seconds` reads a gateway's CPU time so
/// far.
async fn alternate<F: std::future::Future<Output = f64>>(
    gateways: &[String; 2],
    rounds: usize,
    events: usize,
    cpu_seconds: impl Fn(usize) -> f64,
    mut round: impl FnMut(&str, usize, usize) -> F,
) -> Comparison {
    let (mut best, mut cpu_total) = ([0.0f64; 2], [0.0f64; 2]);
    let (mut rate_shares, mut cpu_shares) = (Vec::new(), Vec::new());
    for n in 0..rounds {
        let (mut rates, mut cpu) = ([0.0f64; 2], [0.0f64; 2]);
        // Each goes first in every other round, so neither always follows the other's load.
        for i in [n % 2, 1 - n % 2] {
            let base = &gateways[i];
            let before = cpu_seconds(i);
            rates[i] = round(base, n, i).await;
            cpu[i] = cpu_seconds(i) - before;
        }
        best = [best[0].max(rates[0]), best[1].max(rates[1])];
        cpu_total = [cpu_total[0] + cpu[0], cpu_total[1] + cpu[1]];
        rate_shares.push(rates[1] / rates[0]);
        cpu_shares.push(cpu[0] / cpu[1]);
        let per_event = |i: usize| cpu[i] * 1e6 / events as f64;
        eprintln!(
            "  round {n}: {:.0} and {:.0} events/s ({:.1}%), {:.2} and {:.2} µs CPU per event",
            rates[0],
            rates[1],
            100.0 * rates[1] / rates[0],
            per_event(0),
            per_event(1)
        );
    }
    let median = |mut shares: Vec<f64>| {
        shares.sort_by(f64::total_cmp);
        shares[shares.len() / 2]
    };
    let sent = (rounds * events) as f64;
    Comparison {
        best,
        rate_share: median(rate_shares),
        cpu_per_event: cpu_total.map(|seconds| seconds * 1e6 / sent),
        cpu_share: median(cpu_shares),
    }
}

/// Users the page views are by.
const SEEN_USERS: usize = 5_000;

/// `n` page views (each with its session id, personal data) by [`SEEN_USERS`] users of `users`.
fn page_views(prefix: &str, users: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let user = format!("{users}-user-{}", i % SEEN_USERS);
            serde_json::json!({"specversion": "1.0", "id": format!("{prefix}-{i}"), "source": "/bench",
                "type": "activity.PageViewed", "subject": user, "time": "2026-12-04T10:00:00Z",
                "data": {"user_id": user, "path": "/pricing", "session_id": format!("session-{prefix}-{i}")}})
            .to_string()
        })
        .collect()
}

fn events(registry: &Arc<Registry>, prefix: &str, n: usize) -> Vec<String> {
    AccountsTraffic::new(registry.clone(), prefix, 5_000, 11)
        .take(n)
        .map(|e| e.envelope().to_value().to_string())
        .collect()
}

#[tokio::main]
async fn main() {
    let mut env: std::collections::HashMap<String, String> = std::env::vars().collect();
    env.retain(|k, _| !k.starts_with("EVENTLINE_"));
    let run = format!("r{}", rand::random::<u32>());
    // Topics of this run's own, deleted at its end: a run writes gigabytes, which piled up when
    // every run wrote to the same topics. Those of an earlier run that was stopped go first.
    env.insert("EVENTLINE_NAMESPACE".into(), format!("{TOPIC_PREFIX}-{run}"));
    let settings = Settings::load_from(None, &env).expect("settings");
    delete_topics_of(&settings, TOPIC_PREFIX).await;
    let registry = Arc::new(eventline_reference::registry().unwrap());
    let topic = settings.namespace.topic("accounts.events");
    topic_records(&settings, &topic).await;
    let sealing_only = std::env::args().any(|arg| arg == "--sealing-only");
    println!("ingestion benchmark on {topic}, {} cores", std::thread::available_parallelism().map_or(1, |n| n.get()));

    let raw_rate = if sealing_only { f64::NAN } else { raw_produce(&settings, &registry, &topic, &run).await };
    // The gateway, as a process, with API-key authentication.
    let name = format!("eventline_bench_ingest_{}", rand::random::<u32>());
    let (db, store, token) = database_with_key(&settings, &name, 4).await;
    let client = reqwest::Client::builder().pool_max_idle_per_host(64).build().unwrap();
    let gateway = HttpProcess::start("gateway", &env, &db, &client).await;
    let base = gateway.base.clone();
    let bearer = Arc::new(format!("Bearer {token}"));
    let post = |body: String, content_type: &'static str| {
        let request = client
            .post(format!("{base}/v1/events"))
            .header("authorization", bearer.as_str())
            .header("content-type", content_type)
            .body(body);
        async move {
            let started = Instant::now();
            let status = request.send().await.unwrap().status();
            assert_eq!(status, 202);
            started.elapsed()
        }
    };

    if !sealing_only {
        for concurrency in [1usize, 8, 32] {
            let requests = 1_000 * concurrency.min(4);
            let bodies = events(&registry, &format!("{run}-c{concurrency}"), requests);
            let started = Instant::now();
            let mut latencies = Vec::with_capacity(requests);
            for chunk in bodies.chunks(concurrency) {
                let batch: Vec<_> = chunk.iter().map(|b| post(b.clone(), "application/cloudevents+json")).collect();
                latencies.extend(futures::future::join_all(batch).await);
            }
            let rate = requests as f64 / started.elapsed().as_secs_f64();
            latencies.sort();
            println!(
                "gateway, single events, {concurrency:>2} at a time           {rate:>9.0} requests/s   p50 {:>6.2} ms   p99 {:>6.2} ms",
                percentile(&latencies, 0.5).as_secs_f64() * 1e3,
                percentile(&latencies, 0.99).as_secs_f64() * 1e3
            );
        }

        // Open loop: a request every millisecond for five seconds, whatever the answers take.
        let bodies = events(&registry, &format!("{run}-open"), 5_000);
        let mut ticker = tokio::time::interval(Duration::from_millis(1));
        let mut tasks = Vec::with_capacity(bodies.len());
        let started = Instant::now();
        for body in bodies {
            ticker.tick().await;
            tasks.push(tokio::spawn(post(body, "application/cloudevents+json")));
        }
        let mut latencies = Vec::with_capacity(tasks.len());
        for task in tasks {
            latencies.push(task.await.unwrap());
        }
        let offered = latencies.len() as f64 / started.elapsed().as_secs_f64();
        latencies.sort();
        println!(
            "gateway, single events, open loop at 1,000/s        {offered:>9.0} requests/s   p50 {:>6.2} ms   p99 {:>6.2} ms",
            percentile(&latencies, 0.5).as_secs_f64() * 1e3,
            percentile(&latencies, 0.99).as_secs_f64() * 1e3
        );

        let all = events(&registry, &format!("{run}-batch"), BATCH_EVENTS);
        let bodies: Vec<String> = all.chunks(BATCH_SIZE).map(|c| format!("[{}]", c.join(","))).collect();
        let started = Instant::now();
        // Keep BATCH_CONCURRENCY requests in flight at all times.
        let sent: Vec<Duration> =
            futures::stream::iter(bodies.iter().map(|b| post(b.clone(), "application/cloudevents-batch+json")))
                .buffer_unordered(BATCH_CONCURRENCY)
                .collect()
                .await;
        assert_eq!(sent.len(), bodies.len());
        let batch_rate = BATCH_EVENTS as f64 / started.elapsed().as_secs_f64();
        println!(
            "gateway, batches of {BATCH_SIZE}, {BATCH_CONCURRENCY} at a time             {batch_rate:>9.0} events/s   = {:.0}% of (a)",
            100.0 * batch_rate / raw_rate
        );
    }

    // What sealing costs: the same batches of openings through a gateway with a key-encryption
    // key (each new subject's key made and stored) and through the one without.
    let mut sealing_env = env.clone();
    sealing_env.insert("EVENTLINE_KEY_ENCRYPTION_KEY".into(), "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".into());
    let sealing = HttpProcess::start("gateway", &sealing_env, &db, &client).await;
    topic_records(&settings, &settings.namespace.topic("activity.events")).await;
    let send = |base: String, bodies: Vec<String>| {
        let (client, bearer) = (client.clone(), bearer.clone());
        async move {
            let events = bodies.len() * BATCH_SIZE;
            let started = Instant::now();
            futures::stream::iter(bodies.into_iter().map(|body| {
                let request = client
                    .post(format!("{base}/v1/events"))
                    .header("authorization", bearer.as_str())
                    .header("content-type", "application/cloudevents-batch+json")
                    .body(body);
                async move { assert_eq!(request.send().await.unwrap().status(), 202) }
            }))
            .buffer_unordered(BATCH_CONCURRENCY)
            .collect::<Vec<()>>()
            .await;
            events as f64 / started.elapsed().as_secs_f64()
        }
    };
    let batches = |events: Vec<String>| events.chunks(BATCH_SIZE).map(|c| format!("[{}]", c.join(","))).collect();
    let gateways = [gateway.base.clone(), sealing.base.clone()];
    let cpu_seconds = |i: usize| [&gateway, &sealing][i].cpu_seconds();
    // Page views by users seen before (a first round, not measured, makes their keys): what
    // sealing costs once a subject has its key.
    for (i, base) in gateways.iter().enumerate() {
        send(base.to_string(), batches(page_views(&format!("{run}-w-{i}"), &run, SEEN_USERS))).await;
    }
    let views = alternate(&gateways, PAGE_VIEW_ROUNDS, PAGE_VIEW_EVENTS, cpu_seconds, |base, round, i| {
        send(base.to_string(), batches(page_views(&format!("{run}-v{round}-{i}"), &run, PAGE_VIEW_EVENTS)))
    })
    .await;
    print_comparison("page views", &views, &format!("{SEEN_USERS} users, keys made before"));
    // Openings: each event a new subject, whose key is made and stored: the worst case.
    let opened = alternate(&gateways, OPENING_ROUNDS, OPENING_EVENTS, cpu_seconds, |base, round, i| {
        send(base.to_string(), batches(openings(&format!("{run}-s{round}-{i}"), OPENING_EVENTS)))
    })
    .await;
    print_comparison("openings", &opened, "a key made per event");
    sealing.stop();
    gateway.stop();

    if !sealing_only {
        outbox_relay(&settings, &registry, &store, &db, &run).await;
    }
    store.close().await;
    eventline_store::drop_database(&db).await.unwrap();
    delete_topics_of(&settings, &format!("{TOPIC_PREFIX}-{run}.")).await;
}

/// What this benchmark's topics are named after (a run's namespace adds its own name).
const TOPIC_PREFIX: &str = "bench-ingest";

/// Deletes the topics whose names start with `prefix`.
async fn delete_topics_of(settings: &Settings, prefix: &str) {
    let topics = admin::topics_with_prefix(&settings.kafka, prefix, settings.connect_timeout)
        .await
        .expect("the broker answers (scripts/services.sh up)");
    admin::delete_topics(&settings.kafka, &topics, settings.connect_timeout).await.unwrap();
}

/// The rows of a sealing comparison: rates, then CPU per event (steadier than rates when other
/// load on the machine comes and goes).
fn print_comparison(events: &str, comparison: &Comparison, note: &str) {
    let Comparison { best, rate_share, cpu_per_event: cpu, cpu_share } = comparison;
    println!("gateway, batches of {events:<11} without sealing      {:>9.0} events/s", best[0]);
    println!(
        "gateway, batches of {events:<11} sealed per subject   {:>9.0} events/s   = {:.1}% of without, median of rounds {:.1}%   ({note})",
        best[1],
        100.0 * best[1] / best[0],
        100.0 * rate_share
    );
    println!(
        "gateway CPU per event, {events}: {:.2} µs without sealing, {:.2} µs sealed = {:.1}% of the events per CPU second, median of rounds {:.1}%",
        cpu[0],
        cpu[1],
        100.0 * cpu[0] / cpu[1],
        100.0 * cpu_share
    );
}

/// (a) Raw produce: the same records as the gateway's (value, subject as key, the CloudEvents
/// headers), serialized beforehand, straight to rdkafka: events/s.
async fn raw_produce(settings: &Settings, registry: &Arc<Registry>, topic: &str, run: &str) -> f64 {
    let producer =
        EventProducer::connect(&settings.kafka, settings.connect_timeout, Duration::from_secs(30)).await.unwrap();
    let raw: Vec<String> = events(registry, &format!("{run}-raw"), RAW_EVENTS);
    let records: Vec<(String, String, String, String)> = raw
        .iter()
        .map(|payload| {
            let event: serde_json::Value = serde_json::from_str(payload).unwrap();
            let text = |name: &str| event[name].as_str().unwrap().to_string();
            (text("subject"), text("id"), text("type"), event["dataversion"].to_string())
        })
        .collect();
    let started = Instant::now();
    let mut pending = Vec::with_capacity(raw.len());
    for ((key, id, event_type, version), payload) in records.iter().zip(&raw) {
        let headers: [(&str, &[u8]); 4] = [
            ("content-type", b"application/cloudevents+json; charset=UTF-8"),
            ("ce_id", id.as_bytes()),
            ("ce_type", event_type.as_bytes()),
            ("ce_dataversion", version.as_bytes()),
        ];
        let record = OutgoingRecord { topic, key, payload: payload.as_bytes(), headers: &headers };
        pending.push(producer.enqueue(record).await.unwrap());
    }
    for delivery in pending {
        delivery.acknowledged().await.unwrap();
    }
    let raw_rate = RAW_EVENTS as f64 / started.elapsed().as_secs_f64();
    println!("(a) raw rdkafka produce (acks=all)                  {raw_rate:>9.0} events/s");
    raw_rate
}

/// The outbox relay, draining rows already committed.
async fn outbox_relay(
    settings: &Settings,
    registry: &Arc<Registry>,
    store: &eventline_store::Store,
    db: &eventline_core::config::DatabaseUrl,
    run: &str,
) {
    store.install_outbox().await.unwrap();
    let rows = events(registry, &format!("{run}-outbox"), OUTBOX_ROWS);
    let file = std::env::temp_dir().join(format!("eventline-outbox-{run}.csv"));
    let csv: String = rows.iter().map(|r| format!("\"{}\"\n", r.replace('"', "\"\""))).collect();
    std::fs::write(&file, csv).unwrap();
    let copy = format!("\\copy eventline_outbox (event) FROM '{}' WITH (FORMAT csv)", file.display());
    let status = std::process::Command::new("psql").args([db.expose(), "-q", "-c", &copy]).status().unwrap();
    assert!(status.success());
    let _ = std::fs::remove_file(&file);
    let publisher = Publisher::connect(settings, registry.clone()).await.unwrap();
    let shutdown = CancellationToken::new();
    let relay = {
        let (registry, store, shutdown) = (registry.clone(), store.clone(), shutdown.clone());
        tokio::spawn(
            async move { eventline_producers::outbox::run(registry, &publisher, None, &store, shutdown).await },
        )
    };
    let started = Instant::now();
    while store.outbox_backlog().await.unwrap().0 > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let outbox_rate = OUTBOX_ROWS as f64 / started.elapsed().as_secs_f64();
    shutdown.cancel();
    relay.await.unwrap().unwrap();
    println!("outbox relay, {OUTBOX_ROWS} committed rows                 {outbox_rate:>9.0} events/s");
}
