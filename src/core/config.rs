//! Layered configuration: built-in defaults, then an optional TOML file, then the environment.
//!
//! Everything is validated here, once, before any connection is made, so a bad setting stops the
//! process with a message that names the setting and where its value came from. Values that may
//! hold credentials (the database URL, librdkafka's secret properties) never print in clear: their
//! `Debug` and `Display` redact them.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use url::Url;

/// Default broker list, as documented in the README.
pub const DEFAULT_KAFKA_BROKERS: &str = "127.0.0.1:9092";
/// Default PostgreSQL connection URL.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/eventline";
/// Default listen address of the HTTP services.
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:8080";
/// Environment variable naming the optional TOML configuration file.
pub const CONFIG_FILE_ENV: &str = "EVENTLINE_CONFIG";
/// Prefix of environment variables passed through to librdkafka: `EVENTLINE_RDKAFKA_SASL_USERNAME`
/// sets `sasl.username` (lower-cased, `_` becomes `.`).
pub const RDKAFKA_ENV_PREFIX: &str = "EVENTLINE_RDKAFKA_";

const ENV_KAFKA_BROKERS: &str = "EVENTLINE_KAFKA_BROKERS";
const ENV_DATABASE_URL: &str = "DATABASE_URL";
const ENV_HTTP_ADDR: &str = "EVENTLINE_HTTP_ADDR";
const ENV_NAMESPACE: &str = "EVENTLINE_NAMESPACE";
const ENV_LOG_FORMAT: &str = "EVENTLINE_LOG_FORMAT";
const ENV_BATCH_MAX_EVENTS: &str = "EVENTLINE_BATCH_MAX_EVENTS";
const ENV_BATCH_MAX_WAIT_MS: &str = "EVENTLINE_BATCH_MAX_WAIT_MS";
const ENV_BATCH_MAX_BYTES: &str = "EVENTLINE_BATCH_MAX_BYTES";
const ENV_WORKER_LANES: &str = "EVENTLINE_WORKER_LANES";
const ENV_CONNECT_TIMEOUT_SECS: &str = "EVENTLINE_CONNECT_TIMEOUT_SECS";
const ENV_SCHEMAS_DIR: &str = "EVENTLINE_SCHEMAS_DIR";
const ENV_PROJECTIONS_DIR: &str = "EVENTLINE_PROJECTIONS_DIR";
const ENV_DEDUP_WINDOW_HOURS: &str = "EVENTLINE_DEDUP_WINDOW_HOURS";
const ENV_OUTBOX_DATABASE_URL: &str = "EVENTLINE_OUTBOX_DATABASE_URL";
const ENV_DATABASE_ALLOW_INSECURE: &str = "EVENTLINE_DATABASE_ALLOW_INSECURE";
const ENV_GATEWAY_MAX_BODY_BYTES: &str = "EVENTLINE_GATEWAY_MAX_BODY_BYTES";
const ENV_GATEWAY_MAX_BATCH_EVENTS: &str = "EVENTLINE_GATEWAY_MAX_BATCH_EVENTS";
const ENV_GATEWAY_RATE_PER_KEY: &str = "EVENTLINE_GATEWAY_RATE_PER_KEY";
const ENV_GATEWAY_PRODUCE_TIMEOUT_MS: &str = "EVENTLINE_GATEWAY_PRODUCE_TIMEOUT_MS";
const ENV_CONSOLE_REFRESH_MS: &str = "EVENTLINE_CONSOLE_REFRESH_MS";
const ENV_OTLP_ENDPOINT: &str = "EVENTLINE_OTLP_ENDPOINT";
const ENV_TRACE_SAMPLE_RATIO: &str = "EVENTLINE_TRACE_SAMPLE_RATIO";
const ENV_METRICS: &str = "EVENTLINE_METRICS";
const ENV_GROUP_PROTOCOL: &str = "EVENTLINE_GROUP_PROTOCOL";
const ENV_JWT_ISSUER: &str = "EVENTLINE_JWT_ISSUER";
const ENV_JWT_AUDIENCE: &str = "EVENTLINE_JWT_AUDIENCE";
const ENV_JWT_JWKS_URL: &str = "EVENTLINE_JWT_JWKS_URL";
const ENV_KEY_ENCRYPTION_KEY: &str = "EVENTLINE_KEY_ENCRYPTION_KEY";
const ENV_KEYS_DATABASE_URL: &str = "EVENTLINE_KEYS_DATABASE_URL";
/// The OpenTelemetry standard name for the collector's base URL, read when ours is unset.
const ENV_OTEL_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

/// Every `EVENTLINE_*` variable eventline reads; any other one is reported as a likely typo.
const KNOWN_ENV: &[&str] = &[
    CONFIG_FILE_ENV,
    ENV_KEY_ENCRYPTION_KEY,
    ENV_KEYS_DATABASE_URL,
    ENV_KAFKA_BROKERS,
    ENV_HTTP_ADDR,
    ENV_NAMESPACE,
    ENV_LOG_FORMAT,
    ENV_BATCH_MAX_EVENTS,
    ENV_BATCH_MAX_WAIT_MS,
    ENV_BATCH_MAX_BYTES,
    ENV_WORKER_LANES,
    ENV_CONNECT_TIMEOUT_SECS,
    ENV_SCHEMAS_DIR,
    ENV_PROJECTIONS_DIR,
    ENV_DEDUP_WINDOW_HOURS,
    ENV_OUTBOX_DATABASE_URL,
    ENV_DATABASE_ALLOW_INSECURE,
    ENV_GATEWAY_MAX_BODY_BYTES,
    ENV_GATEWAY_MAX_BATCH_EVENTS,
    ENV_GATEWAY_RATE_PER_KEY,
    ENV_GATEWAY_PRODUCE_TIMEOUT_MS,
    ENV_CONSOLE_REFRESH_MS,
    ENV_OTLP_ENDPOINT,
    ENV_TRACE_SAMPLE_RATIO,
    ENV_METRICS,
    ENV_GROUP_PROTOCOL,
    ENV_JWT_ISSUER,
    ENV_JWT_AUDIENCE,
    ENV_JWT_JWKS_URL,
];

/// librdkafka properties eventline sets itself because its guarantees depend on them.
const MANAGED_RDKAFKA_PROPERTIES: &[&str] = &[
    "bootstrap.servers",
    "metadata.broker.list",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "auto.offset.reset",
    "enable.idempotence",
    "acks",
    "request.required.acks",
    "isolation.level",
    "partition.assignment.strategy",
    "group.protocol",
];

/// Group membership timing the broker decides under `group.protocol=consumer` (its
/// `group.consumer.*` settings): librdkafka refuses them from the client.
const CLASSIC_GROUP_PROPERTIES: &[&str] = &["session.timeout.ms", "heartbeat.interval.ms", "group.protocol.type"];

/// Property names whose values are credentials.
const SECRET_PROPERTY_MARKERS: &[&str] =
    &["password", "secret", "jaas", "oauthbearer.config", "token", "key.pem", "certificate.pem"];

const MAX_BATCH_EVENTS: usize = 100_000;
const MAX_BATCH_WAIT_MS: u64 = 60_000;
const MIN_BATCH_BYTES: u64 = 1_024;
/// Most batches one projection's worker writes at once (each holds a database connection).
const MAX_WORKER_LANES: u64 = 64;
const MAX_BATCH_BYTES: u64 = 1 << 30;
const MAX_CONNECT_TIMEOUT_SECS: u64 = 600;
const MAX_DEDUP_WINDOW_HOURS: u64 = 24 * 366;

/// A setting that failed validation, named as the user wrote it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {path}: {reason}")]
    FileUnreadable { path: PathBuf, reason: String },
    #[error("invalid configuration file {path}: {reason}")]
    FileInvalid { path: PathBuf, reason: String },
    #[error("invalid {setting}: {reason}")]
    Invalid { setting: String, reason: String },
    #[error("unknown setting {variable}: eventline reads no such environment variable{hint}")]
    UnknownVariable { variable: String, hint: String },
}

/// Output format of log lines on standard error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Readable lines, coloured on a terminal.
    #[default]
    Human,
    /// One JSON object per line, for log collectors.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "human" => Ok(Self::Human),
            "json" => Ok(Self::Json),
            other => Err(format!("`{other}` is not a log format (expected `human` or `json`)")),
        }
    }
}

/// A PostgreSQL connection URL. Its password never prints: only [`DatabaseUrl::expose`] shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(Url);

impl DatabaseUrl {
    pub fn parse(value: &str) -> Result<Self, String> {
        let url = Url::parse(value).map_err(|e| format!("not a URL ({e})"))?;
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            return Err(format!("scheme `{}` is not postgres:// or postgresql://", url.scheme()));
        }
        Ok(Self(url))
    }

    /// The full URL including any password, for handing to the database driver only.
    pub fn expose(&self) -> &str {
        self.0.as_str()
    }

    /// Why a connection to this URL would be open to a man in the middle, when the server is on
    /// another machine: the TLS mode (the URL's `sslmode`, else `PGSSLMODE`, else libpq's
    /// `prefer`) is not `verify-full`. `None` when the server is on this machine (a loopback
    /// address, `localhost` or a socket) or is verified.
    pub fn unverified_remote(&self, env: &HashMap<String, String>) -> Option<String> {
        let query = |names: &[&str]| {
            // The driver reads every pair in turn, so the last one counts.
            self.0
                .query_pairs()
                .filter(|(name, _)| names.contains(&name.as_ref()))
                .last()
                .map(|(_, value)| value.into_owned())
        };
        let host = query(&["host"])
            .or_else(|| self.0.host_str().filter(|h| !h.is_empty()).map(str::to_string))
            .or_else(|| env.get("PGHOST").cloned())
            .unwrap_or_else(|| "localhost".to_string());
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let on_this_machine = bare.starts_with('/')
            || bare.eq_ignore_ascii_case("localhost")
            || bare.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
        let mode = query(&["sslmode", "ssl-mode"])
            .or_else(|| env.get("PGSSLMODE").cloned())
            .unwrap_or_else(|| "prefer".to_string());
        let weakness = match mode.as_str() {
            "verify-full" => return None,
            "verify-ca" => "checks the server's certificate but not its name",
            "require" => "encrypts but does not check who the server is",
            "disable" | "allow" | "prefer" => "may send everything in plain text",
            _ => "is not a mode that verifies the server",
        };
        (!on_this_machine).then(|| format!("host {host} is not on this machine and sslmode={mode} {weakness}"))
    }

    /// The database name (the path without its leading slash).
    pub fn database_name(&self) -> &str {
        self.0.path().trim_start_matches('/')
    }

    /// The same server with another database, e.g. for creating a database or a test's own one.
    pub fn with_database(&self, name: &str) -> Self {
        let mut url = self.0.clone();
        url.set_path(&format!("/{name}"));
        Self(url)
    }

    fn redacted(&self) -> String {
        let mut url = self.0.clone();
        if url.password().is_some() {
            let _ = url.set_password(Some("***"));
        }
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let v = if k.eq_ignore_ascii_case("password") { "***".to_string() } else { v.into_owned() };
                (k.into_owned(), v)
            })
            .collect();
        if !pairs.is_empty() {
            url.query_pairs_mut().clear().extend_pairs(pairs);
        }
        url.to_string()
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({})", self.redacted())
    }
}

/// A prefix that keeps several eventline installations (or tests) apart on one broker:
/// it prefixes topic names and consumer group ids. Empty by default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Namespace(String);

impl Namespace {
    pub fn parse(value: &str) -> Result<Self, String> {
        if value.len() > 64 {
            return Err("longer than 64 characters".into());
        }
        if let Some(bad) = value.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_')) {
            return Err(format!("`{bad}` is not allowed (use letters, digits, `-` and `_`)"));
        }
        Ok(Self(value.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The Kafka topic name of a catalog topic, e.g. `accounts.events` or `ns.accounts.events`.
    pub fn topic(&self, base: &str) -> String {
        self.prefixed(base)
    }

    /// The consumer group that owns a projection: `eventline.<projection>`, prefixed like topics.
    pub fn group_id(&self, projection: &str) -> String {
        self.prefixed(&format!("eventline.{projection}"))
    }

    /// The catalog topic name of a namespaced Kafka topic, if it belongs to this namespace.
    pub fn strip<'a>(&self, topic: &'a str) -> Option<&'a str> {
        if self.0.is_empty() {
            Some(topic)
        } else {
            topic.strip_prefix(self.0.as_str())?.strip_prefix('.')
        }
    }

    fn prefixed(&self, name: &str) -> String {
        if self.0.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.0)
        }
    }
}

/// How a worker's consumer group shares partitions among its members.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupProtocol {
    /// The classic protocol (members rejoin on every change), with cooperative-sticky
    /// assignment: members keep what they own while partitions move.
    Classic,
    /// KIP-848's protocol (`group.protocol=consumer`, Kafka 4): the broker assigns, and each
    /// member's heartbeat carries its changes; no group-wide rejoin.
    Consumer,
}

impl GroupProtocol {
    /// The value librdkafka's `group.protocol` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Classic => "classic",
            Self::Consumer => "consumer",
        }
    }
}

impl std::str::FromStr for GroupProtocol {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "classic" => Ok(Self::Classic),
            "consumer" => Ok(Self::Consumer),
            other => Err(format!("`{other}` is not a group protocol (expected `consumer` or `classic`)")),
        }
    }
}

/// The protocol workers use unless told otherwise.
pub const DEFAULT_GROUP_PROTOCOL: GroupProtocol = GroupProtocol::Classic;

/// Kafka connection settings.
#[derive(Clone)]
pub struct KafkaSettings {
    /// `host:port` of each bootstrap broker.
    pub brokers: Vec<String>,
    /// Extra librdkafka properties (SASL, TLS, timeouts), passed through unchanged.
    pub properties: BTreeMap<String, String>,
    /// The consumer group protocol of the workers.
    pub group_protocol: GroupProtocol,
}

impl KafkaSettings {
    /// The broker list in librdkafka's `bootstrap.servers` form.
    pub fn bootstrap_servers(&self) -> String {
        self.brokers.join(",")
    }
}

impl fmt::Debug for KafkaSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let properties: BTreeMap<&str, &str> = self
            .properties
            .iter()
            .map(|(k, v)| (k.as_str(), if is_secret_property(k) { "***" } else { v.as_str() }))
            .collect();
        f.debug_struct("KafkaSettings")
            .field("brokers", &self.brokers)
            .field("properties", &properties)
            .field("group_protocol", &self.group_protocol)
            .finish()
    }
}

/// How a projection worker cuts its input into transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerSettings {
    /// Most events applied in one PostgreSQL transaction. A worker behind its topics fills
    /// batches to this (or to `batch_max_bytes`) at once; a caught-up one writes what
    /// `batch_max_wait` gathered, so the bound sets catch-up speed, not latency.
    pub batch_max_events: usize,
    /// Most bytes of records (keys and values) in one batch: bounds a worker's memory whatever
    /// the size of the events.
    pub batch_max_bytes: usize,
    /// How many batches a projection's worker writes at once, each in its own transaction on
    /// its own connection. Its partitions are spread over this many lanes; a partition stays in
    /// one lane, so its events are applied in order. 1 writes one batch at a time.
    pub lanes: usize,
    /// Longest time the first event of a batch waits for more before the batch is written.
    pub batch_max_wait: Duration,
    /// How long applied event ids are remembered: a copy of an event published again within
    /// this window is applied once; a later copy would be applied again.
    pub dedup_window: Duration,
}

/// Limits and behaviour of the HTTP gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GatewaySettings {
    /// Largest request body accepted (413 beyond).
    pub max_body_bytes: usize,
    /// Most events in one batch request (413 beyond).
    pub max_batch_events: usize,
    /// Events per second each API key may publish, on average (429 beyond).
    pub rate_per_key: u32,
    /// How long a request waits for the broker's acknowledgement before answering 503.
    pub produce_timeout: Duration,
}

/// Where traces go, and how many of the traces started here are kept.
#[derive(Debug, Clone, PartialEq)]
pub struct TracingSettings {
    /// The OTLP/HTTP collector's base URL (spans are sent to `<endpoint>/v1/traces`); no export
    /// when unset.
    pub otlp_endpoint: Option<Url>,
    /// The share of traces started here (no sampled `traceparent` came in) that are recorded;
    /// a trace an upstream sampled is always continued.
    pub sample_ratio: f64,
}

/// The validated configuration of one eventline process.
#[derive(Debug, Clone)]
pub struct Settings {
    pub kafka: KafkaSettings,
    pub database_url: DatabaseUrl,
    pub http_addr: SocketAddr,
    pub namespace: Namespace,
    pub log_format: LogFormat,
    pub worker: WorkerSettings,
    /// Bound on how long start-up waits for the broker or the database before giving up.
    pub connect_timeout: Duration,
    /// A schema registry folder to use instead of the one built into the binary.
    pub schemas_dir: Option<PathBuf>,
    /// A folder of declarative projections (one subfolder each) the application runs beside its
    /// Rust ones.
    pub projections_dir: Option<PathBuf>,
    /// The database holding the transactional outbox the relay reads (the upstream service's).
    pub outbox_database_url: DatabaseUrl,
    /// Connections to another machine's PostgreSQL that are not verified, accepted because
    /// `EVENTLINE_DATABASE_ALLOW_INSECURE` says so: one warning each, for the log.
    pub insecure_databases: Vec<String>,
    pub gateway: GatewaySettings,
    /// How often the operator console takes its status snapshot while a page is open.
    pub console_refresh: Duration,
    pub tracing: TracingSettings,
    /// Whether metrics are recorded and served at `/metrics`.
    pub metrics_enabled: bool,
    /// Who issues the bearer JWTs the HTTP services accept beside API keys, when anyone does.
    pub jwt: Option<JwtSettings>,
    /// Wraps the data subjects' keys (`EVENTLINE_KEY_ENCRYPTION_KEY`, 32 bytes in base64, or its
    /// `_FILE`); only from the environment, never a configuration file, and never printed.
    pub key_encryption_key: Option<crate::cipher::KeyEncryptionKey>,
    /// How processes reach the data subjects' key store (`EVENTLINE_KEYS_DATABASE_URL` or its
    /// `_FILE`; by default `DATABASE_URL`): the same database, as a role of its own once
    /// `eventline key-store isolate` gave it the keys.
    pub keys_database_url: DatabaseUrl,
}

/// The identity provider whose JWTs are accepted: a token must name `issuer` (`iss`) and
/// `audience` (`aud`) and be signed by a key of the JSON Web Key Set at `jwks_url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtSettings {
    pub issuer: String,
    pub audience: String,
    pub jwks_url: Url,
}

/// The TOML file's shape; every field optional, unknown keys rejected so typos surface.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    namespace: Option<String>,
    connect_timeout_secs: Option<u64>,
    schemas_dir: Option<PathBuf>,
    projections_dir: Option<PathBuf>,
    #[serde(default)]
    kafka: FileKafka,
    #[serde(default)]
    database: FileDatabase,
    #[serde(default)]
    http: FileHttp,
    #[serde(default)]
    log: FileLog,
    #[serde(default)]
    worker: FileWorker,
    #[serde(default)]
    gateway: FileGateway,
    #[serde(default)]
    console: FileConsole,
    #[serde(default)]
    outbox: FileOutbox,
    #[serde(default)]
    tracing: FileTracing,
    #[serde(default)]
    metrics: FileMetrics,
    #[serde(default)]
    jwt: FileJwt,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileJwt {
    issuer: Option<String>,
    audience: Option<String>,
    jwks_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileMetrics {
    enabled: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTracing {
    otlp_endpoint: Option<String>,
    sample_ratio: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConsole {
    refresh_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileGateway {
    max_body_bytes: Option<u64>,
    max_batch_events: Option<u64>,
    rate_per_key: Option<u64>,
    produce_timeout_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileKafka {
    brokers: Option<BrokerList>,
    group_protocol: Option<String>,
    #[serde(default)]
    properties: BTreeMap<String, toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum BrokerList {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDatabase {
    url: Option<String>,
    allow_insecure: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileOutbox {
    url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileHttp {
    addr: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLog {
    format: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileWorker {
    batch_max_events: Option<u64>,
    batch_max_bytes: Option<u64>,
    lanes: Option<u64>,
    batch_max_wait_ms: Option<u64>,
    dedup_window_hours: Option<u64>,
}

/// One raw value and the name of the place it came from, for error messages.
struct Raw {
    value: String,
    origin: String,
}

impl Settings {
    /// Loads settings from the process environment and, when given (or named by
    /// `EVENTLINE_CONFIG`), a TOML file.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let env: HashMap<String, String> = std::env::vars().collect();
        Self::load_from(file, &env)
    }

    /// Loads settings from an explicit environment, so tests need not touch the process's own.
    pub fn load_from(file: Option<&Path>, env: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let (env, read_from_files) = read_secret_files(env)?;
        let env = &env;
        // A setting read from a file is named by the variable that named the file.
        let shown = |var: &str| read_from_files.get(var).cloned().unwrap_or_else(|| var.to_string());
        check_unknown_variables(env)?;
        let file_path = file.map(Path::to_path_buf).or_else(|| env.get(CONFIG_FILE_ENV).map(PathBuf::from));
        let (file_settings, file_name) = match &file_path {
            Some(path) => (read_file(path)?, path.display().to_string()),
            None => (FileSettings::default(), String::new()),
        };
        let in_file = |key: &str| format!("`{key}` in {file_name}");

        // Each setting: the environment wins over the file, the file over the default.
        let pick = |var: &str, key: &str, from_file: Option<String>, default: &str| -> Raw {
            if let Some(value) = env.get(var) {
                Raw { value: value.clone(), origin: shown(var) }
            } else if let Some(value) = from_file {
                Raw { value, origin: in_file(key) }
            } else {
                Raw { value: default.to_string(), origin: format!("{var} (default)") }
            }
        };

        let brokers_raw = pick(
            ENV_KAFKA_BROKERS,
            "kafka.brokers",
            file_settings.kafka.brokers.map(|b| match b {
                BrokerList::One(s) => s,
                BrokerList::Many(list) => list.join(","),
            }),
            DEFAULT_KAFKA_BROKERS,
        );
        let brokers = parse_brokers(&brokers_raw.value).map_err(|reason| invalid(&brokers_raw, reason))?;

        let url_raw = pick(ENV_DATABASE_URL, "database.url", file_settings.database.url, DEFAULT_DATABASE_URL);
        // The reason never repeats the value: it may hold a password.
        let database_url = DatabaseUrl::parse(&url_raw.value)
            .map_err(|reason| ConfigError::Invalid { setting: url_raw.origin.clone(), reason })?;

        let outbox_raw = pick(ENV_OUTBOX_DATABASE_URL, "outbox.url", file_settings.outbox.url, database_url.expose());
        let outbox_database_url = DatabaseUrl::parse(&outbox_raw.value)
            .map_err(|reason| ConfigError::Invalid { setting: outbox_raw.origin.clone(), reason })?;

        let keys_raw = pick(ENV_KEYS_DATABASE_URL, "", None, database_url.expose());
        let keys_database_url = DatabaseUrl::parse(&keys_raw.value)
            .map_err(|reason| ConfigError::Invalid { setting: keys_raw.origin.clone(), reason })?;

        let allow_insecure_raw = pick(
            ENV_DATABASE_ALLOW_INSECURE,
            "database.allow_insecure",
            file_settings.database.allow_insecure.map(|b| b.to_string()),
            "false",
        );
        let allow_insecure = parse_bool(&allow_insecure_raw)?;
        let mut insecure_databases = Vec::new();
        let mut databases = vec![(&url_raw, &database_url)];
        if outbox_database_url != database_url {
            databases.push((&outbox_raw, &outbox_database_url));
        }
        if keys_database_url != database_url {
            databases.push((&keys_raw, &keys_database_url));
        }
        for (raw, url) in databases {
            if let Some(reason) = url.unverified_remote(env) {
                if !allow_insecure {
                    return Err(invalid(
                        raw,
                        format!(
                            "{reason}: use sslmode=verify-full (with sslrootcert=<the CA's certificate file> unless \
                             the system trusts the server's CA), or set {ENV_DATABASE_ALLOW_INSECURE}=true to accept it"
                        ),
                    ));
                }
                insecure_databases
                    .push(format!("{}: {reason}, accepted because {} is true", raw.origin, allow_insecure_raw.origin));
            }
        }

        let number = |var: &str, key: &str, from_file: Option<u64>, default: &str, min: u64, max: u64| {
            let raw = pick(var, key, from_file.map(|v| v.to_string()), default);
            parse_bounded(&raw, min, max)
        };
        let gateway = GatewaySettings {
            max_body_bytes: number(
                ENV_GATEWAY_MAX_BODY_BYTES,
                "gateway.max_body_bytes",
                file_settings.gateway.max_body_bytes,
                "4194304",
                1024,
                64 * 1024 * 1024,
            )? as usize,
            max_batch_events: number(
                ENV_GATEWAY_MAX_BATCH_EVENTS,
                "gateway.max_batch_events",
                file_settings.gateway.max_batch_events,
                "1000",
                1,
                100_000,
            )? as usize,
            rate_per_key: number(
                ENV_GATEWAY_RATE_PER_KEY,
                "gateway.rate_per_key",
                file_settings.gateway.rate_per_key,
                "1000",
                1,
                1_000_000,
            )? as u32,
            produce_timeout: Duration::from_millis(number(
                ENV_GATEWAY_PRODUCE_TIMEOUT_MS,
                "gateway.produce_timeout_ms",
                file_settings.gateway.produce_timeout_ms,
                "5000",
                100,
                120_000,
            )?),
        };

        let console_refresh = Duration::from_millis(number(
            ENV_CONSOLE_REFRESH_MS,
            "console.refresh_ms",
            file_settings.console.refresh_ms,
            "2000",
            250,
            60_000,
        )?);

        let addr_raw = pick(ENV_HTTP_ADDR, "http.addr", file_settings.http.addr, DEFAULT_HTTP_ADDR);
        let http_addr: SocketAddr = addr_raw
            .value
            .parse()
            .map_err(|_| invalid(&addr_raw, format!("`{}` is not an address like 127.0.0.1:8080", addr_raw.value)))?;

        let ns_raw = pick(ENV_NAMESPACE, "namespace", file_settings.namespace, "");
        let namespace = Namespace::parse(&ns_raw.value).map_err(|reason| invalid(&ns_raw, reason))?;

        let log_raw = pick(ENV_LOG_FORMAT, "log.format", file_settings.log.format, "human");
        let log_format = log_raw.value.parse().map_err(|reason| invalid(&log_raw, reason))?;

        let events_raw = pick(
            ENV_BATCH_MAX_EVENTS,
            "worker.batch_max_events",
            file_settings.worker.batch_max_events.map(|v| v.to_string()),
            "5000",
        );
        let batch_max_events = parse_bounded(&events_raw, 1, MAX_BATCH_EVENTS as u64)? as usize;

        let bytes_raw = pick(
            ENV_BATCH_MAX_BYTES,
            "worker.batch_max_bytes",
            file_settings.worker.batch_max_bytes.map(|v| v.to_string()),
            "8388608",
        );
        let batch_max_bytes = parse_bounded(&bytes_raw, MIN_BATCH_BYTES, MAX_BATCH_BYTES)? as usize;

        let lanes_raw = pick(ENV_WORKER_LANES, "worker.lanes", file_settings.worker.lanes.map(|v| v.to_string()), "3");
        let lanes = parse_bounded(&lanes_raw, 1, MAX_WORKER_LANES)? as usize;

        let wait_raw = pick(
            ENV_BATCH_MAX_WAIT_MS,
            "worker.batch_max_wait_ms",
            file_settings.worker.batch_max_wait_ms.map(|v| v.to_string()),
            "10",
        );
        let batch_max_wait = Duration::from_millis(parse_bounded(&wait_raw, 1, MAX_BATCH_WAIT_MS)?);

        let window_raw = pick(
            ENV_DEDUP_WINDOW_HOURS,
            "worker.dedup_window_hours",
            file_settings.worker.dedup_window_hours.map(|v| v.to_string()),
            "168",
        );
        let dedup_window = Duration::from_secs(3600 * parse_bounded(&window_raw, 1, MAX_DEDUP_WINDOW_HOURS)?);

        let timeout_raw = pick(
            ENV_CONNECT_TIMEOUT_SECS,
            "connect_timeout_secs",
            file_settings.connect_timeout_secs.map(|v| v.to_string()),
            "10",
        );
        let connect_timeout = Duration::from_secs(parse_bounded(&timeout_raw, 1, MAX_CONNECT_TIMEOUT_SECS)?);

        let directory = |variable: &str, key: &str, in_toml: Option<PathBuf>| -> Result<Option<PathBuf>, ConfigError> {
            let dir = env.get(variable).map(PathBuf::from).or(in_toml);
            if let Some(dir) = &dir {
                // Listing it proves it is a folder this process can read.
                if let Err(error) = std::fs::read_dir(dir) {
                    let setting = if env.contains_key(variable) { variable.to_string() } else { in_file(key) };
                    let reason = if dir.is_dir() {
                        format!("{} cannot be read: {error}", dir.display())
                    } else {
                        format!("{} is not a directory", dir.display())
                    };
                    return Err(ConfigError::Invalid { setting, reason });
                }
            }
            Ok(dir)
        };
        let schemas_dir = directory(ENV_SCHEMAS_DIR, "schemas_dir", file_settings.schemas_dir)?;
        let projections_dir = directory(ENV_PROJECTIONS_DIR, "projections_dir", file_settings.projections_dir)?;

        let endpoint_raw = match env.get(ENV_OTLP_ENDPOINT) {
            Some(value) => Some(Raw { value: value.clone(), origin: ENV_OTLP_ENDPOINT.into() }),
            None => match file_settings.tracing.otlp_endpoint {
                Some(value) => Some(Raw { value, origin: in_file("tracing.otlp_endpoint") }),
                None => env.get(ENV_OTEL_ENDPOINT).map(|v| Raw { value: v.clone(), origin: ENV_OTEL_ENDPOINT.into() }),
            },
        };
        let otlp_endpoint = endpoint_raw.map(|raw| parse_endpoint(&raw)).transpose()?;
        let ratio_raw = pick(
            ENV_TRACE_SAMPLE_RATIO,
            "tracing.sample_ratio",
            file_settings.tracing.sample_ratio.map(|v| v.to_string()),
            "1",
        );
        let sample_ratio = match ratio_raw.value.trim().parse::<f64>() {
            Ok(ratio) if (0.0..=1.0).contains(&ratio) => ratio,
            _ => return Err(invalid(&ratio_raw, format!("`{}` is not a ratio from 0 to 1", ratio_raw.value))),
        };
        let tracing = TracingSettings { otlp_endpoint, sample_ratio };
        let metrics_raw =
            pick(ENV_METRICS, "metrics.enabled", file_settings.metrics.enabled.map(|b| b.to_string()), "true");
        let metrics_enabled = parse_bool(&metrics_raw)?;

        let protocol_raw = pick(
            ENV_GROUP_PROTOCOL,
            "kafka.group_protocol",
            file_settings.kafka.group_protocol,
            DEFAULT_GROUP_PROTOCOL.as_str(),
        );
        let group_protocol: GroupProtocol =
            protocol_raw.value.parse().map_err(|reason| invalid(&protocol_raw, reason))?;

        let key_encryption_key = match env.get(ENV_KEY_ENCRYPTION_KEY) {
            None => None,
            // The reason never repeats the value.
            Some(value) => Some(
                crate::cipher::KeyEncryptionKey::from_base64(value)
                    .map_err(|reason| ConfigError::Invalid { setting: shown(ENV_KEY_ENCRYPTION_KEY), reason })?,
            ),
        };

        let jwt = {
            let issuer = env.get(ENV_JWT_ISSUER).cloned().or(file_settings.jwt.issuer);
            let audience = env.get(ENV_JWT_AUDIENCE).cloned().or(file_settings.jwt.audience);
            let jwks_raw = match env.get(ENV_JWT_JWKS_URL) {
                Some(value) => Some(Raw { value: value.clone(), origin: ENV_JWT_JWKS_URL.into() }),
                None => file_settings.jwt.jwks_url.map(|value| Raw { value, origin: in_file("jwt.jwks_url") }),
            };
            parse_jwt(issuer, audience, jwks_raw)?
        };

        let mut properties = BTreeMap::new();
        let mut property_origins = BTreeMap::new();
        for (key, value) in file_settings.kafka.properties {
            let origin = in_file(&format!("kafka.properties.\"{key}\""));
            let value = match value {
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                other => {
                    return Err(ConfigError::Invalid {
                        setting: origin,
                        reason: format!("expected a string, integer or boolean, found {}", other.type_str()),
                    })
                }
            };
            check_property(&key, &origin)?;
            property_origins.insert(key.clone(), origin);
            properties.insert(key, value);
        }
        let mut passthrough: Vec<(&String, &String)> = env.iter().collect();
        passthrough.sort();
        for (var, value) in passthrough {
            if let Some(suffix) = var.strip_prefix(RDKAFKA_ENV_PREFIX) {
                let key = suffix.to_ascii_lowercase().replace('_', ".");
                if key.is_empty() {
                    return Err(ConfigError::Invalid { setting: var.clone(), reason: "names no property".into() });
                }
                check_property(&key, &shown(var))?;
                property_origins.insert(key.clone(), shown(var));
                properties.insert(key, value.clone());
            }
        }
        if group_protocol == GroupProtocol::Consumer {
            if let Some(key) = CLASSIC_GROUP_PROPERTIES.iter().find(|key| properties.contains_key(**key)) {
                return Err(ConfigError::Invalid {
                    setting: property_origins[*key].clone(),
                    reason: format!(
                        "`{key}` is set by the broker under the `consumer` group protocol (its \
                         group.consumer.* settings); remove it, or choose the classic protocol with \
                         {ENV_GROUP_PROTOCOL}=classic"
                    ),
                });
            }
        }

        Ok(Self {
            kafka: KafkaSettings { brokers, properties, group_protocol },
            database_url,
            http_addr,
            namespace,
            log_format,
            worker: WorkerSettings { batch_max_events, batch_max_bytes, lanes, batch_max_wait, dedup_window },
            connect_timeout,
            schemas_dir,
            projections_dir,
            outbox_database_url,
            insecure_databases,
            gateway,
            console_refresh,
            tracing,
            metrics_enabled,
            jwt,
            key_encryption_key,
            keys_database_url,
        })
    }
}

/// JWTs are accepted when all three settings are given, and refused when none is; some but not
/// all is a mistake worth stopping for. Keys are fetched over TLS except from this machine.
fn parse_jwt(
    issuer: Option<String>,
    audience: Option<String>,
    jwks: Option<Raw>,
) -> Result<Option<JwtSettings>, ConfigError> {
    if issuer.is_none() && audience.is_none() && jwks.is_none() {
        return Ok(None);
    }
    let missing: Vec<&str> = [
        (ENV_JWT_ISSUER, issuer.is_none()),
        (ENV_JWT_AUDIENCE, audience.is_none()),
        (ENV_JWT_JWKS_URL, jwks.is_none()),
    ]
    .into_iter()
    .filter_map(|(name, missing)| missing.then_some(name))
    .collect();
    let (Some(issuer), Some(audience), Some(jwks)) = (issuer, audience, jwks) else {
        return Err(ConfigError::Invalid {
            setting: "JWT authentication".into(),
            reason: format!(
                "needs the issuer, the audience and the key set's URL together; missing: {} (or the `jwt` table's \
                 issuer, audience, jwks_url)",
                missing.join(", ")
            ),
        });
    };
    if issuer.trim().is_empty() || audience.trim().is_empty() {
        return Err(ConfigError::Invalid {
            setting: "JWT authentication".into(),
            reason: "the issuer and the audience must not be empty".into(),
        });
    }
    let url = Url::parse(&jwks.value).map_err(|e| invalid(&jwks, format!("`{}` is not a URL: {e}", jwks.value)))?;
    let loopback = match url.host() {
        Some(url::Host::Domain(name)) => name == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => {
            return Err(invalid(
                &jwks,
                "the key set must come over https from another machine: anyone on the way could swap the keys",
            ))
        }
        other => return Err(invalid(&jwks, format!("`{other}` is not http or https"))),
    }
    Ok(Some(JwtSettings { issuer, audience, jwks_url: url }))
}

fn parse_bool(raw: &Raw) -> Result<bool, ConfigError> {
    match raw.value.trim() {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(invalid(raw, format!("`{other}` is not `true` or `false`"))),
    }
}

fn invalid(raw: &Raw, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { setting: raw.origin.clone(), reason: reason.into() }
}

fn read_file(path: &Path) -> Result<FileSettings, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::FileUnreadable { path: path.to_path_buf(), reason: e.to_string() })?;
    toml::from_str(&text).map_err(|e| ConfigError::FileInvalid {
        path: path.to_path_buf(),
        reason: e.to_string().trim_end().to_string(),
    })
}

/// Suffix of a variable naming a file that holds a secret setting's value (`DATABASE_URL_FILE`
/// for `DATABASE_URL`), as container secrets and credential managers hand them over.
pub const SECRET_FILE_SUFFIX: &str = "_FILE";

/// Settings whose values are credentials, each of which may also come from a file. Besides
/// these, every `EVENTLINE_RDKAFKA_*` variable for a secret property (see [`is_secret_property`]).
const SECRET_ENV: &[&str] = &[ENV_DATABASE_URL, ENV_OUTBOX_DATABASE_URL, ENV_KEY_ENCRYPTION_KEY, ENV_KEYS_DATABASE_URL];

/// Variables and their values.
type Environment = HashMap<String, String>;

/// The environment with every `<NAME>_FILE` of a secret setting replaced by `<NAME>` holding the
/// file's content (one trailing line break dropped), and which names came from which variable.
/// An error names the variable and the file, never the content.
fn read_secret_files(env: &HashMap<String, String>) -> Result<(Environment, Environment), ConfigError> {
    let mut resolved = env.clone();
    let mut read_from = HashMap::new();
    let mut file_vars: Vec<&String> = env.keys().filter(|var| var.ends_with(SECRET_FILE_SUFFIX)).collect();
    file_vars.sort();
    for file_var in file_vars {
        let name = &file_var[..file_var.len() - SECRET_FILE_SUFFIX.len()];
        let invalid = |reason: String| ConfigError::Invalid { setting: file_var.clone(), reason };
        if let Some(property) = name.strip_prefix(RDKAFKA_ENV_PREFIX) {
            let key = property.to_ascii_lowercase().replace('_', ".");
            if !is_secret_property(&key) {
                return Err(invalid(format!(
                    "only secret settings are read from files, and librdkafka's `{key}` is not one: set {name}"
                )));
            }
        } else if !SECRET_ENV.contains(&name) {
            if KNOWN_ENV.contains(&name) {
                return Err(invalid(format!(
                    "only secret settings are read from files, and {name} is not one: set {name}"
                )));
            }
            // Not a setting's file: someone else's variable, or a typo the unknown-variable check names.
            continue;
        }
        if env.contains_key(name) {
            return Err(invalid(format!("{name} is set too: set one of them")));
        }
        let path = &env[file_var.as_str()];
        let content = std::fs::read_to_string(path).map_err(|e| invalid(format!("cannot read {path}: {e}")))?;
        let value = content.strip_suffix('\n').map(|v| v.strip_suffix('\r').unwrap_or(v)).unwrap_or(&content);
        resolved.remove(file_var.as_str());
        resolved.insert(name.to_string(), value.to_string());
        read_from.insert(name.to_string(), file_var.clone());
    }
    Ok((resolved, read_from))
}

fn check_unknown_variables(env: &HashMap<String, String>) -> Result<(), ConfigError> {
    let mut unknown: Vec<&String> = env
        .keys()
        .filter(|var| var.starts_with("EVENTLINE_"))
        .filter(|var| !var.starts_with(RDKAFKA_ENV_PREFIX) && !KNOWN_ENV.contains(&var.as_str()))
        .collect();
    unknown.sort();
    match unknown.first() {
        None => Ok(()),
        Some(variable) => {
            let hint = KNOWN_ENV
                .iter()
                .find(|known| strsim_close(known, variable))
                .map(|known| format!(" (did you mean {known}?)"))
                .unwrap_or_default();
            Err(ConfigError::UnknownVariable { variable: (*variable).clone(), hint })
        }
    }
}

/// Whether two variable names differ by one inserted, removed or changed character.
fn strsim_close(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    if long.len() - short.len() > 1 {
        return false;
    }
    let prefix = short.iter().zip(long).take_while(|(x, y)| x == y).count();
    let suffix = short[prefix..].iter().rev().zip(long[prefix..].iter().rev()).take_while(|(x, y)| x == y).count();
    prefix + suffix + 1 >= long.len()
}

fn check_property(key: &str, origin: &str) -> Result<(), ConfigError> {
    if MANAGED_RDKAFKA_PROPERTIES.contains(&key) {
        return Err(ConfigError::Invalid {
            setting: origin.to_string(),
            reason: format!("`{key}` is set by eventline itself and cannot be overridden"),
        });
    }
    if !key.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.') {
        return Err(ConfigError::Invalid {
            setting: origin.to_string(),
            reason: format!("`{key}` is not a librdkafka property name"),
        });
    }
    Ok(())
}

/// Whether a librdkafka property holds a credential and must never be printed.
pub fn is_secret_property(key: &str) -> bool {
    SECRET_PROPERTY_MARKERS.iter().any(|marker| key.contains(marker))
}

fn parse_brokers(value: &str) -> Result<Vec<String>, String> {
    let brokers: Vec<String> = value.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect();
    if brokers.is_empty() {
        return Err("no broker given (expected host:port[,host:port…])".into());
    }
    for broker in &brokers {
        let (host, port) = broker.rsplit_once(':').ok_or_else(|| format!("`{broker}` is not host:port"))?;
        if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(format!("`{broker}` is not host:port"));
        }
    }
    Ok(brokers)
}

/// An OTLP/HTTP base URL: `http` or `https`, with a host.
fn parse_endpoint(raw: &Raw) -> Result<Url, ConfigError> {
    let url = Url::parse(raw.value.trim()).map_err(|e| invalid(raw, format!("`{}` is not a URL: {e}", raw.value)))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(invalid(raw, format!("`{}` is not an http:// or https:// URL with a host", raw.value)));
    }
    Ok(url)
}

fn parse_bounded(raw: &Raw, min: u64, max: u64) -> Result<u64, ConfigError> {
    match raw.value.trim().parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(invalid(raw, format!("`{}` is not a whole number from {min} to {max}", raw.value))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn load(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        Settings::load_from(None, &env(pairs))
    }

    #[test]
    fn defaults_match_the_documentation() {
        let settings = load(&[]).unwrap();
        assert_eq!(settings.kafka.brokers, vec!["127.0.0.1:9092"]);
        assert_eq!(settings.database_url.expose(), DEFAULT_DATABASE_URL);
        assert_eq!(settings.http_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(settings.namespace.as_str(), "");
        assert_eq!(settings.log_format, LogFormat::Human);
        assert_eq!(settings.worker.batch_max_events, 5000);
        assert_eq!(settings.worker.batch_max_bytes, 8 * 1024 * 1024);
        assert_eq!(settings.worker.lanes, 3);
        assert_eq!(settings.worker.batch_max_wait, Duration::from_millis(10));
        assert_eq!(settings.worker.dedup_window, Duration::from_secs(7 * 24 * 3600));
        assert_eq!(settings.connect_timeout, Duration::from_secs(10));
        assert!(settings.kafka.properties.is_empty());
        assert_eq!(settings.schemas_dir, None);
        assert_eq!(settings.outbox_database_url, settings.database_url);
        assert_eq!(
            settings.gateway,
            GatewaySettings {
                max_body_bytes: 4 * 1024 * 1024,
                max_batch_events: 1000,
                rate_per_key: 1000,
                produce_timeout: Duration::from_secs(5)
            }
        );
        assert_eq!(settings.console_refresh, Duration::from_secs(2));
    }

    #[test]
    fn tracing_is_off_by_default_and_follows_ours_then_the_file_then_the_otel_variable() {
        let off = load(&[]).unwrap().tracing;
        assert_eq!(off, TracingSettings { otlp_endpoint: None, sample_ratio: 1.0 });

        let standard = load(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")]).unwrap().tracing;
        assert_eq!(standard.otlp_endpoint.unwrap().as_str(), "http://collector:4318/");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("eventline.toml");
        std::fs::write(&path, "[tracing]\notlp_endpoint = \"https://file:4318\"\nsample_ratio = 0.25\n").unwrap();
        let from_file =
            Settings::load_from(Some(&path), &env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")]))
                .unwrap()
                .tracing;
        assert_eq!(from_file.otlp_endpoint.unwrap().as_str(), "https://file:4318/");
        assert_eq!(from_file.sample_ratio, 0.25);

        let ours = Settings::load_from(
            Some(&path),
            &env(&[("EVENTLINE_OTLP_ENDPOINT", "http://ours:4318"), ("EVENTLINE_TRACE_SAMPLE_RATIO", "0.01")]),
        )
        .unwrap()
        .tracing;
        assert_eq!(ours.otlp_endpoint.unwrap().as_str(), "http://ours:4318/");
        assert_eq!(ours.sample_ratio, 0.01);
    }

    #[test]
    fn metrics_are_on_unless_turned_off() {
        assert!(load(&[]).unwrap().metrics_enabled);
        assert!(!load(&[("EVENTLINE_METRICS", "false")]).unwrap().metrics_enabled);
        let err = load(&[("EVENTLINE_METRICS", "off")]).unwrap_err().to_string();
        assert_eq!(err, "invalid EVENTLINE_METRICS: `off` is not `true` or `false`");
    }

    #[test]
    fn jwts_need_an_issuer_an_audience_and_a_key_set_fetched_safely() {
        assert_eq!(load(&[]).unwrap().jwt, None);
        let jwt = load(&[
            ("EVENTLINE_JWT_ISSUER", "https://id.example.com/"),
            ("EVENTLINE_JWT_AUDIENCE", "eventline"),
            ("EVENTLINE_JWT_JWKS_URL", "https://id.example.com/.well-known/jwks.json"),
        ])
        .unwrap()
        .jwt
        .unwrap();
        assert_eq!(jwt.issuer, "https://id.example.com/");
        assert_eq!(jwt.audience, "eventline");
        assert_eq!(jwt.jwks_url.as_str(), "https://id.example.com/.well-known/jwks.json");
        let local = [("EVENTLINE_JWT_ISSUER", "me"), ("EVENTLINE_JWT_AUDIENCE", "eventline")];
        let with_keys = |url: &'static str| {
            let mut pairs = local.to_vec();
            pairs.push(("EVENTLINE_JWT_JWKS_URL", url));
            load(&pairs)
        };
        assert!(with_keys("http://127.0.0.1:9000/jwks").is_ok());
        assert!(with_keys("http://localhost:9000/jwks").is_ok());
        assert_eq!(
            with_keys("http://id.example.com/jwks").unwrap_err().to_string(),
            "invalid EVENTLINE_JWT_JWKS_URL: the key set must come over https from another machine: anyone on the \
             way could swap the keys"
        );
        assert_eq!(
            with_keys("file:///etc/jwks.json").unwrap_err().to_string(),
            "invalid EVENTLINE_JWT_JWKS_URL: `file` is not http or https"
        );
        assert_eq!(
            load(&[("EVENTLINE_JWT_ISSUER", "me")]).unwrap_err().to_string(),
            "invalid JWT authentication: needs the issuer, the audience and the key set's URL together; missing: \
             EVENTLINE_JWT_AUDIENCE, EVENTLINE_JWT_JWKS_URL (or the `jwt` table's issuer, audience, jwks_url)"
        );
        let mut empty = local.to_vec();
        empty[0].1 = " ";
        empty.push(("EVENTLINE_JWT_JWKS_URL", "https://id.example.com/jwks"));
        assert_eq!(
            load(&empty).unwrap_err().to_string(),
            "invalid JWT authentication: the issuer and the audience must not be empty"
        );
    }

    #[test]
    fn bad_tracing_settings_are_named() {
        let err = load(&[("EVENTLINE_OTLP_ENDPOINT", "collector:4318")]).unwrap_err().to_string();
        assert_eq!(
            err,
            "invalid EVENTLINE_OTLP_ENDPOINT: `collector:4318` is not an http:// or https:// URL with a host"
        );
        let err = load(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "not a url")]).unwrap_err().to_string();
        assert_eq!(err, "invalid OTEL_EXPORTER_OTLP_ENDPOINT: `not a url` is not a URL: relative URL without a base");
        for bad in ["1.5", "-0.1", "half"] {
            let err = load(&[("EVENTLINE_TRACE_SAMPLE_RATIO", bad)]).unwrap_err().to_string();
            assert_eq!(err, format!("invalid EVENTLINE_TRACE_SAMPLE_RATIO: `{bad}` is not a ratio from 0 to 1"));
        }
    }

    #[test]
    fn a_database_on_another_machine_must_be_verified_unless_allowed() {
        let hint = "use sslmode=verify-full (with sslrootcert=<the CA's certificate file> unless the system trusts \
                    the server's CA), or set EVENTLINE_DATABASE_ALLOW_INSECURE=true to accept it";
        let refused: [(&[(&str, &str)], &str); 8] = [
            (
                &[("DATABASE_URL", "postgres://app:pw@db.internal/eventline")],
                "invalid DATABASE_URL: host db.internal is not on this machine and sslmode=prefer may send everything in plain text",
            ),
            (
                &[("DATABASE_URL", "postgres://app@10.0.0.7/eventline?sslmode=require")],
                "invalid DATABASE_URL: host 10.0.0.7 is not on this machine and sslmode=require encrypts but does not check who the server is",
            ),
            (
                &[("DATABASE_URL", "postgres://app@db.internal/eventline?ssl-mode=verify-ca")],
                "invalid DATABASE_URL: host db.internal is not on this machine and sslmode=verify-ca checks the server's certificate but not its name",
            ),
            (
                &[("DATABASE_URL", "postgres://app@db.internal/eventline?sslmode=verify_full")],
                "invalid DATABASE_URL: host db.internal is not on this machine and sslmode=verify_full is not a mode that verifies the server",
            ),
            (
                &[("DATABASE_URL", "postgres://app@db.internal/eventline"), ("PGSSLMODE", "disable")],
                "invalid DATABASE_URL: host db.internal is not on this machine and sslmode=disable may send everything in plain text",
            ),
            (
                // The query's host wins over the URL's, as the driver reads it.
                &[("DATABASE_URL", "postgres://app@localhost/eventline?host=db.internal")],
                "invalid DATABASE_URL: host db.internal is not on this machine and sslmode=prefer may send everything in plain text",
            ),
            (
                &[("DATABASE_URL", "postgres:///eventline"), ("PGHOST", "db.internal")],
                "invalid DATABASE_URL: host db.internal is not on this machine and sslmode=prefer may send everything in plain text",
            ),
            (
                &[
                    ("DATABASE_URL", "postgres://app@localhost/eventline"),
                    ("EVENTLINE_OUTBOX_DATABASE_URL", "postgres://relay@upstream/shop?sslmode=verify-full&sslmode=require"),
                ],
                "invalid EVENTLINE_OUTBOX_DATABASE_URL: host upstream is not on this machine and sslmode=require \
                 encrypts but does not check who the server is",
            ),
        ];
        for (pairs, expected) in refused {
            let err = load(pairs).unwrap_err().to_string();
            assert_eq!(err, format!("{expected}: {hint}"), "{pairs:?}");
        }

        // On this machine, or verified: no questions asked.
        for url in [
            "postgres://app@localhost/eventline",
            "postgres://app@127.0.0.2:5433/eventline?sslmode=disable",
            "postgres://app@[::1]/eventline",
            "postgres:///eventline?host=/var/run/postgresql",
            "postgres://app@db.internal/eventline?sslmode=verify-full&sslrootcert=/etc/eventline/ca.pem",
        ] {
            let settings = load(&[("DATABASE_URL", url)]).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert!(settings.insecure_databases.is_empty(), "{url}");
        }

        // Allowed explicitly: accepted, and said once per database for the log.
        let settings = load(&[
            ("DATABASE_URL", "postgres://app@db.internal/eventline?sslmode=require"),
            ("EVENTLINE_DATABASE_ALLOW_INSECURE", "true"),
        ])
        .unwrap();
        assert_eq!(
            settings.insecure_databases,
            ["DATABASE_URL: host db.internal is not on this machine and sslmode=require encrypts but does not check who \
              the server is, accepted because EVENTLINE_DATABASE_ALLOW_INSECURE is true"]
        );
        let err = load(&[("EVENTLINE_DATABASE_ALLOW_INSECURE", "yes")]).unwrap_err().to_string();
        assert_eq!(err, "invalid EVENTLINE_DATABASE_ALLOW_INSECURE: `yes` is not `true` or `false`");
    }

    #[test]
    fn credentials_never_print() {
        let settings = load(&[
            ("DATABASE_URL", "postgres://app:hunter2@db.internal:5432/eventline?sslmode=verify-full&password=hunter3"),
            ("EVENTLINE_RDKAFKA_SASL_PASSWORD", "kafka-secret-1"),
            ("EVENTLINE_RDKAFKA_SSL_KEY_PASSWORD", "kafka-secret-2"),
            ("EVENTLINE_RDKAFKA_SASL_OAUTHBEARER_CONFIG", "principal=x secret=kafka-secret-3"),
            ("EVENTLINE_RDKAFKA_SASL_USERNAME", "app"),
        ])
        .unwrap();
        let printed = format!("{settings:?} {}", settings.database_url);
        for secret in ["hunter2", "hunter3", "kafka-secret-1", "kafka-secret-2", "kafka-secret-3"] {
            assert!(!printed.contains(secret), "{secret} leaked in: {printed}");
        }
        // Non-secret parts stay readable, so the redaction is not simply hiding everything.
        assert!(printed.contains("app:***@db.internal:5432/eventline"), "{printed}");
        assert!(printed.contains("\"sasl.username\": \"app\""), "{printed}");
        // The driver still gets the real URL.
        assert!(settings.database_url.expose().contains("hunter2"));
    }

    #[test]
    fn secrets_come_from_files_named_by_their_file_variables() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, content: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, content).unwrap();
            path.display().to_string()
        };
        let url = write("url", "postgres://app:hunter2@db.internal:5432/eventline?sslmode=verify-full\n");
        let outbox = write("outbox", "postgres://relay:hunter4@upstream:5432/shop?sslmode=verify-full\r\n");
        let sasl = write("sasl", "kafka-secret-1");
        let settings = load(&[
            ("DATABASE_URL_FILE", &url),
            ("EVENTLINE_OUTBOX_DATABASE_URL_FILE", &outbox),
            ("EVENTLINE_RDKAFKA_SASL_PASSWORD_FILE", &sasl),
        ])
        .unwrap();
        assert_eq!(
            settings.database_url.expose(),
            "postgres://app:hunter2@db.internal:5432/eventline?sslmode=verify-full"
        );
        assert_eq!(
            settings.outbox_database_url.expose(),
            "postgres://relay:hunter4@upstream:5432/shop?sslmode=verify-full"
        );
        assert_eq!(settings.kafka.properties["sasl.password"], "kafka-secret-1");
        let printed = format!("{settings:?}");
        for secret in ["hunter2", "hunter4", "kafka-secret-1"] {
            assert!(!printed.contains(secret), "{secret} leaked in: {printed}");
        }
        // An error about a value read from a file names the variable that named the file.
        let bad = write("bad", "mysql://root:hunter5@db/x");
        let err = load(&[("DATABASE_URL_FILE", &bad)]).unwrap_err().to_string();
        assert_eq!(err, "invalid DATABASE_URL_FILE: scheme `mysql` is not postgres:// or postgresql://");
    }

    #[test]
    fn the_key_encryption_key_is_32_bytes_of_base64_from_the_environment_or_a_file() {
        assert!(load(&[]).unwrap().key_encryption_key.is_none());
        let kek = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
        let settings = load(&[("EVENTLINE_KEY_ENCRYPTION_KEY", kek)]).unwrap();
        assert!(settings.key_encryption_key.is_some());
        assert!(!format!("{settings:?}").contains(kek), "the key is never printed");
        let err = load(&[("EVENTLINE_KEY_ENCRYPTION_KEY", "c2hvcnQ=")]).unwrap_err().to_string();
        assert_eq!(err, "invalid EVENTLINE_KEY_ENCRYPTION_KEY: must be 32 bytes (256 bits) in base64, not 5");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("kek");
        std::fs::write(&file, "c2hvcnQ=\n").unwrap();
        let err = load(&[("EVENTLINE_KEY_ENCRYPTION_KEY_FILE", file.to_str().unwrap())]).unwrap_err().to_string();
        assert_eq!(err, "invalid EVENTLINE_KEY_ENCRYPTION_KEY_FILE: must be 32 bytes (256 bits) in base64, not 5");
        std::fs::write(&file, format!("{kek}\n")).unwrap();
        let settings = load(&[("EVENTLINE_KEY_ENCRYPTION_KEY_FILE", file.to_str().unwrap())]).unwrap();
        assert!(settings.key_encryption_key.is_some());
    }

    #[test]
    fn bad_secret_files_are_refused_by_their_variable_without_their_content() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, "hunter2").unwrap();
        let file = file.display().to_string();
        let missing = dir.path().join("missing").display().to_string();
        let cases: &[(&[(&str, &str)], String)] = &[
            (
                &[("DATABASE_URL", "postgres://x@h/db"), ("DATABASE_URL_FILE", &file)],
                "invalid DATABASE_URL_FILE: DATABASE_URL is set too: set one of them".into(),
            ),
            (
                &[("DATABASE_URL_FILE", &missing)],
                format!("invalid DATABASE_URL_FILE: cannot read {missing}: No such file or directory (os error 2)"),
            ),
            (
                &[("EVENTLINE_RDKAFKA_CLIENT_ID_FILE", &file)],
                "invalid EVENTLINE_RDKAFKA_CLIENT_ID_FILE: only secret settings are read from files, and librdkafka's \
                 `client.id` is not one: set EVENTLINE_RDKAFKA_CLIENT_ID"
                    .into(),
            ),
            (
                &[("EVENTLINE_NAMESPACE_FILE", &file)],
                "invalid EVENTLINE_NAMESPACE_FILE: only secret settings are read from files, and EVENTLINE_NAMESPACE \
                 is not one: set EVENTLINE_NAMESPACE"
                    .into(),
            ),
            (
                &[("EVENTLINE_DATABASE_URL_FILE", &file)],
                "unknown setting EVENTLINE_DATABASE_URL_FILE: eventline reads no such environment variable".into(),
            ),
        ];
        for (pairs, expected) in cases {
            let err = load(pairs).unwrap_err().to_string();
            assert_eq!(&err, expected);
            assert!(!err.contains("hunter2"));
        }
    }

    #[test]
    fn an_invalid_database_url_error_does_not_echo_the_value() {
        let err = load(&[("DATABASE_URL", "mysql://root:hunter2@db/x")]).unwrap_err().to_string();
        assert_eq!(err, "invalid DATABASE_URL: scheme `mysql` is not postgres:// or postgresql://");
    }

    #[test]
    fn environment_overrides_file_and_file_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("eventline.toml");
        std::fs::write(
            &path,
            r#"
namespace = "staging"
[kafka]
brokers = ["k1:9092", "k2:9092"]
[kafka.properties]
"security.protocol" = "sasl_ssl"
"socket.timeout.ms" = 30000
[http]
addr = "0.0.0.0:9000"
[worker]
batch_max_events = 50
batch_max_bytes = 65536
lanes = 6
"#,
        )
        .unwrap();
        let settings = Settings::load_from(Some(&path), &env(&[("EVENTLINE_HTTP_ADDR", "127.0.0.1:7000")])).unwrap();
        assert_eq!(settings.kafka.brokers, vec!["k1:9092", "k2:9092"]);
        assert_eq!(settings.kafka.properties["security.protocol"], "sasl_ssl");
        assert_eq!(settings.kafka.properties["socket.timeout.ms"], "30000");
        assert_eq!(settings.http_addr.to_string(), "127.0.0.1:7000");
        assert_eq!(settings.namespace.as_str(), "staging");
        assert_eq!(settings.worker.batch_max_events, 50);
        assert_eq!(settings.worker.batch_max_bytes, 65536);
        assert_eq!(settings.worker.lanes, 6);
    }

    #[test]
    fn the_config_file_can_be_named_by_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("eventline.toml");
        std::fs::write(&path, "namespace = \"from-file\"\n").unwrap();
        let settings = load(&[("EVENTLINE_CONFIG", path.to_str().unwrap())]).unwrap();
        assert_eq!(settings.namespace.as_str(), "from-file");
    }

    #[test]
    fn bad_values_name_the_setting_and_its_origin() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("EVENTLINE_KAFKA_BROKERS", "kafka")], "invalid EVENTLINE_KAFKA_BROKERS: `kafka` is not host:port"),
            (&[("EVENTLINE_KAFKA_BROKERS", " , ")], "invalid EVENTLINE_KAFKA_BROKERS: no broker given (expected host:port[,host:port…])"),
            (&[("EVENTLINE_KAFKA_BROKERS", "k:0")], "invalid EVENTLINE_KAFKA_BROKERS: `k:0` is not host:port"),
            (&[("DATABASE_URL", "not a url")], "invalid DATABASE_URL: not a URL (relative URL without a base)"),
            (&[("EVENTLINE_HTTP_ADDR", "localhost")], "invalid EVENTLINE_HTTP_ADDR: `localhost` is not an address like 127.0.0.1:8080"),
            (&[("EVENTLINE_NAMESPACE", "a.b")], "invalid EVENTLINE_NAMESPACE: `.` is not allowed (use letters, digits, `-` and `_`)"),
            (&[("EVENTLINE_LOG_FORMAT", "xml")], "invalid EVENTLINE_LOG_FORMAT: `xml` is not a log format (expected `human` or `json`)"),
            (&[("EVENTLINE_BATCH_MAX_EVENTS", "0")], "invalid EVENTLINE_BATCH_MAX_EVENTS: `0` is not a whole number from 1 to 100000"),
            (&[("EVENTLINE_BATCH_MAX_WAIT_MS", "soon")], "invalid EVENTLINE_BATCH_MAX_WAIT_MS: `soon` is not a whole number from 1 to 60000"),
            (&[("EVENTLINE_CONSOLE_REFRESH_MS", "100")], "invalid EVENTLINE_CONSOLE_REFRESH_MS: `100` is not a whole number from 250 to 60000"),
            (&[("EVENTLINE_BATCH_MAX_BYTES", "100")], "invalid EVENTLINE_BATCH_MAX_BYTES: `100` is not a whole number from 1024 to 1073741824"),
            (&[("EVENTLINE_WORKER_LANES", "0")], "invalid EVENTLINE_WORKER_LANES: `0` is not a whole number from 1 to 64"),
            (&[("EVENTLINE_WORKER_LANES", "65")], "invalid EVENTLINE_WORKER_LANES: `65` is not a whole number from 1 to 64"),
            (&[("EVENTLINE_CONNECT_TIMEOUT_SECS", "-1")], "invalid EVENTLINE_CONNECT_TIMEOUT_SECS: `-1` is not a whole number from 1 to 600"),
            (&[("EVENTLINE_RDKAFKA_GROUP_ID", "mine")], "invalid EVENTLINE_RDKAFKA_GROUP_ID: `group.id` is set by eventline itself and cannot be overridden"),
            (&[("EVENTLINE_KAFKA_BROKER", "k:1")], "unknown setting EVENTLINE_KAFKA_BROKER: eventline reads no such environment variable (did you mean EVENTLINE_KAFKA_BROKERS?)"),
            (&[("EVENTLINE_COLOUR", "1")], "unknown setting EVENTLINE_COLOUR: eventline reads no such environment variable"),
            (&[("EVENTLINE_SCHEMAS_DIR", "/nonexistent")], "invalid EVENTLINE_SCHEMAS_DIR: /nonexistent is not a directory"),
            (&[("EVENTLINE_PROJECTIONS_DIR", "/nonexistent")], "invalid EVENTLINE_PROJECTIONS_DIR: /nonexistent is not a directory"),
            (&[("EVENTLINE_PROJECTIONS_DIR", "/etc/hostname")], "invalid EVENTLINE_PROJECTIONS_DIR: /etc/hostname is not a directory"),
            (&[("EVENTLINE_GATEWAY_MAX_BATCH_EVENTS", "0")], "invalid EVENTLINE_GATEWAY_MAX_BATCH_EVENTS: `0` is not a whole number from 1 to 100000"),
            (&[("EVENTLINE_OUTBOX_DATABASE_URL", "redis://x")], "invalid EVENTLINE_OUTBOX_DATABASE_URL: scheme `redis` is not postgres:// or postgresql://"),
            (&[("EVENTLINE_KEYS_DATABASE_URL", "redis://x")], "invalid EVENTLINE_KEYS_DATABASE_URL: scheme `redis` is not postgres:// or postgresql://"),
            (&[("EVENTLINE_KEYS_DATABASE_URL", "postgres://keys@db.example/eventline")], "invalid EVENTLINE_KEYS_DATABASE_URL: host db.example is not on this machine and sslmode=prefer may send everything in plain text: use sslmode=verify-full (with sslrootcert=<the CA's certificate file> unless the system trusts the server's CA), or set EVENTLINE_DATABASE_ALLOW_INSECURE=true to accept it"),
            (&[("EVENTLINE_GROUP_PROTOCOL", "eager")], "invalid EVENTLINE_GROUP_PROTOCOL: `eager` is not a group protocol (expected `consumer` or `classic`)"),
            (&[("EVENTLINE_RDKAFKA_GROUP_PROTOCOL", "classic")], "invalid EVENTLINE_RDKAFKA_GROUP_PROTOCOL: `group.protocol` is set by eventline itself and cannot be overridden"),
            (
                &[("EVENTLINE_GROUP_PROTOCOL", "consumer"), ("EVENTLINE_RDKAFKA_SESSION_TIMEOUT_MS", "6000")],
                "invalid EVENTLINE_RDKAFKA_SESSION_TIMEOUT_MS: `session.timeout.ms` is set by the broker under the `consumer` group protocol (its group.consumer.* settings); remove it, or choose the classic protocol with EVENTLINE_GROUP_PROTOCOL=classic",
            ),
        ];
        for (pairs, expected) in cases {
            let err = load(pairs).expect_err(expected).to_string();
            assert_eq!(&err, expected);
        }
    }

    #[test]
    fn file_errors_name_the_file_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "[kafka]\nbroker = \"x:1\"\n").unwrap();
        let err = Settings::load_from(Some(&path), &HashMap::new()).unwrap_err().to_string();
        assert!(err.starts_with(&format!("invalid configuration file {}:", path.display())), "{err}");
        assert!(err.contains("unknown field `broker`"), "{err}");

        std::fs::write(&path, "[worker]\nbatch_max_events = 0\n").unwrap();
        let err = Settings::load_from(Some(&path), &HashMap::new()).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "invalid `worker.batch_max_events` in {}: `0` is not a whole number from 1 to 100000",
                path.display()
            )
        );

        std::fs::write(&path, "projections_dir = \"/nonexistent\"\n").unwrap();
        let err = Settings::load_from(Some(&path), &HashMap::new()).unwrap_err().to_string();
        assert_eq!(err, format!("invalid `projections_dir` in {}: /nonexistent is not a directory", path.display()));
        std::fs::write(&path, format!("projections_dir = {:?}\n", dir.path())).unwrap();
        let settings = Settings::load_from(Some(&path), &HashMap::new()).unwrap();
        assert_eq!(settings.projections_dir.as_deref(), Some(dir.path()));

        let missing = dir.path().join("missing.toml");
        let err = Settings::load_from(Some(&missing), &HashMap::new()).unwrap_err().to_string();
        assert!(err.starts_with(&format!("cannot read configuration file {}:", missing.display())), "{err}");
    }

    #[test]
    fn the_group_protocol_comes_from_the_environment_or_the_file() {
        assert_eq!(load(&[]).unwrap().kafka.group_protocol, DEFAULT_GROUP_PROTOCOL);
        let consumer = load(&[("EVENTLINE_GROUP_PROTOCOL", "consumer")]).unwrap();
        assert_eq!(consumer.kafka.group_protocol, GroupProtocol::Consumer);
        // The classic protocol keeps the client-side session settings.
        let classic =
            load(&[("EVENTLINE_GROUP_PROTOCOL", "classic"), ("EVENTLINE_RDKAFKA_SESSION_TIMEOUT_MS", "6000")]);
        assert_eq!(classic.unwrap().kafka.properties["session.timeout.ms"], "6000");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("eventline.toml");
        std::fs::write(
            &path,
            "[kafka]\ngroup_protocol = \"consumer\"\n[kafka.properties]\n\"heartbeat.interval.ms\" = 500\n",
        )
        .unwrap();
        let err = Settings::load_from(Some(&path), &HashMap::new()).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "invalid `kafka.properties.\"heartbeat.interval.ms\"` in {}: `heartbeat.interval.ms` is set by the broker",
                path.display()
            )),
            "{err}"
        );
    }

    #[test]
    fn namespace_prefixes_topics_and_groups() {
        let plain = Namespace::default();
        assert_eq!(plain.topic("accounts.events"), "accounts.events");
        assert_eq!(plain.group_id("account_balances"), "eventline.account_balances");
        let ns = Namespace::parse("t42").unwrap();
        assert_eq!(ns.topic("accounts.events"), "t42.accounts.events");
        assert_eq!(ns.group_id("account_balances"), "t42.eventline.account_balances");
        assert_eq!(ns.strip("t42.accounts.events"), Some("accounts.events"));
        assert_eq!(ns.strip("t4.accounts.events"), None);
    }
}
