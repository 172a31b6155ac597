//! Declarative projections (SQL) against the Rust ones they mirror, on the real broker and
//! PostgreSQL (start them with `scripts/services.sh up`), in one run:
//!
//! ```sh
//! cargo bench --bench declarative                   # 400,000 events per topic
//! cargo bench --bench declarative -- --events 100000
//! ```
//!
//! The activity and accounts topics are filled once (kept for later runs with the same N). Then
//! each pair applies the whole topic into fresh databases, one after the other, each worker in
//! this process, timed from its first commit to the end as the runtime benchmark's (c) is: the
//! shipped `daily_activity` (set-based SQL, reference/projections) against its former Rust
//! version, and `account_balances` (Rust) against `account_balances_sql` (a PL/pgSQL state
//! machine with refusals, examples/reference-sql). For each declarative run it prints the
//! batches the worker committed beside the calls of its `apply` function (PostgreSQL's
//! `pg_stat_user_functions`): one call per batch, plus one more per batch that had a refusal.

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use eventline_consumers::declarative::{self, Declarative};
use eventline_consumers::projections::rust;
use eventline_consumers::Projection;
use eventline_core::config::{DatabaseUrl, Settings};
use eventline_core::contract::ValidatedEvent;
use eventline_core::registry::Registry;
use eventline_producers::publisher::Publisher;
use eventline_reference::daily_activity::DailyActivity;
use eventline_reference::loadgen::{AccountsTraffic, ActivityTraffic};
use eventline_store::Store;
use support::{fresh_store, number_option, publish_all, topic_records};
use tokio_util::sync::CancellationToken;

fn traffic(registry: &Arc<Registry>, topic: &str, prefix: &str) -> Box<dyn Iterator<Item = ValidatedEvent> + Send> {
    match topic {
        "accounts.events" => Box::new(AccountsTraffic::new(registry.clone(), prefix, 10_000, 7)),
        _ => Box::new(ActivityTraffic::new(registry.clone(), prefix, 10_000, 7)),
    }
}

#[tokio::main]
async fn main() {
    let events = number_option("--events", 400_000);
    let projections_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/reference-sql/projections");
    let mut env: HashMap<String, String> =
        std::env::vars().filter(|(k, _)| !k.starts_with("EVENTLINE_NAMESPACE")).collect();
    env.insert("EVENTLINE_NAMESPACE".into(), format!("bench-declarative-n{events}"));
    let settings = Settings::load_from(None, &env).expect("settings");
    let registry = Arc::new(eventline_reference::registry().expect("registry"));
    let publisher = Publisher::connect(&settings, registry.clone()).await.unwrap();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("declarative benchmark: {events} events per topic, {cores} cores");

    let shipped = |name: &str| {
        eventline_reference::projections().into_iter().find(|p| p.name() == name).expect("a reference projection")
    };
    let example = |name: &str| -> Arc<dyn Projection> {
        Arc::new(Declarative::new(declarative::load(&projections_dir.join(name)).expect("the example loads")))
    };
    let pairs: [(&str, Labelled, Labelled); 2] = [
        (
            "activity.events",
            ("daily_activity (former Rust)", rust::<DailyActivity>()),
            ("daily_activity (shipped SQL)", shipped("daily_activity")),
        ),
        (
            "accounts.events",
            ("account_balances (Rust)", shipped("account_balances")),
            ("account_balances_sql", example("account_balances_sql")),
        ),
    ];
    for (topic_base, rust_side, sql_side) in pairs {
        let topic = settings.namespace.topic(topic_base);
        let present = topic_records(&settings, &topic).await;
        if present < events {
            println!("filling {topic} with {} events (once; later runs reuse it)", events - present);
            let source = traffic(&registry, topic_base, &format!("fill{present}")).take(events - present);
            publish_all(&publisher, source, events - present).await;
        }
        let total = topic_records(&settings, &topic).await;
        let mut rates = Vec::new();
        for (label, projection) in [rust_side, sql_side] {
            let db = settings.database_url.with_database(&format!("eventline_bench_decl_{}", rand::random::<u32>()));
            let store = fresh_store(&db, &settings).await;
            // Its migrations and function, as `eventline migrate` installs them.
            projection.migrate(&store).await.expect("the projection migrates");
            track_functions(&db);
            let (rate, batches) = run_in_process(projection.clone(), &settings, &registry, &db, &store, total).await;
            let calls = function_calls(&db, projection.name());
            store.close().await;
            eventline_store::drop_database(&db).await.unwrap();
            let calls = match calls {
                Some(calls) => format!("   {batches} batches, {calls} apply calls"),
                None => format!("   {batches} batches"),
            };
            println!("  {label:<30} {rate:>10.0} events/s{calls}");
            rates.push(rate);
        }
        println!("  SQL / Rust: {:.0} %", 100.0 * rates[1] / rates[0]);
    }
}

/// A projection and what the benchmark calls it.
type Labelled = (&'static str, Arc<dyn Projection>);

/// Runs `projection`'s worker in this process on `db` until it has committed past `total`
/// offsets, timed from its first commit to the end; returns events/s and the batches it wrote.
async fn run_in_process(
    projection: Arc<dyn Projection>,
    settings: &Settings,
    registry: &Arc<Registry>,
    db: &DatabaseUrl,
    store: &Store,
    total: usize,
) -> (f64, u64) {
    let mut settings = settings.clone();
    settings.database_url = db.clone();
    let worker_store = Store::connect(db, 4, settings.connect_timeout).await.unwrap();
    let stop = CancellationToken::new();
    let (registry, name, stopping) = (registry.clone(), projection.name().to_string(), stop.clone());
    let worker = tokio::spawn(async move { projection.run(&settings, registry, worker_store, stopping).await });
    let mut first: Option<(Instant, i64)> = None;
    let done = loop {
        let through: i64 = store.checkpoints(&name).await.unwrap().iter().map(|c| c.next_offset).sum();
        if through > 0 && first.is_none() {
            first = Some((Instant::now(), through));
        }
        if through as usize >= total {
            break Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    stop.cancel();
    let report = worker.await.unwrap().expect("the worker ran");
    let (from, already) = first.expect("the worker made progress");
    ((total - already as usize) as f64 / (done - from).as_secs_f64(), report.batches)
}

/// Counts calls of PL/pgSQL and SQL functions in `db` from now on (new connections).
fn track_functions(db: &eventline_core::config::DatabaseUrl) {
    psql(db, &format!("ALTER DATABASE \"{}\" SET track_functions = 'all'", db.database_name()));
}

/// How many times `projection`'s `apply` ran, once the worker's connections have closed.
fn function_calls(db: &eventline_core::config::DatabaseUrl, projection: &str) -> Option<String> {
    let calls = psql(
        db,
        &format!("SELECT calls FROM pg_stat_user_functions WHERE schemaname = 'eventline_apply_{projection}_v1'"),
    );
    (!calls.is_empty()).then_some(calls)
}

fn psql(db: &eventline_core::config::DatabaseUrl, sql: &str) -> String {
    let output =
        std::process::Command::new("psql").args([db.expose(), "-XAtq", "-c", sql]).output().expect("psql runs");
    assert!(output.status.success(), "{sql}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}
