//! The operator console with many projections, on the real broker and PostgreSQL (start them with
//! `scripts/services.sh up`):
//!
//! ```sh
//! cargo bench --bench console                                   # 500 projections × 12 partitions
//! cargo bench --bench console -- --projections 100 --pages 20 --refresh-ms 1000
//! ```
//!
//! N copies of the tutorial's declarative `stock` projection (examples/inventory), each with its
//! own table, all reading one topic of P partitions that holds events none has applied (so every
//! partition has lag). Then `eventline console` serves them, and this prints:
//! - the overview page's latency (`GET /console`, p50 and p99 over 200 loads while a page listens,
//!   so the status snapshot is fresh and the time is the page's own), against the baseline of
//!   `GET /v1/projections` (the same status read on every request, as a page without the
//!   console's shared snapshot would);
//! - how long one status snapshot takes;
//! - the statements PostgreSQL ran per snapshot (`pg_stat_statements`) with one page listening
//!   and with `--pages` pages listening: the number of pages must not change it;
//! - a worker's rate (one of the projections applying the topic, `--events` of them, timed from
//!   its first commit) with no page open and with `--pages` pages listening, rounds alternating.

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use eventline_core::config::Settings;
use eventline_kafka::admin::{self, TopicSpec};
use support::{
    broker_cpu_seconds, database_with_key, number_option, own_cpu_seconds, percentile, postgres_cpu_total, HttpProcess,
};

const PAGE_LOADS: usize = 200;
/// How long each queries-per-snapshot measurement listens.
const LISTEN: Duration = Duration::from_secs(10);

/// A copy of the `stock` projection named `stock_<i>`, with its own table.
fn write_projection(root: &Path, i: usize) {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/inventory/projections/stock");
    let target = root.join(format!("stock_{i}"));
    std::fs::create_dir_all(target.join("migrations")).unwrap();
    let renamed = |text: String| text.replace("stock_levels", &format!("stock_levels_{i}"));
    let toml = std::fs::read_to_string(source.join("projection.toml")).unwrap();
    std::fs::write(
        target.join("projection.toml"),
        renamed(toml.replace("name = \"stock\"", &format!("name = \"stock_{i}\""))),
    )
    .unwrap();
    std::fs::write(target.join("apply.sql"), renamed(std::fs::read_to_string(source.join("apply.sql")).unwrap()))
        .unwrap();
    let migration = std::fs::read_to_string(source.join("migrations/1_stock_levels.sql")).unwrap();
    std::fs::write(target.join("migrations/1_stock_levels.sql"), renamed(migration)).unwrap();
}

/// Events per second `worker` (`eventline worker stock_0`, just started) applies until the
/// projection has passed `total` records, timed from its first commit.
async fn worker_rate(store: &eventline_store::Store, mut worker: std::process::Child, total: i64) -> f64 {
    let applied = || async { store.checkpoints("stock_0").await.unwrap().iter().map(|c| c.next_offset).sum::<i64>() };
    let (started, from) = loop {
        let now = applied().await;
        if now > 0 {
            break (Instant::now(), now);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    while applied().await < total {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let rate = (total - from) as f64 / started.elapsed().as_secs_f64();
    std::process::Command::new("kill").args(["-TERM", &worker.id().to_string()]).status().unwrap();
    worker.wait().unwrap();
    rate
}

/// `name value` of the process's `/metrics`.
async fn metric(client: &reqwest::Client, base: &str, name: &str) -> f64 {
    let text = client.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    let prefix = format!("{name} ");
    text.lines().find_map(|l| l.strip_prefix(&prefix)).map_or(0.0, |v| v.trim().parse().unwrap())
}

/// Every statement PostgreSQL has run in the bench's database so far.
async fn statements(store: &eventline_store::Store) -> i64 {
    let calls = store.statement_calls().await.unwrap().expect("pg_stat_statements is loaded (scripts/services.sh)");
    calls.values().map(|s| s.calls).sum()
}

/// What [`LISTEN`] seconds of open pages cost.
struct Listened {
    statements: i64,
    snapshots: f64,
    console_cpu_seconds: f64,
    broker_cpu_seconds: Option<f64>,
    postgres_cpu_seconds: f64,
    /// The benchmark's own, reading the pages' streams.
    reader_cpu_seconds: f64,
}

impl Listened {
    fn per_snapshot(&self, total: f64) -> f64 {
        total / self.snapshots.max(1.0)
    }

    /// The statements and the console's CPU per snapshot (above what the same time costs it with
    /// no page open, `idle`), and the broker's CPU per second: its own housekeeping varies by
    /// more than a snapshot costs it, so it is shown beside the idle figure, not subtracted.
    fn summary(&self, pages: usize, idle: &Listened) -> String {
        format!(
            "{pages} page(s) {} snapshots, {} statements ({:.0} per snapshot), console CPU {:.1} ms per snapshot above idle; {}",
            self.snapshots,
            self.statements,
            self.per_snapshot(self.statements as f64),
            1e3 * self.per_snapshot(self.console_cpu_seconds - idle.console_cpu_seconds),
            self.broker_load()
        )
    }

    /// CPU per second of the other processes: the broker, PostgreSQL, the pages' reader.
    fn broker_load(&self) -> String {
        let per_second = |cpu: f64| 1e3 * cpu / LISTEN.as_secs_f64();
        let broker =
            self.broker_cpu_seconds.map_or("no local broker".into(), |cpu| format!("{:.0} ms/s", per_second(cpu)));
        format!(
            "CPU: broker {broker}, PostgreSQL {:.0} ms/s, page reader {:.0} ms/s",
            per_second(self.postgres_cpu_seconds),
            per_second(self.reader_cpu_seconds)
        )
    }
}

/// Opens `pages` live streams with `cookie` and listens for [`LISTEN`].
async fn listening(
    client: &reqwest::Client,
    console: &HttpProcess,
    cookie: &str,
    store: &eventline_store::Store,
    pages: usize,
) -> Listened {
    let base = &console.base;
    let mut streams = Vec::new();
    for _ in 0..pages {
        let response = client.get(format!("{base}/console/live")).header("cookie", cookie).send().await.unwrap();
        assert_eq!(response.status(), 200);
        streams.push(tokio::spawn(async move {
            let mut response = response;
            while let Ok(Some(_)) = response.chunk().await {}
        }));
    }
    // Let every stream get its first snapshot, then count from a quiet start.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (statements_before, snapshots_before) =
        (statements(store).await, metric(client, base, "eventline_console_snapshots_total").await);
    let cpu = || (console.cpu_seconds(), broker_cpu_seconds(), postgres_cpu_total(), own_cpu_seconds());
    let before = cpu();
    tokio::time::sleep(LISTEN).await;
    let after = cpu();
    let statements_after = statements(store).await;
    let snapshots_after = metric(client, base, "eventline_console_snapshots_total").await;
    for stream in streams {
        stream.abort();
    }
    Listened {
        // The two reads of pg_stat_statements count themselves: left out.
        statements: statements_after - statements_before - 2,
        snapshots: snapshots_after - snapshots_before,
        console_cpu_seconds: after.0 - before.0,
        broker_cpu_seconds: before.1.zip(after.1).map(|(before, after)| after - before),
        postgres_cpu_seconds: after.2 - before.2,
        reader_cpu_seconds: after.3 - before.3,
    }
}

#[tokio::main]
async fn main() {
    let projections = number_option("--projections", 500);
    let partitions = number_option("--partitions", 12);
    let pages = number_option("--pages", 50);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    for i in 0..projections {
        write_projection(dir.path(), i);
    }
    let mut env: HashMap<String, String> = std::env::vars().filter(|(k, _)| !k.starts_with("EVENTLINE_")).collect();
    env.insert("EVENTLINE_NAMESPACE".into(), format!("bench-console-{}", std::process::id()));
    env.insert("EVENTLINE_SCHEMAS_DIR".into(), root.join("examples/inventory/schemas").display().to_string());
    env.insert("EVENTLINE_PROJECTIONS_DIR".into(), dir.path().display().to_string());
    let refresh_ms = number_option("--refresh-ms", 2000);
    env.insert("EVENTLINE_CONSOLE_REFRESH_MS".into(), refresh_ms.to_string());
    let settings = Settings::load_from(None, &env).expect("settings");
    let topic = settings.namespace.topic("inventory.events");
    admin::create_topics(
        &settings.kafka,
        &[TopicSpec { name: topic.clone(), partitions: partitions as i32, replication_factor: 1 }],
        settings.connect_timeout,
    )
    .await
    .expect("the broker answers (scripts/services.sh up)");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "console benchmark: {projections} projections × {partitions} partitions, {pages} pages, a snapshot every {refresh_ms} ms, {cores} cores"
    );

    let (db, store, token) = database_with_key(&settings, &format!("bench_console_{}", std::process::id()), 2).await;
    let eventline = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_eventline"))
            .args(args)
            .envs(env.iter().filter(|(k, _)| k.starts_with("EVENTLINE_")))
            .env("DATABASE_URL", db.expose())
            .output()
            .unwrap();
        assert!(output.status.success(), "eventline {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    };
    let started = Instant::now();
    eventline(&["migrate"]);
    println!("migrate, {projections} projections: {:.1} s", started.elapsed().as_secs_f64());
    let events: String = (0..partitions * 20)
        .map(|i| {
            format!(
                "{{\"specversion\":\"1.0\",\"id\":\"r{i}\",\"source\":\"/bench\",\"type\":\"inventory.StockReceived\",\"subject\":\"sku-{i}\",\"data\":{{\"sku\":\"sku-{i}\",\"quantity\":5}}}}\n"
            )
        })
        .collect();
    let file = dir.path().join("events.ndjson");
    std::fs::write(&file, events).unwrap();
    eventline(&["publish", file.to_str().unwrap()]);

    let client = reqwest::Client::new();
    let console = HttpProcess::start("console", &env, &db, &client).await;
    let cookie = format!("eventline_console={token}");

    // The overview, with one page listening (snapshots stay fresh): the page's own time.
    let listener = {
        let response =
            client.get(format!("{}/console/live", console.base)).header("cookie", &cookie).send().await.unwrap();
        tokio::spawn(async move {
            let mut response = response;
            while let Ok(Some(_)) = response.chunk().await {}
        })
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut times = Vec::with_capacity(PAGE_LOADS);
    let mut size = 0;
    for _ in 0..PAGE_LOADS {
        let started = Instant::now();
        let response = client.get(format!("{}/console", console.base)).header("cookie", &cookie).send().await.unwrap();
        assert_eq!(response.status(), 200);
        size = response.bytes().await.unwrap().len();
        times.push(started.elapsed());
    }
    times.sort();
    listener.abort();
    println!(
        "GET /console (overview, {} KB): p50 {:.1} ms, p99 {:.1} ms",
        size / 1024,
        percentile(&times, 0.5).as_secs_f64() * 1e3,
        percentile(&times, 0.99).as_secs_f64() * 1e3
    );

    // Baseline: the same status read per request (`GET /v1/projections`), 20 loads.
    let api = HttpProcess::start("api", &env, &db, &client).await;
    let mut baseline = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        let response = client.get(format!("{}/v1/projections", api.base)).bearer_auth(&token).send().await.unwrap();
        assert_eq!(response.status(), 200);
        response.bytes().await.unwrap();
        baseline.push(started.elapsed());
    }
    baseline.sort();
    api.stop();
    println!(
        "baseline, GET /v1/projections (status read per request): p50 {:.1} ms, p99 {:.1} ms",
        percentile(&baseline, 0.5).as_secs_f64() * 1e3,
        percentile(&baseline, 0.99).as_secs_f64() * 1e3
    );

    // Statements per snapshot, one page listening against many.
    let idle = listening(&client, &console, &cookie, &store, 0).await;
    let one = listening(&client, &console, &cookie, &store, 1).await;
    let many = listening(&client, &console, &cookie, &store, pages).await;
    println!(
        "listening {}s:\n  no page: {}\n  {}\n  {}",
        LISTEN.as_secs(),
        idle.broker_load(),
        one.summary(1, &idle),
        many.summary(pages, &idle)
    );
    let snapshots = metric(&client, &console.base, "eventline_console_snapshot_seconds_count").await;
    let seconds = metric(&client, &console.base, "eventline_console_snapshot_seconds_sum").await;
    println!("one status snapshot: {:.0} ms on average over {snapshots}", 1e3 * seconds / snapshots.max(1.0));
    // A worker's rate with no page open, then with many listening, alternating.
    let events = number_option("--events", 100_000);
    let more: String = (0..events)
        .map(|i| {
            format!(
                "{{\"specversion\":\"1.0\",\"id\":\"w{i}\",\"source\":\"/bench\",\"type\":\"inventory.StockReceived\",\"subject\":\"sku-{}\",\"data\":{{\"sku\":\"sku-{}\",\"quantity\":1}}}}\n",
                i % 5000,
                i % 5000
            )
        })
        .collect();
    std::fs::write(&file, more).unwrap();
    eventline(&["publish", file.to_str().unwrap()]);
    let total = (partitions * 20 + events) as i64;
    let mut rates = [Vec::new(), Vec::new()];
    for round in 0..6 {
        let listening_pages = if round % 2 == 0 { 0 } else { pages };
        eventline(&["replay", "stock_0", "--from", "earliest"]);
        let mut streams = Vec::new();
        for _ in 0..listening_pages {
            let response =
                client.get(format!("{}/console/live", console.base)).header("cookie", &cookie).send().await.unwrap();
            streams.push(tokio::spawn(async move {
                let mut response = response;
                while let Ok(Some(_)) = response.chunk().await {}
            }));
        }
        let worker = std::process::Command::new(env!("CARGO_BIN_EXE_eventline"))
            .args(["worker", "stock_0"])
            .envs(env.iter().filter(|(k, _)| k.starts_with("EVENTLINE_")))
            .env("DATABASE_URL", db.expose())
            .env("RUST_LOG", "warn")
            .spawn()
            .unwrap();
        rates[round % 2].push(worker_rate(&store, worker, total).await);
        for stream in streams {
            stream.abort();
        }
    }
    let best = |rates: &[f64]| rates.iter().copied().fold(0.0, f64::max);
    println!(
        "worker applying {total} events: no page open {:.0} events/s (rounds {:?}), {pages} pages listening {:.0} events/s (rounds {:?}) = {:.1}%",
        best(&rates[0]),
        rates[0].iter().map(|r| r.round()).collect::<Vec<_>>(),
        best(&rates[1]),
        rates[1].iter().map(|r| r.round()).collect::<Vec<_>>(),
        100.0 * best(&rates[1]) / best(&rates[0])
    );
    console.stop();
    store.close().await;
}
