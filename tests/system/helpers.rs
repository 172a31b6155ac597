//! The shape every system test has: its own database (created and migrated by `eventline
//! migrate`) and its own topics (a namespace of its own, created by `eventline topics create`),
//! the real `eventline` binary run as a separate process, and everything dropped afterwards.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use eventline_core::config::{DatabaseUrl, KafkaSettings, Settings};
use eventline_store::Store;
use serde_json::{json, Value};

pub const BIN: &str = env!("CARGO_BIN_EXE_eventline");

/// How long a test waits for a condition before failing.
pub const PATIENCE: Duration = Duration::from_secs(120);

/// The services the tests run against, from the same environment variables eventline reads.
pub struct Services {
    pub server_url: DatabaseUrl,
    pub kafka: KafkaSettings,
}

impl Services {
    pub fn from_env() -> Self {
        let mut env: std::collections::HashMap<String, String> = std::collections::HashMap::new();
        for var in ["DATABASE_URL", "EVENTLINE_KAFKA_BROKERS"] {
            if let Ok(value) = std::env::var(var) {
                env.insert(var.to_string(), value);
            }
        }
        let settings = Settings::load_from(None, &env).expect("test settings are valid");
        Self { server_url: settings.database_url, kafka: settings.kafka }
    }

    /// The shared broker with another PostgreSQL server (a test's private one).
    pub fn with_database_server(url: &str) -> Self {
        Self { server_url: DatabaseUrl::parse(url).expect("a database URL"), ..Self::from_env() }
    }
}

/// One test's private database and topics.
pub struct TestEnv {
    pub id: String,
    pub database_url: DatabaseUrl,
    pub kafka: KafkaSettings,
    pub store: Store,
    log_dir: PathBuf,
    /// Settings every command of this test gets (a user's registry and projections).
    app_env: Vec<(String, String)>,
}

impl TestEnv {
    /// Creates and migrates a database and creates the catalog's topics, all named for this test.
    /// Fails loudly when PostgreSQL or the broker is not there.
    pub async fn new() -> Self {
        Self::with_services(Services::from_env()).await
    }

    /// Like [`TestEnv::new`], on the given services.
    pub async fn with_services(services: Services) -> Self {
        Self::with_app(services, &[]).await
    }

    /// Like [`TestEnv::new`] for an application of the user's: `app_env` (for example
    /// EVENTLINE_SCHEMAS_DIR and EVENTLINE_PROJECTIONS_DIR) is set for every command, the
    /// migration and topic creation included.
    pub async fn with_app(services: Services, app_env: &[(&str, &str)]) -> Self {
        let app_env: Vec<(String, String)> = app_env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let id = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let database_url = services.server_url.with_database(&format!("eventline_test_{id}"));
        let log_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("system-tests").join(&id);
        std::fs::create_dir_all(&log_dir).expect("log directory");
        let run = |args: &[&str]| {
            eventline_command(&id, &database_url, &services.kafka, args)
                .envs(app_env.iter().map(|(k, v)| (k, v)))
                .output()
                .expect("eventline runs")
        };
        let migrate = run(&["migrate"]);
        assert!(
            migrate.status.success(),
            "`eventline migrate` failed; is PostgreSQL running (scripts/services.sh up)?\n{}",
            stderr(&migrate)
        );
        let topics = run(&["topics", "create", "--partitions", "6"]);
        assert!(
            topics.status.success(),
            "`eventline topics create` failed; is the broker running (scripts/services.sh up)?\n{}",
            stderr(&topics)
        );
        let store = Store::connect(&database_url, 4, Duration::from_secs(10)).await.expect("test database connects");
        Self { id, database_url, kafka: services.kafka, store, log_dir, app_env }
    }

    /// The Kafka topic name of a catalog topic in this test's namespace.
    pub fn topic(&self, base: &str) -> String {
        format!("{}.{base}", self.id)
    }

    /// An `eventline` command with this test's database and namespace, and a short group
    /// session timeout so a killed worker's partitions move within seconds.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = eventline_command(&self.id, &self.database_url, &self.kafka, args);
        command.envs(self.app_env.iter().map(|(k, v)| (k, v)));
        command
    }

    /// Runs a shell script of the repository (from its root) as a user would, with this test's
    /// settings, `extra_env`, and this build's `eventline` first on the PATH.
    pub fn script(&self, path: &str, extra_env: &[(&str, &str)]) -> Output {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let bin_dir = Path::new(BIN).parent().expect("the binary's folder");
        let path_var = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
        let mut command = Command::new("bash");
        command.arg(root.join(path)).current_dir(root);
        let mut command = with_test_settings(command, &self.id, &self.database_url, &self.kafka);
        command.envs(self.app_env.iter().map(|(k, v)| (k, v))).envs(extra_env.iter().copied()).env("PATH", path_var);
        command.output().expect("bash runs")
    }

    /// A file of this test's folder.
    pub fn file(&self, name: &str) -> PathBuf {
        self.log_dir.join(name)
    }

    /// Runs SQL in this test's database with `psql`: the rows, unaligned, `|` between columns.
    pub fn psql(&self, sql: &str) -> String {
        let output = Command::new("psql")
            .args([self.database_url.expose(), "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .expect("psql runs");
        assert!(output.status.success(), "{sql}: {}", stderr(&output));
        stdout(&output).trim().to_string()
    }

    /// Runs `eventline` to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("eventline runs")
    }

    /// Runs `eventline` with `input` on standard input.
    pub fn run_with_stdin(&self, args: &[&str], input: &[u8]) -> Output {
        output_with_stdin(self.command(args), input)
    }

    /// Starts a long-running `eventline` process, its output going to a log file of this test.
    pub fn spawn(&self, name: &str, args: &[&str], extra_env: &[(&str, &str)]) -> Process {
        let log_path = self.log_dir.join(format!("{name}.log"));
        let log = std::fs::File::create(&log_path).expect("log file");
        let mut command = self.command(args);
        command.envs(extra_env.iter().copied()).stdout(log.try_clone().expect("log handle")).stderr(log);
        if extra_env.contains(&("EVENTLINE_GROUP_PROTOCOL", "consumer")) {
            // Under the consumer protocol the broker sets the session timing (the shared
            // broker's group.consumer.* settings match these 6 s / 1 s); the client may not.
            command
                .env_remove("EVENTLINE_RDKAFKA_SESSION_TIMEOUT_MS")
                .env_remove("EVENTLINE_RDKAFKA_HEARTBEAT_INTERVAL_MS");
        }
        Process { child: command.spawn().expect("eventline starts"), log_path }
    }

    /// Starts `eventline <command>` (gateway or up) on a free port and waits until it answers.
    pub async fn spawn_http(&self, name: &str, args: &[&str], extra_env: &[(&str, &str)]) -> HttpProcess {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr = format!("127.0.0.1:{port}");
        let mut env: Vec<(&str, &str)> = extra_env.to_vec();
        env.push(("EVENTLINE_HTTP_ADDR", &addr));
        let process = self.spawn(name, args, &env);
        let base = format!("http://{addr}");
        let client = reqwest::Client::new();
        let health = format!("{base}/healthz");
        wait_until(&format!("{name} to answer on {addr}"), || async { client.get(&health).send().await.is_ok() }).await;
        // A process serving the query API reads with a key that may read everything, unless the
        // test sends other credentials; the tests of authentication itself send their own.
        let serves_api = matches!(args.first(), Some(&"up") | Some(&"api")) && !args.contains(&"--insecure-no-auth");
        // It does not see personal data in clear (`personal`): those reads are audited.
        let reader = serves_api.then(|| self.create_key_with_scopes("reader", &[], &["read:*", "status"]).1);
        let client = match &reader {
            Some(token) => {
                let mut headers = reqwest::header::HeaderMap::new();
                headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
                reqwest::Client::builder().default_headers(headers).build().unwrap()
            }
            None => client,
        };
        HttpProcess { process, base, client, anonymous: reqwest::Client::new() }
    }

    /// Creates an API key allowed to publish `types`; returns (key id, bearer token).
    pub fn create_key(&self, name: &str, types: &[&str]) -> (String, String) {
        self.create_key_with_scopes(name, types, &[])
    }

    /// Creates an API key allowed to publish `types` and holding `scopes`.
    pub fn create_key_with_scopes(&self, name: &str, types: &[&str], scopes: &[&str]) -> (String, String) {
        let mut args = vec!["keys", "create", "--name", name];
        for t in types {
            args.extend(["--types", t]);
        }
        for scope in scopes {
            args.extend(["--scope", scope]);
        }
        let output = self.run(&args);
        assert!(output.status.success(), "keys create failed: {}", stderr(&output));
        let token = stdout(&output).trim().to_string();
        let key_id = token.strip_prefix("elk_").and_then(|r| r.split('_').next()).expect("a key").to_string();
        (key_id, token)
    }

    /// Writes events as an NDJSON file of this test and returns its path.
    pub fn write_ndjson(&self, name: &str, events: &[Value]) -> PathBuf {
        let path = self.log_dir.join(name);
        let text: String = events.iter().map(|e| format!("{e}\n")).collect();
        std::fs::write(&path, text).expect("write events");
        path
    }

    /// Publishes `events` with `eventline publish` (through an NDJSON file of this test named
    /// `name`), failing the test when it fails.
    pub fn publish(&self, name: &str, events: &[Value]) {
        let file = self.write_ndjson(name, events);
        let output = self.run(&["publish", file.to_str().unwrap()]);
        assert!(output.status.success(), "publish failed: {}", stderr(&output));
    }

    /// The end offset (next offset to be written) of every partition of a catalog topic.
    pub async fn end_offsets(&self, base: &str) -> Vec<i64> {
        eventline_kafka::admin::watermarks(&self.kafka, &self.topic(base), Duration::from_secs(10))
            .await
            .expect("watermarks")
            .into_iter()
            .map(|w| w.high)
            .collect()
    }

    /// Sum of the stored offsets of a projection: how many records it has passed.
    pub async fn applied_through(&self, projection: &str) -> i64 {
        self.store.checkpoints(projection).await.expect("checkpoints").iter().map(|c| c.next_offset).sum()
    }

    /// The accounts projection as (account, balance, events applied), in account order.
    pub async fn balances(&self) -> Vec<(String, i64, i64)> {
        let rows = eventline_reference::store::account_balances::account_balances(&self.store).await.expect("balances");
        rows.into_iter().map(|r| (r.account_id, r.balance_minor, r.events_applied)).collect()
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        // Cleanup needs async calls; run them on a runtime of their own so a failing (panicking)
        // test still drops its database and deletes its topics (every one in its namespace).
        let url = self.database_url.clone();
        let store = self.store.clone();
        let kafka = self.kafka.clone();
        let namespace = format!("{}.", self.id);
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async {
                store.close().await;
                if let Err(error) = eventline_store::drop_database(&url).await {
                    eprintln!("cleanup: cannot drop the test database: {error}");
                }
                let within = Duration::from_secs(10);
                let deleted = match eventline_kafka::admin::topics_with_prefix(&kafka, &namespace, within).await {
                    Ok(topics) => eventline_kafka::admin::delete_topics(&kafka, &topics, within).await,
                    Err(error) => Err(error),
                };
                if let Err(error) = deleted {
                    eprintln!("cleanup: cannot delete the test's topics: {error}");
                }
            });
        });
        let _ = cleanup.join();
    }
}

fn eventline_command(namespace: &str, database_url: &DatabaseUrl, kafka: &KafkaSettings, args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command.args(args);
    with_test_settings(command, namespace, database_url, kafka)
}

/// `command` with a test's database, namespace and broker, and none of the caller's other
/// EVENTLINE_ settings.
fn with_test_settings(
    mut command: Command,
    namespace: &str,
    database_url: &DatabaseUrl,
    kafka: &KafkaSettings,
) -> Command {
    for (var, _) in std::env::vars() {
        if var.starts_with("EVENTLINE_") {
            command.env_remove(var);
        }
    }
    command
        .env("DATABASE_URL", database_url.expose())
        .env("EVENTLINE_KAFKA_BROKERS", kafka.bootstrap_servers())
        .env("EVENTLINE_NAMESPACE", namespace)
        // Any free port: tests run many gateways (in `up`) at once.
        .env("EVENTLINE_HTTP_ADDR", "127.0.0.1:0")
        .env("EVENTLINE_RDKAFKA_SESSION_TIMEOUT_MS", "6000")
        .env("EVENTLINE_RDKAFKA_HEARTBEAT_INTERVAL_MS", "1000")
        .env("RUST_LOG", "info,eventline_consumers=debug");
    command
}

/// Runs `command` to completion with `input` on its standard input.
pub fn output_with_stdin(mut command: Command, input: &[u8]) -> Output {
    use std::io::Write;
    let mut child =
        command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("eventline starts");
    child.stdin.take().expect("stdin").write_all(input).expect("stdin takes the input");
    child.wait_with_output().expect("eventline finishes")
}

/// A running `eventline` process.
pub struct Process {
    child: Child,
    pub log_path: PathBuf,
}

impl Process {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn terminate(mut self) -> ExitStatus {
        let status = Command::new("kill").args(["-TERM", &self.pid().to_string()]).status().expect("kill runs");
        assert!(status.success(), "kill -TERM failed");
        self.wait()
    }

    /// Sends SIGKILL and waits for the process to be gone.
    pub fn kill_hard(mut self) -> ExitStatus {
        self.child.kill().expect("SIGKILL is delivered");
        self.wait()
    }

    fn wait(&mut self) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(started.elapsed() < PATIENCE, "process {} did not exit; log: {}", self.pid(), self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether the process is still alive (not exited, not a zombie).
    pub fn running(&self) -> bool {
        std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))
            .is_ok_and(|stat| stat.rsplit(')').next().is_some_and(|rest| !rest.trim_start().starts_with('Z')))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running eventline process serving HTTP.
pub struct HttpProcess {
    pub process: Process,
    pub base: String,
    /// Sends a key that reads everything when the process serves the query API.
    pub client: reqwest::Client,
    /// Sends no credentials.
    pub anonymous: reqwest::Client,
}

impl HttpProcess {
    /// POSTs `body` to `/v1/events` with these headers (and no credentials but theirs).
    pub async fn post(&self, headers: &[(&str, &str)], body: impl Into<reqwest::Body>) -> reqwest::Response {
        let mut request = self.anonymous.post(format!("{}/v1/events", self.base)).body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await.expect("the gateway answers")
    }

    /// GETs `path` (with its query string).
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(format!("{}{path}", self.base)).send().await.expect("the server answers")
    }

    /// GETs `path` with `Authorization: Bearer <token>`, or with no credentials at all.
    pub async fn get_as(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut request = self.anonymous.get(format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.expect("the server answers")
    }
}

/// Polls `condition` every 100 ms until it holds, failing the test after [`PATIENCE`].
pub async fn wait_until<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    while !condition().await {
        assert!(started.elapsed() < PATIENCE, "timed out after {PATIENCE:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How many migrations eventline embeds: the runtime's and every projection's.
pub fn migration_count() -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::read_dir(root.join("migrations")).expect("migrations folder").count()
}

/// Like [`wait_until`], but on timeout the failure says what `report` says of the state then.
pub async fn wait_until_reporting<F, Fut, R, RFut>(what: &str, mut condition: F, report: R)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
    R: FnOnce() -> RFut,
    RFut: Future<Output = String>,
{
    let started = Instant::now();
    while !condition().await {
        if started.elapsed() >= PATIENCE {
            panic!("timed out after {PATIENCE:?} waiting for {what}; {}", report().await);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Accounts traffic written by the test itself (not by eventline's load generator), with the
/// balances it must produce: `accounts` openings, then `events - accounts` random deposits and
/// withdrawals that never overdraw.
pub struct AccountsScenario {
    pub events: Vec<Value>,
    /// Per account: balance, events applied, channel of the latest deposit.
    pub expected: BTreeMap<String, (i64, i64, Option<String>)>,
}

impl AccountsScenario {
    /// Deposits are data version 2 with a channel, or, one in four, version 1 (upcast to v2 with
    /// channel `unknown` when read).
    pub fn generate(test_id: &str, accounts: usize, events: usize, seed: u64) -> Self {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let account = |i: usize| format!("{test_id}-acct-{i}");
        let mut list = Vec::with_capacity(events);
        let mut expected: BTreeMap<String, (i64, i64, Option<String>)> = BTreeMap::new();
        let envelope = |n: usize, event_type: &str, version: u32, data: Value| {
            json!({"specversion": "1.0", "id": format!("{test_id}-{n}"), "source": "/tests", "type": event_type,
                   "subject": data["account_id"], "dataversion": version, "data": data})
        };
        for i in 0..accounts {
            list.push(envelope(
                list.len(),
                "accounts.AccountOpened",
                1,
                json!({"account_id": account(i), "owner": format!("owner {i}"), "currency": "EUR"}),
            ));
            expected.insert(account(i), (0, 1, None));
        }
        while list.len() < events {
            let id = account(rng.random_range(0..accounts));
            let entry = expected.get_mut(&id).expect("opened");
            let withdraw = entry.0 >= 100 && rng.random_bool(0.4);
            let amount: i64 = if withdraw { rng.random_range(1..=entry.0) } else { rng.random_range(1..=100_000) };
            let mut data = json!({"account_id": id, "amount_minor": amount, "currency": "EUR"});
            entry.1 += 1;
            let (event_type, version) = if withdraw {
                entry.0 -= amount;
                ("accounts.FundsWithdrawn", 1)
            } else {
                entry.0 += amount;
                let legacy = rng.random_bool(0.25);
                let channel = if legacy { "unknown" } else { ["branch", "card", "online"][rng.random_range(0..3)] };
                entry.2 = Some(channel.to_string());
                if legacy {
                    ("accounts.FundsDeposited", 1)
                } else {
                    data["channel"] = json!(channel);
                    ("accounts.FundsDeposited", 2)
                }
            };
            list.push(envelope(list.len(), event_type, version, data));
        }
        Self { events: list, expected }
    }

    /// Fails unless the projection holds exactly the expected balances and event counts, with no
    /// dead letters. `context` is shown on failure (e.g. a worker's log).
    pub async fn assert_projected(&self, env: &TestEnv, context: &str) {
        self.assert_rows(env, context).await;
        let dead = env.store.dead_letters("account_balances").await.expect("dead letters");
        assert!(dead.is_empty(), "unexpected dead letters {dead:?}; {context}");
    }

    /// Fails unless the projection's rows are exactly the expected ones (dead letters aside).
    pub async fn assert_rows(&self, env: &TestEnv, context: &str) {
        let actual = Self::actual(&env.store).await;
        assert_eq!(actual.len(), self.expected.len(), "accounts; {context}");
        assert_eq!(actual, self.expected, "{context}");
    }

    /// The projection's rows as (balance, events applied, latest deposit channel) per account.
    pub async fn actual(store: &Store) -> BTreeMap<String, (i64, i64, Option<String>)> {
        eventline_reference::store::account_balances::account_balances(store)
            .await
            .expect("balances")
            .into_iter()
            .map(|row| (row.account_id, (row.balance_minor, row.events_applied, row.last_deposit_channel)))
            .collect()
    }
}
