//! The command line: what each subcommand takes, and the help users read.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use eventline_consumers::rebuild::StartFrom;

const AFTER_HELP: &str = "\
Configuration comes from the environment (and an optional TOML file given with --config or
EVENTLINE_CONFIG): EVENTLINE_KAFKA_BROKERS (default 127.0.0.1:9092), DATABASE_URL (default
postgres://postgres@127.0.0.1:5432/eventline), EVENTLINE_HTTP_ADDR (default 127.0.0.1:8080),
EVENTLINE_NAMESPACE, EVENTLINE_BATCH_MAX_EVENTS (default 5000), EVENTLINE_BATCH_MAX_BYTES
(default 8 MiB), EVENTLINE_BATCH_MAX_WAIT_MS, EVENTLINE_WORKER_LANES (batches a worker writes
at once, each on its own database connection; default 3),
EVENTLINE_CONNECT_TIMEOUT_SECS, EVENTLINE_LOG_FORMAT, EVENTLINE_SCHEMAS_DIR (a schema registry
folder instead of the built-in one), EVENTLINE_PROJECTIONS_DIR (declarative projections to run
beside the built-in ones), EVENTLINE_GROUP_PROTOCOL (the workers' consumer group
protocol: classic, the default, or consumer for KIP-848), and librdkafka properties as
EVENTLINE_RDKAFKA_<NAME> (EVENTLINE_RDKAFKA_SASL_USERNAME sets sasl.username). A secret
setting (DATABASE_URL, EVENTLINE_OUTBOX_DATABASE_URL, EVENTLINE_KEYS_DATABASE_URL,
EVENTLINE_KEY_ENCRYPTION_KEY, a secret librdkafka property) may instead
be read from the file named by <NAME>_FILE, e.g. DATABASE_URL_FILE. Logs go to
standard error; RUST_LOG filters them. Metrics are served at /metrics (EVENTLINE_METRICS=false
turns them off); spans are exported over OTLP/HTTP when EVENTLINE_OTLP_ENDPOINT (or
OTEL_EXPORTER_OTLP_ENDPOINT) names a collector, sampled at EVENTLINE_TRACE_SAMPLE_RATIO (default 1).
PostgreSQL on another machine must be reached with sslmode=verify-full in its URL (and
sslrootcert=<CA file> unless the system trusts its CA); EVENTLINE_DATABASE_ALLOW_INSECURE=true
accepts a weaker mode, with a warning.

Exit codes: 0 success, 1 failure (e.g. a service unreachable), 2 usage error, 3 a projection
is behind its lag threshold (`status`), 4 the audit chain does not verify (`audit verify`), 65
invalid input (nothing was published or changed), 75 try again later (another operation on the
projection is running, or a rebuild has not caught up), 78 invalid configuration.";

#[derive(Debug, Parser)]
#[command(name = "eventline", version, about = "Kafka events projected effectively-once into PostgreSQL read models.", after_help = AFTER_HELP)]
pub struct Cli {
    /// TOML configuration file; the environment overrides what it sets.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Log line format on standard error.
    #[arg(long, global = true, value_name = "FORMAT", value_parser = ["human", "json"])]
    pub log_format: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway, the query API, the operator console (/console) and every projection's
    /// worker in one process, until Ctrl-C or SIGTERM.
    ///
    /// Each projection joins its own consumer group (eventline.<projection>), so more processes
    /// running `up` or `worker` share the partitions. The gateway and the query API share one
    /// listener on EVENTLINE_HTTP_ADDR, with /healthz, /readyz and /openapi.json.
    Up(AuthArgs),

    /// Run the HTTP gateway: POST /v1/events, /healthz, /readyz on EVENTLINE_HTTP_ADDR.
    ///
    /// Events (structured, batch or binary CloudEvents) are authenticated with an API key
    /// (`Authorization: Bearer <key>`, see `eventline keys`), validated through the schema
    /// registry, and answered 202 with their positions once the broker acknowledged them.
    /// Refusals are application/problem+json.
    Gateway(AuthArgs),

    /// Run the query API: the projections over HTTP on EVENTLINE_HTTP_ADDR.
    ///
    /// GET /v1/accounts[/{id}], /v1/projects[/{id}[/tasks]], /v1/activity/daily,
    /// /v1/features/daily and /v1/projections (positions, lag, dead letters); /openapi.json
    /// describes them. Lists are keyset-paginated (limit, cursor). Pass the gateway's
    /// consistency_token to read your own writes: the answer waits (wait_ms, default 5000, at
    /// most 30000) until the projection applied them, or is 425 not-yet-consistent. Every answer
    /// carries Eventline-Positions and Eventline-Checkpointed-At headers.
    ///
    /// Every request needs `Authorization: Bearer <token>`: an API key with read scopes (`eventline
    /// keys create --scope read:<projection>`) or, when EVENTLINE_JWT_ISSUER, _AUDIENCE and
    /// _JWKS_URL are set, a JWT of that issuer whose `scope` holds them. 401 without valid
    /// credentials, 403 insufficient_scope naming the scope a request lacks.
    Api(AuthArgs),

    /// Run the operator console alone: every projection's lag, stuck partitions, dead letters
    /// and rebuilds on a web page at http://EVENTLINE_HTTP_ADDR/console (`up` serves it too).
    ///
    /// Sign in with an API key or a JWT holding the `status` scope (`eventline keys create
    /// --name ops --scope status`); the browser keeps it in an HTTP-only cookie for /console only.
    /// Pages stay current over Server-Sent Events from one status snapshot taken every
    /// EVENTLINE_CONSOLE_REFRESH_MS (default 2000) while a page is open: however many pages are
    /// open, the database and the broker are asked once per period. Serve it over TLS (a reverse
    /// proxy) anywhere but this machine: the cookie carries the token.
    Console(AuthArgs),

    /// Manage the API keys of the gateway and the query API (stored as hashes in PostgreSQL).
    #[command(subcommand)]
    Keys(KeysCommand),

    /// Erase a data subject: destroy the key its personal data is sealed under, for good.
    ///
    /// Every sealed copy of its personal fields (Kafka records, projection tables of every
    /// generation, dead letters, exports) becomes unreadable: the query API answers null for them
    /// within 5 s, while balances, counts and statuses stay exact. Its blind-index entries go with
    /// the key. The subject is fenced: personal data about it is refused from then on (409
    /// subject-erased). Recorded in the audit.
    ///
    /// Then, with the fence in place, what still names it is scrubbed: its id, in the columns
    /// projections declare as holding a subject's id (subject_columns), is replaced by a
    /// placeholder of its own in every generation, and in every row written there later (a
    /// replay, a rebuild, a late event); dead letters and unpublished outbox rows about
    /// it have their personal data in clear removed (outbox rows are set aside). A part it cannot reach is named and the
    /// command exits 75: run it again to complete it. Running it again is always harmless.
    Erase(EraseArgs),

    /// Manage the data subjects' key store (`eventline_keys`).
    #[command(subcommand)]
    KeyStore(KeyStoreCommand),

    /// Publish the rows upstream services commit to their `eventline_outbox` table.
    ///
    /// Reads EVENTLINE_OUTBOX_DATABASE_URL (default: DATABASE_URL). Rows go out in insertion
    /// order per subject, at least once (event ids make repeats harmless), woken by
    /// LISTEN/NOTIFY and polling every second. Several relays may run at once.
    OutboxRelay(OutboxRelayArgs),

    /// Print the events on a topic, for looking at an integration.
    Tail(TailArgs),

    /// Run the workers of the named projections, until Ctrl-C or SIGTERM.
    ///
    /// A worker applies its topics to PostgreSQL in batches; each batch's rows and the next
    /// offsets commit in one transaction, so a restart (even after kill -9) neither loses nor
    /// repeats an event. On Ctrl-C or SIGTERM it writes the batch in hand and leaves the group.
    Worker(WorkerArgs),

    /// Create the database if it does not exist and apply the schema migrations.
    Migrate,

    /// Manage the Kafka topics of the event catalog.
    #[command(subcommand)]
    Topics(TopicsCommand),

    /// Validate CloudEvents and publish them.
    ///
    /// Input is NDJSON (one structured-mode event per line) or a batch (one JSON array of events,
    /// as in application/cloudevents-batch+json). Every event is checked against the schema
    /// registry first; if any is invalid, each bad one is reported (by line, or by index in a
    /// batch) and nothing is published (exit code 65). Valid events go to their domain's topic,
    /// keyed by `subject`, through an idempotent producer that waits for all replicas.
    Publish(PublishArgs),

    /// Work with the schema registry (the event contracts in schemas/).
    #[command(subcommand)]
    Schemas(SchemasCommand),

    /// Work with declarative projections (EVENTLINE_PROJECTIONS_DIR: a folder per projection with
    /// projection.toml, migrations/ and apply.sql).
    #[command(subcommand)]
    Projections(ProjectionsCommand),

    /// Show where each projection stands: per partition the stored and end offsets, lag in events
    /// and seconds, the worker that last moved it; dead letters, parked keys, generations.
    ///
    /// Exits 3 when a projection is further behind than --max-lag-seconds or --max-lag-events,
    /// so it can serve as a health check.
    Status(StatusArgs),

    /// Rebuild a projection beside the live one, then switch readers to it with no downtime.
    ///
    /// `start` builds a new generation of the projection's tables from its topics (in its own
    /// schema and consumer group) while the live one keeps serving and consuming; `diff` compares
    /// the two; `cutover` switches the HTTP API and the analytics views to the new one in one
    /// transaction; `rollback` switches back to the generation a cutover retired; `cleanup` drops
    /// the generations that are not live.
    #[command(subcommand)]
    Rebuild(RebuildCommand),

    /// Reset a projection in place and apply its topics again from a chosen start.
    ///
    /// The running workers pick the new positions up within about a second, without a restart.
    /// What is reset: the projection's rows (all of them), its parked keys and remembered event
    /// ids, and its dead letters at or after the start (they are read again). What is kept: dead
    /// letters before the start, and the audit. Readers see the projection empty and then
    /// filling up again: for no gap at all, use `rebuild`. Projections that fold each entity's
    /// whole history (account_balances, project_progress) only replay from earliest; the daily
    /// ones may start at a time or an offset and then hold exactly the events from there on.
    Replay(ReplayArgs),

    /// Inspect and resolve dead letters: list, show, retry, skip, purge; `log` shows the audit.
    ///
    /// A dead letter is an event a projection could not apply; its key stays parked (its later
    /// events wait behind it, in order) until an operator retries it after a fix or skips it.
    /// Every retry, skip and purge is recorded in the audit table `eventline_audit`.
    #[command(subcommand)]
    Dlq(DlqCommand),

    /// The audit of operator actions: a hash chain in `eventline_audit`, appended to only.
    ///
    /// Each entry (who, what, on which projection, when, from where, what came of it) holds the
    /// hash of the one before it, so an entry edited, deleted or slipped in afterwards breaks the
    /// chain. Operator actions on projections and API keys' creation and revocation are recorded.
    #[command(subcommand)]
    Audit(AuditCommand),

    /// Publish synthetic, valid traffic for the reference domains.
    ///
    /// Accounts: every account is opened, then deposits (some as data version 1) and withdrawals
    /// that never overdraw. Projects: projects, then tasks created, assigned, completed and
    /// reopened. Activity: page views and feature uses by random users.
    Loadgen(LoadgenArgs),
}

#[derive(Debug, Args)]
pub struct AuthArgs {
    /// Accept every request without credentials: anyone who reaches the port may publish and
    /// read anything. For development only; logged loudly.
    #[arg(long)]
    pub insecure_no_auth: bool,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check every entry against its hash and the one before it, and the last against the
    /// chain's head; print the head's hash (keep it elsewhere: a chain rewritten whole from the
    /// start verifies, but ends at another head). Exit code 4 when the chain is broken, naming
    /// the first entry that does not verify.
    Verify,
    /// Print the latest entries (oldest of them first), one JSON object per line.
    Log(AuditLogArgs),
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key; its secret is printed once and never stored.
    Create(KeysCreateArgs),
    /// List the keys (never their secrets).
    List,
    /// Revoke a key by its id; requests with it are refused within seconds.
    Revoke(KeysRevokeArgs),
}

#[derive(Debug, Args)]
pub struct KeysCreateArgs {
    /// A name saying who uses the key.
    #[arg(long)]
    pub name: String,

    /// Event types the key may publish: `*`, `accounts.*`, or a type name. Repeat for several.
    #[arg(long = "types", value_name = "PATTERN", required_unless_present = "scopes")]
    pub types: Vec<String>,

    /// What the key may read and do: `read:<projection>`, `read:*` (every projection),
    /// `status` (every projection's position and lag, and viewing the console), `personal`
    /// (personal data in clear, each read audited; without it personal columns read as null), or
    /// `operate` (the console's actions, each attempt audited). Repeat for several.
    #[arg(long = "scope", value_name = "SCOPE", id = "scopes")]
    pub scopes: Vec<String>,

    #[command(flatten)]
    pub actor: ActorArgs,
}

#[derive(Debug, Subcommand)]
pub enum KeyStoreCommand {
    /// Give the key store to a database role of its own, so the role projections run as cannot
    /// read a key, and the key store's role cannot read a projection.
    ///
    /// Run it once, after `eventline migrate`, as the role that migrates (it must be able to
    /// grant ROLE to itself for the hand-over: CREATEROLE, or a superuser). ROLE must exist and
    /// be neither a superuser nor this role. It becomes the owner of the `eventline_keys` schema,
    /// every other role loses access to it (a superuser never does: run projections as a role
    /// that is not one), and it may append to the audit and nothing more. Then set
    /// EVENTLINE_KEYS_DATABASE_URL (or its _FILE) to connect as ROLE wherever personal data is
    /// sealed, opened or erased. Recorded in the audit; running it again says ROLE has it already.
    Isolate(KeyStoreIsolateArgs),
}

#[derive(Debug, Args)]
pub struct KeyStoreIsolateArgs {
    /// The database role to give the key store to.
    #[arg(long, value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub role: String,

    #[command(flatten)]
    pub actor: ActorArgs,
}

#[derive(Debug, Args)]
pub struct EraseArgs {
    /// The data subject's id: the value of its types' `data_subject` field.
    #[arg(long, value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub subject: String,

    /// Why, as recorded in the audit (for example the request's ticket).
    #[arg(long, value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub reason: String,

    /// Who asked for the erasure (the data subject, a regulator), as recorded in the audit.
    #[arg(long, value_name = "WHO", value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub requested_by: String,

    #[command(flatten)]
    pub actor: ActorArgs,
}

#[derive(Debug, Args)]
pub struct KeysRevokeArgs {
    /// The key's id, as `eventline keys list` shows it.
    pub key_id: String,

    #[command(flatten)]
    pub actor: ActorArgs,
}

#[derive(Debug, Args)]
pub struct OutboxRelayArgs {
    /// Create the outbox table and its trigger first (idempotent), for databases without it.
    #[arg(long)]
    pub install: bool,

    /// Serve /healthz, /readyz (outbox database and broker reachable) and /metrics (the
    /// backlog: unpublished and failed rows, the oldest one's age) on this address, e.g.
    /// 127.0.0.1:9101.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<std::net::SocketAddr>,
}

#[derive(Debug, Args)]
pub struct TailArgs {
    /// The topic: a catalog topic (`accounts.events`, namespaced automatically) or any topic name.
    pub topic: String,

    /// Where to start: end, start, offset:<partition>:<offset>, or time:<RFC 3339 time>.
    #[arg(long, default_value = "end", value_parser = parse_start)]
    pub from: TailStart,

    /// How to print: `pretty` (position, key, type, data) or `ndjson` (the events as stored).
    #[arg(long, value_enum, default_value_t = TailFormat::Pretty)]
    pub format: TailFormat,

    /// Stop after this many events.
    #[arg(long)]
    pub limit: Option<u64>,

    /// Stop once the topic's end (as it was at start) is reached, instead of waiting for more.
    #[arg(long)]
    pub no_follow: bool,

    /// Stop each partition before its first record timestamped at or after this time
    /// (`time:<RFC 3339 time>`), and stop at the topic's end: with --format ndjson, an export of
    /// a time range. Implies --no-follow.
    #[arg(long, value_name = "time:TIME", value_parser = parse_until)]
    pub to: Option<i64>,
}

fn parse_until(value: &str) -> Result<i64, String> {
    let time = value.strip_prefix("time:").ok_or("expected time:<RFC 3339 time>")?;
    parse_time(time).map(|t| t.timestamp_millis())
}

fn parse_time(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|_| format!("`{text}` is not an RFC 3339 time like 2026-11-28T12:00:00Z"))
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Projections to show (all by default).
    #[arg(value_name = "PROJECTION")]
    pub projections: Vec<String>,

    /// Print JSON (the same document as GET /v1/projections) instead of a table.
    #[arg(long)]
    pub json: bool,

    /// Exit 3 when a projection's oldest unapplied event is older than this.
    #[arg(long, value_name = "SECONDS", default_value_t = 300.0)]
    pub max_lag_seconds: f64,

    /// Exit 3 when a projection has more unapplied events than this.
    #[arg(long, value_name = "EVENTS")]
    pub max_lag_events: Option<i64>,
}

/// Who is acting, for the audit.
#[derive(Debug, Args)]
pub struct ActorArgs {
    /// Who is acting, as recorded in the audit (default: $USER@host).
    #[arg(long, value_name = "NAME")]
    pub actor: Option<String>,
}

fn parse_replay_start(value: &str) -> Result<StartFrom, String> {
    let usage = "expected earliest, offset:<partition>:<offset>[,<partition>:<offset>...] or time:<RFC 3339 time>";
    if value == "earliest" {
        return Ok(StartFrom::Earliest);
    }
    if let Some(offsets) = value.strip_prefix("offset:") {
        return StartFrom::offsets(offsets);
    }
    if let Some(time) = value.strip_prefix("time:") {
        return parse_time(time).map(StartFrom::Time);
    }
    Err(usage.into())
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The projection to replay.
    #[arg(value_name = "PROJECTION")]
    pub projection: String,

    /// Where to start again: earliest, offset:<partition>:<offset>[,<partition>:<offset>...]
    /// (those partitions of each of its topics; the others from the earliest) or time:<RFC 3339
    /// time>.
    #[arg(long, value_parser = parse_replay_start)]
    pub from: StartFrom,

    #[command(flatten)]
    pub actor: ActorArgs,
}

#[derive(Debug, Subcommand)]
pub enum RebuildCommand {
    /// Build a new generation beside the live one (or resume the one being built) until it has
    /// read everything on its topics, showing progress; then --diff and --cutover if asked.
    Start(RebuildStartArgs),
    /// Row counts and per-table checksums of the live generation and the one being built.
    Diff(RebuildTarget),
    /// Switch readers to the generation being built, once it is within --max-lag events of the
    /// end: live writers pause, the new generation passes them, and one transaction switches.
    Cutover(RebuildCutoverArgs),
    /// Switch readers back to the generation the last cutover retired.
    Rollback(RebuildTarget),
    /// Drop every generation that is not live (retired ones, and an abandoned rebuild).
    Cleanup(RebuildTarget),
}

#[derive(Debug, Args)]
pub struct RebuildTarget {
    #[arg(value_name = "PROJECTION")]
    pub projection: String,

    #[command(flatten)]
    pub actor: ActorArgs,
}

#[derive(Debug, Args)]
pub struct RebuildStartArgs {
    #[command(flatten)]
    pub target: RebuildTarget,

    /// Where the new generation starts: earliest, or time:<RFC 3339 time> for projections that
    /// may start mid-stream (the daily ones).
    #[arg(long, default_value = "earliest", value_parser = parse_replay_start)]
    pub from: StartFrom,

    /// Once caught up, print the diff against the live generation.
    #[arg(long)]
    pub diff: bool,

    /// Once caught up, switch readers to the new generation.
    #[arg(long)]
    pub cutover: bool,

    /// How to show progress: a bar on a terminal, JSON lines otherwise.
    #[arg(long, value_enum, default_value_t = ProgressStyle::Auto)]
    pub progress: ProgressStyle,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressStyle {
    Auto,
    Bar,
    Json,
}

#[derive(Debug, Args)]
pub struct RebuildCutoverArgs {
    #[command(flatten)]
    pub target: RebuildTarget,

    /// Refuse when the new generation is further behind than this many events.
    #[arg(long, value_name = "EVENTS", default_value_t = 10_000)]
    pub max_lag: i64,
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List dead letters, oldest first.
    List(DlqListArgs),
    /// Show one dead letter with its record (payload and headers).
    Show(DlqShowArgs),
    /// Apply a key's dead letters again, in order, after the cause was fixed; the key is
    /// unparked when they all apply. Stops at the first that still fails, with its reason.
    Retry(DlqRetryArgs),
    /// Drop one dead letter with a recorded reason, then apply the key's others behind it.
    Skip(DlqSkipArgs),
    /// Delete matching dead letters for good (keys left without any are unparked).
    Purge(DlqPurgeArgs),
    /// Show the audit of operator actions (as `audit log` does).
    Log(AuditLogArgs),
}

#[derive(Debug, Args)]
pub struct DlqFilterArgs {
    /// Only this record key.
    #[arg(long)]
    pub key: Option<String>,

    /// Only this kind: undecodable, invalid, rejected or parked.
    #[arg(long, value_parser = ["undecodable", "invalid", "rejected", "parked"])]
    pub kind: Option<String>,

    /// Only reasons containing this text (case-insensitive).
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
}

#[derive(Debug, Args)]
pub struct DlqListArgs {
    /// Only this projection's.
    #[arg(long)]
    pub projection: Option<String>,

    #[command(flatten)]
    pub filter: DlqFilterArgs,

    /// At most this many.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(i64).range(1..=100_000))]
    pub limit: i64,

    /// Print JSON lines instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DlqShowArgs {
    /// The dead letter's id, as `dlq list` shows it.
    pub id: i64,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["key", "id"])))]
pub struct DlqRetryArgs {
    #[arg(value_name = "PROJECTION")]
    pub projection: String,

    /// Retry every dead letter of this key.
    #[arg(long)]
    pub key: Option<String>,

    /// Retry this dead letter (and the rest of its key's, which apply in order).
    #[arg(long)]
    pub id: Option<i64>,

    #[command(flatten)]
    pub actor: ActorArgs,
}

#[derive(Debug, Args)]
pub struct DlqSkipArgs {
    #[arg(value_name = "PROJECTION")]
    pub projection: String,

    /// The dead letter to drop.
    #[arg(long)]
    pub id: i64,

    /// Why it is dropped, for the audit.
    #[arg(long, required = true)]
    pub reason: String,

    #[command(flatten)]
    pub actor: ActorArgs,
}

#[derive(Debug, Args)]
pub struct DlqPurgeArgs {
    #[arg(value_name = "PROJECTION")]
    pub projection: String,

    #[command(flatten)]
    pub filter: DlqFilterArgs,

    /// Why they are dropped, for the audit.
    #[arg(long = "because", value_name = "REASON", required = true)]
    pub because: String,

    /// Confirm: purged events are gone for good.
    #[arg(long)]
    pub yes: bool,

    #[command(flatten)]
    pub actor: ActorArgs,
}

#[derive(Debug, Args)]
pub struct AuditLogArgs {
    /// Only this projection's actions.
    #[arg(long)]
    pub projection: Option<String>,

    /// The latest this many.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..=100_000))]
    pub limit: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TailStart {
    End,
    Start,
    Offset { partition: i32, offset: i64 },
    Time(i64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TailFormat {
    Pretty,
    Ndjson,
}

fn parse_start(value: &str) -> Result<TailStart, String> {
    let usage = "expected end, start, offset:<partition>:<offset> or time:<RFC 3339 time>";
    match value {
        "end" => Ok(TailStart::End),
        "start" | "earliest" | "beginning" => Ok(TailStart::Start),
        _ => {
            if let Some(rest) = value.strip_prefix("offset:") {
                let (partition, offset) = rest.split_once(':').ok_or(usage)?;
                let partition = partition.parse().map_err(|_| format!("`{partition}` is not a partition number"))?;
                let offset = offset.parse().map_err(|_| format!("`{offset}` is not an offset"))?;
                Ok(TailStart::Offset { partition, offset })
            } else if let Some(time) = value.strip_prefix("time:") {
                let time = chrono::DateTime::parse_from_rfc3339(time)
                    .map_err(|_| format!("`{time}` is not an RFC 3339 time like 2026-11-28T12:00:00Z"))?;
                Ok(TailStart::Time(time.timestamp_millis()))
            } else {
                Err(usage.to_string())
            }
        }
    }
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Projections to run.
    #[arg(required = true, value_name = "PROJECTION")]
    pub projections: Vec<String>,

    /// Serve /healthz, /readyz (database and broker reachable, every worker assigned its
    /// partitions) and /metrics on this address, e.g. 127.0.0.1:9100.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<std::net::SocketAddr>,
}

#[derive(Debug, Subcommand)]
pub enum TopicsCommand {
    /// Create the catalog's topics; a topic that already exists is left as it is.
    Create(TopicsCreateArgs),
}

#[derive(Debug, Args)]
pub struct TopicsCreateArgs {
    /// Partitions of each new topic.
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(i32).range(1..=10_000))]
    pub partitions: i32,

    /// Replicas of each partition.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..=100))]
    pub replication_factor: i32,
}

#[derive(Debug, Subcommand)]
pub enum SchemasCommand {
    /// Check the registry before deploying it.
    ///
    /// Fails (exit code 1), naming each file and the reason, when a schema is not valid JSON
    /// Schema, a catalog entry has no schema file, a file is not in the catalog, an example does
    /// not satisfy its schema, an upcaster's output does not satisfy the next version, a new
    /// version without an upcaster is not backward compatible, or a projection does not declare
    /// a type version on the topics it reads.
    Check(SchemasCheckArgs),
}

#[derive(Debug, Subcommand)]
pub enum ProjectionsCommand {
    /// Check declarative projections before deploying them.
    ///
    /// Loads every definition (manifest, migration file names, apply.sql) and reviews it against
    /// the schema registry (handled types and versions, undeclared versions on its topics); then,
    /// in a scratch database made on DATABASE_URL's server and dropped afterwards, applies its
    /// migrations, checks that every declared table exists with a primary key, and installs its
    /// apply function (which must compile against those tables). Fails (exit code 1), naming
    /// each file and the reason.
    Check(ProjectionsCheckArgs),
}

#[derive(Debug, Args)]
pub struct ProjectionsCheckArgs {
    /// Folder of definitions to check; by default EVENTLINE_PROJECTIONS_DIR.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct SchemasCheckArgs {
    /// Registry folder to check; by default the registry built into this eventline.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PublishArgs {
    /// File to read (NDJSON or a JSON array); `-` or nothing reads standard input.
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,

    /// Print each event's position (id, topic, partition, offset) as a JSON line on stdout.
    #[arg(long)]
    pub positions: bool,
}

#[derive(Debug, Args)]
pub struct LoadgenArgs {
    /// Which domain's events to generate, or `all`. With the built-in registry: accounts (the
    /// default), projects or activity, each following its domain's rules. With a registry of
    /// your own (EVENTLINE_SCHEMAS_DIR): any of its domains (all by default), each event one of
    /// its schemas' examples with a generated key.
    #[arg(long, value_name = "DOMAIN")]
    pub domain: Option<String>,

    /// Generate from your own sample events instead: an NDJSON file of CloudEvents (as
    /// `eventline publish` takes), each generated event the data of one of them with a fresh id
    /// and a generated key.
    #[arg(long, value_name = "FILE", conflicts_with = "domain")]
    pub from: Option<PathBuf>,

    /// Entities per domain: accounts, projects or users.
    #[arg(long, alias = "accounts", default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub keys: u64,

    /// Events in all, the openings included.
    #[arg(long, default_value_t = 1_000)]
    pub events: u64,

    /// Events per second; 0 publishes as fast as the broker takes them.
    #[arg(long, default_value_t = 0)]
    pub rate: u64,

    /// Seed of the random choices, for repeatable traffic.
    #[arg(long)]
    pub seed: Option<u64>,

    /// Prefix of account and event ids (random by default, so runs do not collide).
    #[arg(long)]
    pub prefix: Option<String>,

    /// Print the events as NDJSON on stdout instead of publishing them.
    #[arg(long)]
    pub ndjson: bool,
}
