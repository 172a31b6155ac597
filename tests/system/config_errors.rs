//! Bad or unreachable configuration: a clear message naming the problem, a non-zero exit, and
//! never a hang. "Silent" services accept connections and never answer, the worst case.

use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::{stderr, Services, TestEnv, BIN};

/// A process that has not exited within this long is hung, and the test fails.
const HANG_LIMIT: Duration = Duration::from_secs(60);

fn eventline(env: &[(&str, &str)], args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    for (var, _) in std::env::vars() {
        if var.starts_with("EVENTLINE_") || var == "DATABASE_URL" {
            command.env_remove(var);
        }
    }
    command.args(args).envs(env.iter().copied()).env("EVENTLINE_CONNECT_TIMEOUT_SECS", "3");
    command
}

fn run_bounded(mut command: Command) -> Output {
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("eventline starts");
    let started = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if started.elapsed() > HANG_LIMIT {
            child.kill().ok();
            panic!("eventline hung for more than {HANG_LIMIT:?}: {:?}", command);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

/// A port on which nothing listens.
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A port that accepts connections and never answers; it lives as long as the test process.
fn silent_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    port
}

fn last_line(output: &Output) -> String {
    stderr(output).lines().last().unwrap_or_default().to_string()
}

#[test]
fn an_unreachable_broker_is_reported_in_bounded_time() {
    for port in [closed_port(), silent_port()] {
        let brokers = format!("127.0.0.1:{port}");
        let output = run_bounded(eventline(&[("EVENTLINE_KAFKA_BROKERS", &brokers)], &["topics", "create"]));
        assert_eq!(output.status.code(), Some(1));
        let expected = format!("error: cannot reach the Kafka brokers at {brokers} within 3s: ");
        assert!(last_line(&output).starts_with(&expected), "got: {}", stderr(&output));
    }
}

#[test]
fn publish_reports_an_unreachable_broker_after_validating() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("one.ndjson");
    std::fs::write(
        &file,
        r#"{"specversion":"1.0","id":"1","source":"/t","type":"accounts.AccountClosed","subject":"a","data":{"account_id":"a"}}"#,
    )
    .unwrap();
    let brokers = format!("127.0.0.1:{}", silent_port());
    let output = run_bounded(eventline(&[("EVENTLINE_KAFKA_BROKERS", &brokers)], &["publish", file.to_str().unwrap()]));
    assert_eq!(output.status.code(), Some(1));
    assert!(
        last_line(&output).starts_with(&format!("error: cannot reach the Kafka brokers at {brokers} within 3s: ")),
        "got: {}",
        stderr(&output)
    );
}

#[test]
fn an_unreachable_database_is_reported_in_bounded_time_without_its_password() {
    for (port, reason) in [(closed_port(), None), (silent_port(), Some("timed out"))] {
        let url = format!("postgres://app:s3cret-pw@127.0.0.1:{port}/eventline");
        for args in [&["migrate"][..], &["worker", "account_balances"][..]] {
            let output = run_bounded(eventline(&[("DATABASE_URL", &url)], args));
            assert_eq!(output.status.code(), Some(1), "{args:?}: {}", stderr(&output));
            let line = last_line(&output);
            let expected =
                format!("error: cannot reach PostgreSQL at postgres://app:***@127.0.0.1:{port}/eventline within 3s: ");
            assert!(line.starts_with(&expected), "{args:?}: {line}");
            if let Some(reason) = reason {
                assert!(line.ends_with(reason), "{args:?}: {line}");
            }
            assert!(!stderr(&output).contains("s3cret-pw"), "the password leaked: {}", stderr(&output));
        }
    }
}

#[test]
fn invalid_settings_stop_start_up_naming_the_setting() {
    let cases = [
        (("EVENTLINE_KAFKA_BROKERS", "nonsense"), "error: invalid EVENTLINE_KAFKA_BROKERS: `nonsense` is not host:port\n"),
        (("DATABASE_URL", "mysql://x/y"), "error: invalid DATABASE_URL: scheme `mysql` is not postgres:// or postgresql://\n"),
        (("EVENTLINE_HTTP_ADDR", "everywhere"), "error: invalid EVENTLINE_HTTP_ADDR: `everywhere` is not an address like 127.0.0.1:8080\n"),
        (("EVENTLINE_BATCH_MAX_EVENTS", "lots"), "error: invalid EVENTLINE_BATCH_MAX_EVENTS: `lots` is not a whole number from 1 to 100000\n"),
        (("EVENTLINE_RDKAFKA_ENABLE_IDEMPOTENCE", "false"), "error: invalid EVENTLINE_RDKAFKA_ENABLE_IDEMPOTENCE: `enable.idempotence` is set by eventline itself and cannot be overridden\n"),
        (("EVENTLINE_OTLP_ENDPOINT", "collector:4318"), "error: invalid EVENTLINE_OTLP_ENDPOINT: `collector:4318` is not an http:// or https:// URL with a host\n"),
        (("EVENTLINE_TRACE_SAMPLE_RATIO", "2"), "error: invalid EVENTLINE_TRACE_SAMPLE_RATIO: `2` is not a ratio from 0 to 1\n"),
        (("EVENTLINE_METRICS", "no"), "error: invalid EVENTLINE_METRICS: `no` is not `true` or `false`\n"),
        (("EVENTLINE_GROUP_PROTOCOL", "eager"), "error: invalid EVENTLINE_GROUP_PROTOCOL: `eager` is not a group protocol (expected `consumer` or `classic`)\n"),
        (("EVENTLINE_NAMESPAC", "x"), "error: unknown setting EVENTLINE_NAMESPAC: eventline reads no such environment variable (did you mean EVENTLINE_NAMESPACE?)\n"),
    ];
    for ((var, value), expected) in cases {
        let output = run_bounded(eventline(&[(var, value)], &["migrate"]));
        assert_eq!(output.status.code(), Some(78), "{var}");
        assert_eq!(stderr(&output), expected);
    }
    let output = run_bounded(eventline(&[], &["--config", "/nonexistent/eventline.toml", "migrate"]));
    assert_eq!(output.status.code(), Some(78));
    assert_eq!(
        stderr(&output),
        "error: cannot read configuration file /nonexistent/eventline.toml: No such file or directory (os error 2)\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_needs_its_topics_and_a_migrated_database() {
    let env = TestEnv::new().await;
    let services = Services::from_env();
    let brokers = services.kafka.bootstrap_servers();
    let database = env.database_url.expose().to_string();

    let output = run_bounded(eventline(
        &[
            ("DATABASE_URL", &database),
            ("EVENTLINE_KAFKA_BROKERS", &brokers),
            ("EVENTLINE_NAMESPACE", "no-such-topics"),
        ],
        &["worker", "account_balances"],
    ));
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        last_line(&output),
        "error: worker account_balances failed: topic `no-such-topics.accounts.events` does not exist (create it with `eventline topics create`)"
    );

    let missing = services.server_url.with_database(&format!("eventline_missing_{}", env.id));
    let output = run_bounded(eventline(&[("DATABASE_URL", missing.expose())], &["worker", "account_balances"]));
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        last_line(&output),
        format!("error: database `eventline_missing_{}` does not exist (create it with `eventline migrate`)", env.id)
    );

    // The maintenance database exists but holds no eventline schema.
    let migrations = crate::helpers::migration_count();
    let unmigrated = services.server_url.with_database("postgres");
    let output = run_bounded(eventline(&[("DATABASE_URL", unmigrated.expose())], &["worker", "account_balances"]));
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        last_line(&output),
        format!(
            "error: the database schema is {migrations} migration(s) behind this eventline (run `eventline migrate`)"
        )
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_database_url_and_its_password_can_come_from_a_file() {
    let env = TestEnv::new().await;
    let (key_id, _) = env.create_key("made-before", &["accounts.AccountOpened"]);
    let role = format!("eventline_secret_{}", env.id);
    let password = format!("file-secret-{}", env.id);
    env.psql(&format!(
        "CREATE ROLE {role} LOGIN PASSWORD '{password}'; GRANT USAGE ON SCHEMA public TO {role}; \
         GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}"
    ));
    let url = format!("postgres://{role}:{password}@127.0.0.1:5432/{}", env.database_url.database_name());
    let file = env.file("database-url");
    std::fs::write(&file, format!("{url}\n")).unwrap();
    let file = file.display().to_string();

    let mut command = env.command(&["keys", "list"]);
    command.env_remove("DATABASE_URL").env("DATABASE_URL_FILE", &file);
    let read = run_bounded(command);
    let dropped = env.psql(&format!("DROP OWNED BY {role}; DROP ROLE {role}; SELECT 'dropped'"));
    assert_eq!(dropped, "dropped");
    assert_eq!(read.status.code(), Some(0), "{}", stderr(&read));
    let listed = String::from_utf8_lossy(&read.stdout).to_string();
    assert!(listed.contains(&key_id) && listed.contains("made-before"), "{listed}");
    assert!(!stderr(&read).contains(&password), "the password leaked: {}", stderr(&read));

    // Both forms at once is a mistake, named without the secret.
    let mut command = env.command(&["keys", "list"]);
    command.env("DATABASE_URL_FILE", &file);
    let both = run_bounded(command);
    assert_eq!(both.status.code(), Some(78));
    assert_eq!(stderr(&both), "error: invalid DATABASE_URL_FILE: DATABASE_URL is set too: set one of them\n");
}
