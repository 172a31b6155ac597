//! Secrets never print: with a database password and a librdkafka secret that are canaries, every
//! command (on working services, with the database down, with a wrong password, with the broker
//! down) is run at the most verbose log level, and the whole system runs with metrics and spans
//! exported; no canary appears in standard output, standard error, the logs, the exported spans
//! or `/metrics`.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::routing::post;

use crate::events::{deposit, opened};
use crate::helpers::{output_with_stdin, stderr, stdout, wait_until, Services, TestEnv};
use crate::private_services::{free_port, PrivatePostgres};

/// An OTLP/HTTP endpoint keeping the raw bodies it is sent (protobuf keeps strings as they are).
pub(crate) async fn raw_collector() -> (String, Arc<Mutex<Vec<u8>>>) {
    let received: Arc<Mutex<Vec<u8>>> = Arc::default();
    let kept = received.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        post(move |body: Bytes| {
            let kept = kept.clone();
            async move {
                kept.lock().unwrap().extend_from_slice(&body);
                ([("content-type", "application/x-protobuf")], Vec::<u8>::new())
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (endpoint, received)
}

fn assert_no_canary(canaries: &[&str], what: &str, text: &str) {
    for canary in canaries {
        assert!(!text.contains(canary), "{what} printed a secret ({canary}):\n{text}");
    }
}

/// Every one-shot command, as an operator would run them.
const COMMANDS: &[&[&str]] = &[
    &["migrate"],
    &["topics", "create"],
    &["status"],
    &["status", "--json"],
    &["keys", "list"],
    &["keys", "create", "--name", "canary-check", "--types", "*"],
    &["dlq", "list"],
    &["dlq", "log"],
    &["audit", "verify"],
    &["audit", "log"],
    &["replay", "daily_activity", "--from", "earliest"],
    &["rebuild", "start", "daily_activity", "--progress", "json"],
    &["rebuild", "diff", "daily_activity"],
    &["tail", "accounts.events", "--from", "start", "--to", "time:2000-01-01T00:00:00Z"],
    &["publish", "-"],
];

#[tokio::test(flavor = "multi_thread")]
async fn no_command_prints_a_secret_whatever_fails() {
    let postgres = PrivatePostgres::start_with_passwords();
    let id = uuid::Uuid::new_v4().simple().to_string();
    let (db_canary, kafka_canary) = (format!("dbcanary{id}"), format!("kafkacanary{id}"));
    // The key-encryption key: 32 bytes whose base64 is a canary too.
    let kek_canary = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(&id.as_bytes()[..32])
    };
    postgres.sql(&format!("CREATE ROLE app LOGIN SUPERUSER PASSWORD '{db_canary}'"));
    let server = format!("postgres://app:{db_canary}@127.0.0.1:{}/postgres", postgres.port);
    let (endpoint, spans) = raw_collector().await;
    let env = TestEnv::with_app(
        Services::with_database_server(&server),
        &[
            ("EVENTLINE_RDKAFKA_SASL_PASSWORD", &kafka_canary),
            ("EVENTLINE_OTLP_ENDPOINT", &endpoint),
            ("EVENTLINE_KEY_ENCRYPTION_KEY", &kek_canary),
        ],
    )
    .await;
    let canaries = [db_canary.as_str(), kafka_canary.as_str(), kek_canary.as_str()];

    // The whole system: publish through the gateway, read through the API, scrape the metrics.
    let up = env.spawn_http("up", &["up"], &[("RUST_LOG", "trace")]).await;
    let (_, token) = env.create_key("canary", &["*"]);
    let events =
        serde_json::to_vec(&[opened("canary-open", "acct-canary"), deposit("canary-dep", "acct-canary", 5)]).unwrap();
    let published = up
        .post(
            &[("authorization", &format!("Bearer {token}")), ("content-type", "application/cloudevents-batch+json")],
            events,
        )
        .await;
    assert!(published.status().is_success(), "{:?}", published.text().await);
    wait_until("both events to be applied", || async { env.applied_through("account_balances").await == 2 }).await;
    for path in ["/metrics", "/v1/projections", "/v1/accounts/acct-canary", "/readyz", "/openapi.json"] {
        let answer = up.get(path).await.text().await.unwrap();
        assert_no_canary(&canaries, path, &answer);
    }
    up.process.terminate();
    wait_until("spans to be exported", || async { !spans.lock().unwrap().is_empty() }).await;
    assert_no_canary(&canaries, "the exported spans", &String::from_utf8_lossy(&spans.lock().unwrap()));
    let log = std::fs::read_to_string(env.file("up.log")).unwrap();
    assert!(log.contains("TRACE"), "the log is at trace level");
    assert_no_canary(&canaries, "`up`'s log", &log);

    // Every command on working services, then with each failure.
    let wrong_password =
        format!("postgres://app:{db_canary}x@127.0.0.1:{}/{}", postgres.port, env.database_url.database_name());
    let database_down = format!("postgres://app:{db_canary}@127.0.0.1:{}/eventline", free_port());
    let broker_down = format!("127.0.0.1:{}", free_port());
    let conditions: [(&str, Vec<(&str, &str)>); 4] = [
        ("working services", vec![]),
        ("a wrong password", vec![("DATABASE_URL", &wrong_password)]),
        ("the database down", vec![("DATABASE_URL", &database_down)]),
        ("the broker down", vec![("EVENTLINE_KAFKA_BROKERS", &broker_down)]),
    ];
    let event = serde_json::to_string(&deposit("canary-dep-2", "acct-canary", 7)).unwrap();
    for (condition, overrides) in &conditions {
        let mut failed = Vec::new();
        for args in COMMANDS {
            let mut command = env.command(args);
            command.env("RUST_LOG", "trace").env("EVENTLINE_CONNECT_TIMEOUT_SECS", "2").envs(overrides.iter().copied());
            let output = output_with_stdin(command, format!("{event}\n").as_bytes());
            let what = format!("{args:?} with {condition}");
            if !output.status.success() {
                failed.push(format!("{what}: {}", stderr(&output).lines().last().unwrap_or_default()));
            }
            assert_no_canary(&canaries, &what, &stdout(&output));
            assert_no_canary(&canaries, &what, &stderr(&output));
        }
        // Each failure is really there: the commands that need the failed service fail.
        if overrides.is_empty() {
            assert!(failed.is_empty(), "on working services every command succeeds: {failed:#?}");
        } else {
            assert!(failed.len() >= 5, "with {condition}, only these commands failed: {failed:#?}");
        }
    }
}
