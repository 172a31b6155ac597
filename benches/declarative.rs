//! Declarative projections (SQL) against the Rust ones they mirror, on the real broker and
//! PostgreSQL (start them with `scripts/services.sh up`), in one run:
//!
//! ```sh
//! cargo bench --bench declarative                   # 400,000 events per topic
//! cargo bench --bench declarative -- --events 100000
//! ```
//!
//! The activity and accounts topics are filled once (kept for later runs with the same N). Then
//! each pair applies the whole topic into fresh databases, one after the other, each timed from
//! its first commit to the end as the runtime benchmark's (c) is: `daily_activity` (Rust)
//! against `daily_activity_sql` (set-based SQL, examples/reference-sql), and `account_balances`
//! against `account_balances_sql` (a PL/pgSQL state machine with refusals). For each declarative
//! run it prints the batches the worker committed beside the calls of its `apply` function
//! (PostgreSQL's `pg_stat_user_functions`): one call per batch, plus one more per batch that
//! had a refusal.

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use eventline_core::config::Settings;
use eventline_core::contract::ValidatedEvent;
use eventline_core::registry::Registry;
use eventline_producers::publisher::Publisher;
use eventline_reference::loadgen::{AccountsTraffic, ActivityTraffic};
use support::{fresh_store, number_option, publish_all, run_worker, topic_records};

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
    env.insert("EVENTLINE_PROJECTIONS_DIR".into(), projections_dir.display().to_string());
    let settings = Settings::load_from(None, &env).expect("settings");
    let registry = Arc::new(Registry::embedded().expect("registry"));
    let publisher = Publisher::connect(&settings, registry.clone()).await.unwrap();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("declarative benchmark: {events} events per topic, {cores} cores");

    for (topic_base, rust, sql) in [
        ("activity.events", "daily_activity", "daily_activity_sql"),
        ("accounts.events", "account_balances", "account_balances_sql"),
    ] {
        let topic = settings.namespace.topic(topic_base);
        let present = topic_records(&settings, &topic).await;
        if present < events {
            println!("filling {topic} with {} events (once; later runs reuse it)", events - present);
            let source = traffic(&registry, topic_base, &format!("fill{present}")).take(events - present);
            publish_all(&publisher, source, events - present).await;
        }
        let total = topic_records(&settings, &topic).await;
        let mut rates = Vec::new();
        for projection in [rust, sql] {
            let db = settings.database_url.with_database(&format!("eventline_bench_decl_{}", rand::random::<u32>()));
            let store = fresh_store(&db, &settings).await;
            // Its migrations and function, as `eventline migrate` installs them.
            let migrate = std::process::Command::new(env!("CARGO_BIN_EXE_eventline"))
                .arg("migrate")
                .envs(env.iter().filter(|(k, _)| k.starts_with("EVENTLINE_") || *k == "PATH"))
                .env("DATABASE_URL", db.expose())
                .env("RUST_LOG", "warn")
                .output()
                .expect("eventline migrate runs");
            assert!(migrate.status.success(), "{}", String::from_utf8_lossy(&migrate.stderr));
            track_functions(&db);
            let run = run_worker(&env, projection, &[], &db, &store, total).await;
            let batches = run.batches.map_or("?".to_string(), |b| b.to_string());
            let calls = function_calls(&db, projection);
            store.close().await;
            eventline_store::drop_database(&db).await.unwrap();
            let calls = match calls {
                Some(calls) => format!("   {batches} batches, {calls} apply calls"),
                None => String::new(),
            };
            println!(
                "  {projection:<24} {:>10.0} events/s   peak RSS {:.0} MB{calls}",
                run.events_per_second,
                run.peak_rss_kb as f64 / 1024.0
            );
            rates.push(run.events_per_second);
        }
        println!("  {sql} / {rust}: {:.0} %", 100.0 * rates[1] / rates[0]);
    }
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
