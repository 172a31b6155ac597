//! What the benchmarks share: topics filled once, an `eventline` HTTP process or worker of
//! their own, a database, and percentiles.

// Each benchmark compiles this module and uses part of it.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::process::Child;
use std::time::{Duration, Instant};

use eventline_auth::keys;
use eventline_core::config::{DatabaseUrl, Settings};
use eventline_core::contract::ValidatedEvent;
use eventline_kafka::admin::{self, TopicSpec};
use eventline_producers::publisher::Publisher;
use eventline_store::diagnostics::StatementCalls;
use eventline_store::Store;

/// The number after `--name` on the benchmark's command line, or `default`.
pub fn number_option(name: &str, default: usize) -> usize {
    match text_option(name) {
        Some(value) => value.parse().unwrap_or_else(|_| panic!("{name} takes a whole number, not `{value}`")),
        None => default,
    }
}

/// The word after `--name` on the benchmark's command line.
pub fn text_option(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

/// The value below which a fraction `p` of the `sorted` latencies fall.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Creates and migrates the database `name` on the configured server, with an API key allowed
/// every event type and every read; returns its URL, a pool of `connections` to it, and the key's
/// bearer token.
pub async fn database_with_key(settings: &Settings, name: &str, connections: u32) -> (DatabaseUrl, Store, String) {
    let db = settings.database_url.with_database(name);
    eventline_store::create_database_if_missing(&db, settings.connect_timeout).await.unwrap();
    let store = Store::connect(&db, connections, settings.connect_timeout).await.unwrap();
    migrate(&store).await;
    let key = keys::new_key();
    let scopes = ["read:*".to_string(), "status".to_string()];
    store.insert_api_key(&key.key_id, "bench", &key.secret_hash, &["*".to_string()], &scopes, "bench").await.unwrap();
    (db, store, key.token)
}

/// An `eventline` process serving HTTP on a free port.
pub struct HttpProcess {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
}

impl HttpProcess {
    /// Starts `eventline <command>` with the benchmark's `EVENTLINE_*` settings on `db`, with no
    /// per-key rate limit and warnings-only logs, and waits until it answers.
    pub async fn start(
        command: &str,
        env: &HashMap<String, String>,
        db: &DatabaseUrl,
        client: &reqwest::Client,
    ) -> Self {
        Self::start_with(&[command], env, db, client).await
    }

    /// Like [`HttpProcess::start`], with arguments after the command.
    pub async fn start_with(
        args: &[&str],
        env: &HashMap<String, String>,
        db: &DatabaseUrl,
        client: &reqwest::Client,
    ) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_eventline"))
            .args(args)
            .env_clear()
            .envs(env.iter().filter(|(k, _)| k.starts_with("EVENTLINE_") || *k == "PATH"))
            .env("DATABASE_URL", db.expose())
            .env("EVENTLINE_HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env("EVENTLINE_GATEWAY_RATE_PER_KEY", "1000000")
            .env("RUST_LOG", "warn")
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        while client.get(format!("{base}/healthz")).send().await.is_err() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self { child, base }
    }

    /// CPU seconds the process has used so far.
    pub fn cpu_seconds(&self) -> f64 {
        cpu_seconds(self.child.id())
    }

    /// Stops it as an operator would (SIGTERM) and waits for it to exit.
    pub fn stop(mut self) {
        std::process::Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        self.child.wait().unwrap();
    }
}

/// Creates `topic` (6 partitions) unless it exists; returns how many records it holds.
pub async fn topic_records(settings: &Settings, topic: &str) -> usize {
    admin::create_topics(
        &settings.kafka,
        &[TopicSpec { name: topic.to_string(), partitions: 6, replication_factor: 1 }],
        settings.connect_timeout,
    )
    .await
    .expect("the broker answers (scripts/services.sh up)");
    let watermarks = admin::watermarks(&settings.kafka, topic, settings.connect_timeout).await.unwrap();
    watermarks.iter().map(|w| w.high).sum::<i64>() as usize
}

/// Publishes `events` in chunks, waiting for every acknowledgement; prints progress.
pub async fn publish_all(publisher: &Publisher, events: impl Iterator<Item = ValidatedEvent>, total: usize) {
    let mut events = events;
    let mut published = 0;
    loop {
        let chunk: Vec<ValidatedEvent> = events.by_ref().take(5_000).collect();
        if chunk.is_empty() {
            break;
        }
        for result in publisher.publish_all(&chunk).await {
            result.expect("published");
        }
        published += chunk.len();
        eprint!("\r  {published}/{total}");
    }
    eprintln!();
}

/// Creates and migrates the database `url`.
pub async fn fresh_store(url: &DatabaseUrl, settings: &Settings) -> Store {
    eventline_store::create_database_if_missing(url, settings.connect_timeout).await.unwrap();
    let store = Store::connect(url, 4, settings.connect_timeout).await.unwrap();
    migrate(&store).await;
    store
}

/// The runtime's migrations and the reference projections' own, as `eventline migrate` applies them.
pub async fn migrate(store: &Store) {
    store.migrate().await.unwrap();
    for projection in eventline_reference::projections() {
        projection.migrate(store).await.unwrap();
    }
}

/// A finished worker run: its rate from its first committed batch to the last, its peak RSS, and
/// the CPU the worker and PostgreSQL spent over that span.
pub struct WorkerRun {
    pub events_per_second: f64,
    /// Events applied between its first commit and its last (what the rate and CPU cover).
    pub events: usize,
    pub peak_rss_kb: u64,
    pub worker_cpu_seconds: f64,
    pub postgres_cpu_seconds: f64,
    /// Batches it committed, from its `Worker stopped.` line.
    pub batches: Option<u64>,
    /// The worker's statements over its whole run (round trips: eventline does not pipeline),
    /// most frequent first, from `pg_stat_statements`; `None` where it is not loaded.
    pub statements: Option<Vec<StatementCalls>>,
}

impl WorkerRun {
    /// Statements per committed batch, and the most frequent ones with their calls per batch.
    pub fn statements_per_batch(&self) -> String {
        let (Some(statements), Some(batches)) = (&self.statements, self.batches.filter(|b| *b > 0)) else {
            return "statements per batch: n/a (PostgreSQL without pg_stat_statements)".into();
        };
        let per_batch = |calls: i64| calls as f64 / batches as f64;
        let total: i64 = statements.iter().map(|s| s.calls).sum();
        let top: Vec<String> = statements
            .iter()
            .take(8)
            .map(|s| {
                let words: Vec<&str> = s.query.split_whitespace().take(6).collect();
                format!("{:.2} {}", per_batch(s.calls), words.join(" "))
            })
            .collect();
        format!("{:.1} statements (round trips) per batch: {}", per_batch(total), top.join(" | "))
    }
}

/// Counts of the statements a worker runs in its database, leaving out the benchmark's own
/// (its progress polls and these counts' queries).
struct StatementCounter {
    theirs: HashSet<i64>,
    before: HashMap<i64, StatementCalls>,
}

impl StatementCounter {
    async fn start(store: &Store, projection: &str) -> Option<Self> {
        let first = store.statement_calls().await.unwrap()?;
        store.checkpoints(projection).await.unwrap();
        let before = store.statement_calls().await.unwrap()?;
        let theirs = before
            .iter()
            .filter(|(id, now)| first.get(*id).is_none_or(|then| then.calls != now.calls))
            .map(|(id, _)| *id)
            .collect();
        Some(Self { theirs, before })
    }

    async fn finish(self, store: &Store) -> Option<Vec<StatementCalls>> {
        let after = store.statement_calls().await.unwrap()?;
        let mut worker: Vec<StatementCalls> = after
            .into_iter()
            .filter(|(id, _)| !self.theirs.contains(id))
            .map(|(id, mut statement)| {
                statement.calls -= self.before.get(&id).map_or(0, |then| then.calls);
                statement
            })
            .filter(|statement| statement.calls > 0)
            .collect();
        worker.sort_by(|a, b| b.calls.cmp(&a.calls).then_with(|| a.query.cmp(&b.query)));
        Some(worker)
    }
}

/// Starts `eventline worker <projection> <extra_args>` with the benchmark's `EVENTLINE_*`
/// settings on the database `db`; its standard error is piped.
pub fn spawn_worker(env: &HashMap<String, String>, projection: &str, extra_args: &[&str], db: &DatabaseUrl) -> Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_eventline"))
        .args(["worker", projection])
        .args(extra_args)
        .env_clear()
        .envs(env.iter().filter(|(k, _)| k.starts_with("EVENTLINE_") || k.starts_with("OTEL_") || *k == "PATH"))
        .env("DATABASE_URL", db.expose())
        // Warnings, and the worker's start and stop lines (the latter counts its batches).
        .env("RUST_LOG", "warn,eventline_consumers::runtime=info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the eventline binary runs")
}

/// Runs `eventline worker <projection> <extra_args>` with the benchmark's `EVENTLINE_*`
/// settings on `store`'s database `db` until it has committed past `total` offsets, then stops it.
pub async fn run_worker(
    env: &HashMap<String, String>,
    projection: &str,
    extra_args: &[&str],
    db: &DatabaseUrl,
    store: &Store,
    total: usize,
) -> WorkerRun {
    let counter = StatementCounter::start(store, projection).await;
    let child = spawn_worker(env, projection, extra_args, db);
    let mut first: Option<(Instant, i64)> = None;
    let mut cpu_at_first = (0.0, HashMap::new());
    let done = loop {
        let through: i64 = store.checkpoints(projection).await.unwrap().iter().map(|c| c.next_offset).sum();
        if through > 0 && first.is_none() {
            first = Some((Instant::now(), through));
            cpu_at_first = (cpu_seconds(child.id()), postgres_cpu_seconds());
        }
        if through as usize >= total {
            break Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (from, already) = first.expect("the worker made progress");
    let events_per_second = (total - already as usize) as f64 / (done - from).as_secs_f64();
    let peak_rss_kb = peak_rss_kb(child.id());
    let worker_cpu_seconds = cpu_seconds(child.id()) - cpu_at_first.0;
    // Backends started since count from zero; those that ended meanwhile are not counted.
    let postgres_cpu_seconds: f64 =
        postgres_cpu_seconds().iter().map(|(pid, now)| now - cpu_at_first.1.get(pid).copied().unwrap_or(0.0)).sum();
    std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let output = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    let batches = log
        .lines()
        .filter(|line| line.contains("Worker stopped."))
        .find_map(|line| line.split("batches=").nth(1)?.split_whitespace().next()?.parse().ok());
    for line in log.lines().filter(|l| l.contains("WARN") || l.contains("ERROR")) {
        eprintln!("    worker: {line}");
    }
    let statements = match counter {
        Some(counter) => counter.finish(store).await,
        None => None,
    };
    WorkerRun {
        events_per_second,
        events: total - already as usize,
        peak_rss_kb,
        worker_cpu_seconds,
        postgres_cpu_seconds,
        batches,
        statements,
    }
}

/// User and system CPU time of a process so far, from /proc (utime + stime, in clock ticks of
/// 1/100 s on Linux).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at the state, field 3.
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(14) + ticks(15)) / 100.0
}

/// CPU seconds so far of every PostgreSQL process on this machine, by pid.
fn postgres_cpu_seconds() -> HashMap<u32, f64> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return HashMap::new() };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|comm| comm.trim() == "postgres"))
        .map(|pid| (pid, cpu_seconds(pid)))
        .collect()
}

/// CPU seconds so far of this process (the benchmark's own clients).
pub fn own_cpu_seconds() -> f64 {
    cpu_seconds(std::process::id())
}

/// CPU seconds so far of the PostgreSQL processes running now.
pub fn postgres_cpu_total() -> f64 {
    postgres_cpu_seconds().values().sum()
}

/// CPU seconds so far of the local Apache Kafka broker (`scripts/services.sh` runs it here),
/// or None when no broker process runs on this machine.
pub fn broker_cpu_seconds() -> Option<f64> {
    let entries = std::fs::read_dir("/proc").ok()?;
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmdline| cmdline.split(|b| *b == 0).any(|arg| arg == b"kafka.Kafka"))
        })
        .map(cpu_seconds)
}

/// Peak resident set size of a process, from /proc (VmHWM), in KiB.
pub fn peak_rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
