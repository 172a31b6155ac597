//! How fast a consumer group moves partitions, with the classic protocol (cooperative-sticky) and
//! with KIP-848's consumer protocol, on the real broker (start it with `scripts/services.sh up`):
//!
//! ```sh
//! cargo bench --bench rebalance                   # 5 rounds per protocol
//! cargo bench --bench rebalance -- --rounds 10
//! ```
//!
//! Each round, in a fresh namespace (6-partition topic, new consumer group): worker A
//! (`eventline worker account_balances --listen`) owns every partition; worker B starts, and the
//! time until B owns a share and A the rest is the **join** time; then B is killed with SIGKILL
//! and the time until A owns all 6 again is the **kill** time. Ownership is read from each
//! worker's `eventline_worker_assigned_partitions` gauge every 10 ms. Both protocols run with the
//! same membership timing: a 6 s session and 1 s heartbeats (the classic protocol's from the
//! client, the consumer protocol's from the broker's `group.consumer.*` settings in
//! scripts/kafka/server.properties), so the kill time is mostly the session timeout running out.

use std::collections::HashMap;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use eventline_core::config::Settings;
use eventline_kafka::admin;

mod support;
use support::{fresh_store, number_option, percentile};

const PARTITIONS: i64 = 6;

/// A worker with its metrics listener.
struct Worker {
    child: Child,
    metrics: String,
}

impl Worker {
    fn start(env: &HashMap<String, String>) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(env!("CARGO_BIN_EXE_eventline"))
            .args(["worker", "account_balances", "--listen", &format!("127.0.0.1:{port}")])
            .env_clear()
            .envs(env.iter().filter(|(k, _)| k.starts_with("EVENTLINE_") || *k == "PATH" || *k == "DATABASE_URL"))
            .env("RUST_LOG", std::env::var("BENCH_WORKER_LOG").unwrap_or_else(|_| "warn".into()))
            .spawn()
            .expect("the eventline binary runs");
        Self { child, metrics: format!("http://127.0.0.1:{port}/metrics") }
    }

    /// Partitions this worker owns now (0 before it answers).
    async fn owned(&self, client: &reqwest::Client) -> i64 {
        let Ok(response) = client.get(&self.metrics).send().await else { return 0 };
        let text = response.text().await.unwrap_or_default();
        text.lines()
            .find(|l| l.starts_with("eventline_worker_assigned_partitions{"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(0, |v| v as i64)
    }

    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    fn stop(mut self) {
        Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        self.child.wait().unwrap();
    }
}

/// Polls every 10 ms until `done` holds; the time it took. Gives up after two minutes.
async fn time_until<F, Fut>(what: &str, mut done: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !done().await {
        assert!(started.elapsed() < Duration::from_secs(120), "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    started.elapsed()
}

struct Round {
    join: Duration,
    kill: Duration,
}

async fn round(base_env: &HashMap<String, String>, protocol: &str, round: usize, client: &reqwest::Client) -> Round {
    let mut env = base_env.clone();
    let namespace = format!("bench-rebalance-{protocol}-{}-{round}", std::process::id());
    env.insert("EVENTLINE_NAMESPACE".into(), namespace.clone());
    env.insert("EVENTLINE_GROUP_PROTOCOL".into(), protocol.into());
    if protocol == "classic" {
        env.insert("EVENTLINE_RDKAFKA_SESSION_TIMEOUT_MS".into(), "6000".into());
        env.insert("EVENTLINE_RDKAFKA_HEARTBEAT_INTERVAL_MS".into(), "1000".into());
    }
    let settings = Settings::load_from(None, &env).expect("settings");
    let topic = settings.namespace.topic("accounts.events");
    let spec = admin::TopicSpec { name: topic.clone(), partitions: PARTITIONS as i32, replication_factor: 1 };
    admin::create_topics(&settings.kafka, &[spec], settings.connect_timeout).await.expect("the broker answers");

    let a = Worker::start(&env);
    time_until("A to own every partition", || async { a.owned(client).await == PARTITIONS }).await;
    let b = Worker::start(&env);
    let join = time_until("B to take a share", || async {
        let (owned_a, owned_b) = (a.owned(client).await, b.owned(client).await);
        owned_b > 0 && owned_a + owned_b == PARTITIONS
    })
    .await;
    b.kill();
    let kill = time_until("A to own every partition again", || async { a.owned(client).await == PARTITIONS }).await;
    a.stop();
    admin::delete_topics(&settings.kafka, &[topic], settings.connect_timeout).await.expect("topic deleted");
    Round { join, kill }
}

fn summary(times: &mut [Duration]) -> String {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    format!(
        "median {:>7.0} ms   min {:>7.0} ms   max {:>7.0} ms",
        ms(percentile(times, 0.5)),
        ms(times[0]),
        ms(times[times.len() - 1])
    )
}

#[tokio::main]
async fn main() {
    let rounds = number_option("--rounds", 5);
    let mut env: HashMap<String, String> = std::env::vars()
        .filter(|(k, _)| !k.starts_with("EVENTLINE_NAMESPACE") && !k.starts_with("EVENTLINE_GROUP_PROTOCOL"))
        .collect();
    let settings = Settings::load_from(None, &env).expect("settings");
    let db = settings.database_url.with_database("eventline_bench_rebalance");
    fresh_store(&db, &settings).await;
    env.insert("DATABASE_URL".into(), db.expose().to_string());
    let client = reqwest::Client::new();

    println!("rebalance after a member joins and after one is killed (SIGKILL), {rounds} rounds each, 6 partitions");
    for protocol in ["classic", "consumer"] {
        let (mut joins, mut kills) = (Vec::new(), Vec::new());
        for i in 0..rounds {
            let r = round(&env, protocol, i, &client).await;
            eprintln!("  {protocol} round {}: join {:?}, kill {:?}", i + 1, r.join, r.kill);
            joins.push(r.join);
            kills.push(r.kill);
        }
        println!("{protocol:>8}  join: {}", summary(&mut joins));
        println!("{protocol:>8}  kill: {}", summary(&mut kills));
    }
}
