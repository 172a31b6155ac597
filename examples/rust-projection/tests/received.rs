//! The library path, as a user's crate takes it: its own `eventline` binary (`main_with`) with
//! its own Rust projection runs migrate, topics, publish, worker, status, replay, rebuild and
//! dlq against the real broker and PostgreSQL (`scripts/services.sh up`), in a database and
//! topics of this test's own, removed afterwards.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use eventline_core::config::{DatabaseUrl, Settings};

const BIN: &str = env!("CARGO_BIN_EXE_inventory-eventline");

struct Env {
    namespace: String,
    db: DatabaseUrl,
    settings: Settings,
}

impl Env {
    fn new() -> Self {
        let vars: HashMap<String, String> = ["DATABASE_URL", "EVENTLINE_KAFKA_BROKERS"]
            .iter()
            .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
            .collect();
        let settings = Settings::load_from(None, &vars).expect("settings");
        // Tests of this file run at once in one process: the pid alone would give them one
        // database, which the first to finish drops under the other.
        static STARTED: AtomicU32 = AtomicU32::new(0);
        let namespace = format!("x{:08x}{:04x}", std::process::id(), STARTED.fetch_add(1, Ordering::Relaxed));
        let db = settings.database_url.with_database(&format!("eventline_example_{namespace}"));
        Self { namespace, db, settings }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(BIN);
        for (var, _) in std::env::vars().filter(|(k, _)| k.starts_with("EVENTLINE_")) {
            command.env_remove(var);
        }
        let schemas = Path::new(env!("CARGO_MANIFEST_DIR")).join("../inventory/schemas");
        command
            .args(args)
            .env("DATABASE_URL", self.db.expose())
            .env("EVENTLINE_KAFKA_BROKERS", self.settings.kafka.bootstrap_servers())
            .env("EVENTLINE_NAMESPACE", &self.namespace)
            .env("EVENTLINE_SCHEMAS_DIR", schemas)
            .env("EVENTLINE_RDKAFKA_SESSION_TIMEOUT_MS", "6000")
            .env("EVENTLINE_RDKAFKA_HEARTBEAT_INTERVAL_MS", "1000");
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        let output = self.command(args).output().expect("the binary runs");
        assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
        output
    }

    fn spawn(&self, args: &[&str]) -> Child {
        self.command(args).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap()
    }

    fn psql(&self, sql: &str) -> String {
        let output = Command::new("psql").args([self.db.expose(), "-XAtq", "-c", sql]).output().expect("psql runs");
        assert!(output.status.success(), "{sql}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }

    fn wait_for(&self, what: &str, sql: &str, expected: &str) {
        let started = Instant::now();
        loop {
            let got = self.psql(sql);
            if got == expected {
                return;
            }
            assert!(started.elapsed() < Duration::from_secs(120), "{what}: still {got:?}, expected {expected:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let (db, kafka, prefix) = (self.db.clone(), self.settings.kafka.clone(), format!("{}.", self.namespace));
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let _ = eventline_store::drop_database(&db).await;
            let within = Duration::from_secs(10);
            if let Ok(topics) = eventline_kafka::admin::topics_with_prefix(&kafka, &prefix, within).await {
                let _ = eventline_kafka::admin::delete_topics(&kafka, &topics, within).await;
            }
        });
    }
}

fn received(id: usize, sku: &str, quantity: i64) -> String {
    format!(
        r#"{{"specversion":"1.0","id":"r{id}","source":"/warehouse","type":"inventory.StockReceived","subject":"{sku}","data":{{"sku":"{sku}","quantity":{quantity}}}}}"#
    )
}

#[test]
fn a_users_rust_projection_runs_every_command_through_its_own_binary() {
    let env = Env::new();
    env.run(&["migrate"]);
    env.run(&["topics", "create", "--partitions", "3"]);
    let mut events: Vec<String> = (0..300).map(|i| received(i, ["bolt", "nut", "washer"][i % 3], 2)).collect();
    events.push(r#"{"specversion":"1.0","id":"s1","source":"/warehouse","type":"inventory.ItemShipped","subject":"bolt","data":{"sku":"bolt","quantity":1,"order_id":"o-1"}}"#.into());
    let file = std::env::temp_dir().join(format!("{}.ndjson", env.namespace));
    std::fs::write(&file, events.join("\n")).unwrap();
    env.run(&["publish", file.to_str().unwrap()]);
    std::fs::remove_file(&file).unwrap();

    let totals = "SELECT string_agg(sku || ':' || units || ':' || receipts, ',' ORDER BY sku) FROM received_totals";
    let expected = "bolt:200:100,nut:200:100,washer:200:100";
    let mut worker = env.spawn(&["worker", "received_totals"]);
    env.wait_for("the worker to apply every receipt", totals, expected);

    let status = env.run(&["status", "received_totals", "--json"]);
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(status.contains("\"name\": \"received_totals\""), "{status}");

    // A replay from the start empties the table and the running worker applies it all again.
    env.run(&["replay", "received_totals", "--from", "earliest", "--actor", "test"]);
    env.wait_for("the worker to apply the replay", totals, expected);

    // A rebuild beside the live table, then the switch.
    env.run(&["rebuild", "start", "received_totals"]);
    env.run(&["rebuild", "cutover", "received_totals"]);
    env.wait_for("the rebuilt table to be live", totals, expected);
    assert_eq!(env.psql("SELECT count(*) FROM eventline_generations WHERE state = 'live' AND generation = 2"), "1");

    let letters = env.run(&["dlq", "list", "--projection", "received_totals", "--json"]);
    assert_eq!(String::from_utf8_lossy(&letters.stdout), "", "nothing dead-lettered");
    worker.kill().unwrap();
    worker.wait().unwrap();
}

#[test]
fn without_a_registry_folder_an_application_with_none_built_in_refuses_to_start() {
    let env = Env::new();
    for args in [&["topics", "create"][..], &["schemas", "check"], &["worker", "received_totals"]] {
        let output = env.command(args).env_remove("EVENTLINE_SCHEMAS_DIR").output().expect("the binary runs");
        assert_eq!(output.status.code(), Some(78), "{args:?}");
        assert_eq!(
            String::from_utf8_lossy(&output.stderr),
            "error: no schema registry: this application has none built in; set EVENTLINE_SCHEMAS_DIR (or `schemas_dir` in the config file) to your registry's folder\n",
            "{args:?}"
        );
    }
}
