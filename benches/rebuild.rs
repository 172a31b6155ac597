//! Rebuild throughput against the steady consume rate, per reference projection, against the
//! real broker and PostgreSQL (start them with `scripts/services.sh up`). Run with:
//!
//! ```sh
//! cargo bench --bench rebuild                      # 1,000,000 events per topic
//! cargo bench --bench rebuild -- --events 200000 --live-rate 500
//! ```
//!
//! It fills the accounts, projects and activity topics with N events each once (kept for later
//! runs with the same N, since filling them takes longer than measuring). Then for each
//! projection, in one run:
//! (a) steady: `eventline worker <projection>` applies the whole topic into a fresh database,
//! timed from its first commit to the end, as the runtime benchmark's (c) does; (b) rebuild:
//! beside that live worker, which keeps consuming while `--live-rate` events per second are
//! published to the same topic, `eventline rebuild start <projection>` builds a new generation
//! from the earliest offset until it has caught up, timed from its first progress report with
//! records read to the end.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use eventline_core::config::{DatabaseUrl, Settings};
use eventline_core::contract::ValidatedEvent;
use eventline_core::registry::Registry;
use eventline_kafka::admin::{self, TopicSpec};
use eventline_producers::publisher::Publisher;
use eventline_reference::loadgen::{AccountsTraffic, ActivityTraffic, ProjectsTraffic};
use eventline_store::Store;
use tokio_util::sync::CancellationToken;

struct Options {
    events: usize,
    live_rate: u64,
}

fn options() -> Options {
    let mut options = Options { events: 1_000_000, live_rate: 500 };
    let args: Vec<String> = std::env::args().collect();
    let value = |name: &str| -> Option<u64> {
        args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).map(|v| v.parse().expect("a number"))
    };
    if let Some(n) = value("--events") {
        options.events = n as usize;
    }
    if let Some(n) = value("--live-rate") {
        options.live_rate = n;
    }
    options
}

fn traffic(registry: &Arc<Registry>, topic: &str, prefix: &str) -> Box<dyn Iterator<Item = ValidatedEvent> + Send> {
    match topic {
        "accounts.events" => Box::new(AccountsTraffic::new(registry.clone(), prefix, 10_000, 7)),
        "projects.events" => Box::new(ProjectsTraffic::new(registry.clone(), prefix, 2_000, 7)),
        _ => Box::new(ActivityTraffic::new(registry.clone(), prefix, 10_000, 7)),
    }
}

fn eventline(args: &[&str], env: &HashMap<String, String>, db: &DatabaseUrl) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_eventline"));
    command
        .args(args)
        .env_clear()
        .envs(env.iter().filter(|(k, _)| k.starts_with("EVENTLINE_") || *k == "PATH"))
        .env("DATABASE_URL", db.expose())
        .env("RUST_LOG", "warn");
    command
}

fn stop(mut child: Child) {
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    child.wait().unwrap();
}

async fn end_offsets(settings: &Settings, topic: &str) -> i64 {
    admin::watermarks(&settings.kafka, topic, settings.connect_timeout).await.unwrap().iter().map(|w| w.high).sum()
}

#[tokio::main]
async fn main() {
    let options = options();
    let mut env: HashMap<String, String> =
        std::env::vars().filter(|(k, _)| !k.starts_with("EVENTLINE_NAMESPACE")).collect();
    let namespace = format!("bench-rebuild-n{}", options.events);
    env.insert("EVENTLINE_NAMESPACE".into(), namespace.clone());
    let settings = Settings::load_from(None, &env).expect("settings");
    let registry = Arc::new(eventline_reference::registry().expect("registry"));
    let publisher = Arc::new(Publisher::connect(&settings, registry.clone()).await.unwrap());

    for base in ["accounts.events", "projects.events", "activity.events"] {
        let topic = settings.namespace.topic(base);
        admin::create_topics(
            &settings.kafka,
            &[TopicSpec { name: topic.clone(), partitions: 6, replication_factor: 1 }],
            settings.connect_timeout,
        )
        .await
        .expect("the broker answers (scripts/services.sh up)");
        let present = end_offsets(&settings, &topic).await as usize;
        if present < options.events {
            let missing = options.events - present;
            println!("filling {topic} with {missing} events (once; later runs reuse it)");
            let mut events = traffic(&registry, base, &format!("fill{present}")).take(missing);
            let mut published = 0;
            loop {
                let chunk: Vec<_> = events.by_ref().take(5_000).collect();
                if chunk.is_empty() {
                    break;
                }
                for result in publisher.publish_all(&chunk).await {
                    result.expect("published");
                }
                published += chunk.len();
                eprint!("\r  {published}/{missing}");
            }
            eprintln!();
        }
    }
    println!(
        "rebuild benchmark: {} events per topic (6 partitions), live traffic {} events/s during rebuilds, {} cores",
        options.events,
        options.live_rate,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "{:<22} {:>16} {:>16} {:>9} {:>12}",
        "projection", "steady (ev/s)", "rebuild (ev/s)", "ratio", "rebuild time"
    );

    for (projection, base) in [
        ("account_balances", "accounts.events"),
        ("project_progress", "projects.events"),
        ("daily_activity", "activity.events"),
        ("feature_usage_daily", "activity.events"),
    ] {
        let topic = settings.namespace.topic(base);
        let db = settings.database_url.with_database(&format!("eventline_bench_rebuild_{}", rand::random::<u32>()));
        eventline_store::create_database_if_missing(&db, settings.connect_timeout).await.unwrap();
        let store = Store::connect(&db, 4, settings.connect_timeout).await.unwrap();
        // The runtime's migrations, then the reference projections' own.
        store.migrate().await.unwrap();
        for projection in eventline_reference::projections() {
            projection.migrate(&store).await.unwrap();
        }

        // (a) Steady: the live worker applies the whole topic.
        let total = end_offsets(&settings, &topic).await;
        let worker = eventline(&["worker", projection], &env, &db).spawn().expect("the eventline binary runs");
        let mut first: Option<(Instant, i64)> = None;
        let done = loop {
            let through: i64 = store.checkpoints(projection).await.unwrap().iter().map(|c| c.next_offset).sum();
            if through > 0 && first.is_none() {
                first = Some((Instant::now(), through));
            }
            if through >= total {
                break Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let (from, already) = first.expect("the worker made progress");
        let steady = (total - already) as f64 / (done - from).as_secs_f64();

        // (b) Rebuild beside it while live traffic goes on.
        let live = CancellationToken::new();
        let writer = {
            let (publisher, registry, live, rate) =
                (publisher.clone(), registry.clone(), live.clone(), options.live_rate);
            let base = base.to_string();
            tokio::spawn(async move {
                let mut events = traffic(&registry, &base, &format!("live{}", rand::random::<u32>()));
                let per_tick = (rate / 10).max(1) as usize;
                let mut ticks = tokio::time::interval(Duration::from_millis(100));
                let mut sent = 0usize;
                while !live.is_cancelled() {
                    ticks.tick().await;
                    let chunk: Vec<_> = events.by_ref().take(per_tick).collect();
                    for result in publisher.publish_all(&chunk).await {
                        result.expect("published");
                    }
                    sent += chunk.len();
                }
                sent
            })
        };
        let started = Instant::now();
        let output = eventline(&["rebuild", "start", projection, "--progress", "json"], &env, &db)
            .stdout(Stdio::piped())
            .output()
            .expect("rebuild runs");
        let elapsed = started.elapsed();
        live.cancel();
        let sent = writer.await.unwrap();
        assert!(output.status.success(), "rebuild failed: {}", String::from_utf8_lossy(&output.stderr));
        // Rate over the reports: from the first with records read to the caught-up one.
        let reports: Vec<(f64, i64)> = String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["event"] == "progress")
            .map(|v| (v["progress"]["elapsed_seconds"].as_f64().unwrap(), v["progress"]["done"].as_i64().unwrap()))
            .collect();
        let first_read = reports.iter().position(|(_, done)| *done > 0).expect("the rebuild read records");
        let (start_at, start_done) = reports[first_read];
        let (end_at, end_done) = *reports.last().unwrap();
        let rebuild = (end_done - start_done) as f64 / (end_at - start_at);
        println!(
            "{projection:<22} {steady:>16.0} {rebuild:>16.0} {:>8.0}% {:>10.1} s   ({sent} live events meanwhile)",
            100.0 * rebuild / steady,
            elapsed.as_secs_f64()
        );
        stop(worker);
        store.close().await;
        eventline_store::drop_database(&db).await.unwrap();
    }
}
