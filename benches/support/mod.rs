//! What the benchmarks share: an `eventline` HTTP process of their own, and percentiles.

use std::collections::HashMap;
use std::process::Child;
use std::time::Duration;

use eventline_core::config::{DatabaseUrl, Settings};
use eventline_producers::gateway::auth;
use eventline_store::Store;

/// The value below which a fraction `p` of the `sorted` latencies fall.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Creates and migrates the database `name` on the configured server, with an API key allowed
/// every event type; returns its URL, a pool of `connections` to it, and the key's bearer token.
pub async fn database_with_key(settings: &Settings, name: &str, connections: u32) -> (DatabaseUrl, Store, String) {
    let db = settings.database_url.with_database(name);
    eventline_store::create_database_if_missing(&db, settings.connect_timeout).await.unwrap();
    let store = Store::connect(&db, connections, settings.connect_timeout).await.unwrap();
    store.migrate().await.unwrap();
    let key = auth::new_key();
    store.insert_api_key(&key.key_id, "bench", &key.secret_hash, &["*".to_string()]).await.unwrap();
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
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_eventline"))
            .arg(command)
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

    /// Stops it as an operator would (SIGTERM) and waits for it to exit.
    pub fn stop(mut self) {
        std::process::Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        self.child.wait().unwrap();
    }
}
