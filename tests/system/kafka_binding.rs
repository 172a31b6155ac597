//! The CloudEvents Kafka protocol binding as upstream systems use it: records written straight to
//! the topic by a CloudEvents SDK, in binary content mode (attributes in `ce_` headers, the data
//! alone in the value) or in structured mode with a `content-type` that has parameters. The
//! worker applies them like eventline's own records and dead-letters the ones it cannot read,
//! with the exact reason; `tail` shows them and exports them in structured form.

use std::time::Duration;

use eventline_kafka::producer::{EventProducer, OutgoingRecord};
use serde_json::Value;

use crate::events::opened;
use crate::helpers::{stderr, stdout, wait_until, TestEnv};

/// Writes a record around eventline's publisher, as a foreign producer would.
pub(crate) async fn produce(env: &TestEnv, key: &str, value: &[u8], headers: &[(&str, &str)]) {
    produce_to(env, "accounts.events", key, value, headers).await
}

/// Produces one record to the test's `base` topic as it is, past the gateway.
pub(crate) async fn produce_to(env: &TestEnv, base: &str, key: &str, value: &[u8], headers: &[(&str, &str)]) {
    let producer = EventProducer::connect(&env.kafka, Duration::from_secs(10), Duration::from_secs(10)).await.unwrap();
    let headers: Vec<(&str, &[u8])> = headers.iter().map(|(k, v)| (*k, v.as_bytes())).collect();
    let topic = env.topic(base);
    producer.send(OutgoingRecord { topic: &topic, key, payload: value, headers: &headers }).await.unwrap();
}

fn binary_headers<'a>(id: &'a str, event_type: &'a str, account: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("ce_specversion", "1.0"),
        ("ce_id", id),
        ("ce_source", "/sdk"),
        ("ce_type", event_type),
        ("ce_subject", account),
        ("content-type", "application/json; charset=utf-8"),
    ]
}

/// Account `acc-b` opened by a binary-mode record: the data alone in the value.
async fn open_in_binary_mode(env: &TestEnv) {
    let data = br#"{"account_id":"acc-b","owner":"Bo","currency":"EUR"}"#;
    produce(env, "acc-b", data, &binary_headers("b-open", "accounts.AccountOpened", "acc-b")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn binary_and_structured_records_are_applied_and_unreadable_ones_dead_lettered() {
    let env = TestEnv::new().await;
    let worker = env.spawn("worker", &["worker", "account_balances"], &[]);

    open_in_binary_mode(&env).await;
    let mut deposit = binary_headers("b-dep", "accounts.FundsDeposited", "acc-b");
    deposit.push(("ce_dataversion", "2"));
    produce(&env, "acc-b", br#"{"account_id":"acc-b","amount_minor":700,"currency":"EUR","channel":"card"}"#, &deposit)
        .await;
    // Structured mode with a charset parameter and upper-case letters in the media type.
    let structured = opened("s-open", "acc-s").to_string();
    produce(&env, "acc-s", structured.as_bytes(), &[("content-type", "Application/CloudEvents+JSON; charset=UTF-8")])
        .await;
    // Unreadable: another event format, and binary data that is not JSON; each parks its key.
    produce(&env, "acc-x", b"\x00\x01avro", &[("content-type", "application/cloudevents+avro")]).await;
    produce(
        &env,
        "acc-y",
        b"<xml/>",
        &binary_headers("y-open", "accounts.AccountOpened", "acc-y")
            .into_iter()
            .map(|(k, v)| if k == "content-type" { (k, "application/xml") } else { (k, v) })
            .collect::<Vec<_>>(),
    )
    .await;
    produce(&env, "acc-z", b"{oops", &binary_headers("z-open", "accounts.AccountOpened", "acc-z")).await;

    wait_until("all six records to be passed", || async { env.applied_through("account_balances").await == 6 }).await;
    let rows = env.balances().await;
    assert_eq!(rows, [("acc-b".to_string(), 700, 2), ("acc-s".to_string(), 0, 1)], "log: {}", worker.log());
    let mut dead: Vec<(String, String, String)> = env
        .store
        .dead_letters("account_balances")
        .await
        .unwrap()
        .into_iter()
        .map(|d| (d.record_key.unwrap_or_default(), d.reason_kind, d.reason))
        .collect();
    dead.sort();
    assert_eq!(
        dead,
        [
            (
                "acc-x".to_string(),
                "undecodable".to_string(),
                "event format `application/cloudevents+avro` is not supported (expected application/cloudevents+json)".to_string()
            ),
            (
                "acc-y".to_string(),
                "invalid".to_string(),
                "datacontenttype `application/xml` is not supported (expected JSON: application/json or a */*+json type) (at /datacontenttype)".to_string()
            ),
            (
                "acc-z".to_string(),
                "undecodable".to_string(),
                "data is not valid JSON: key must be a string at line 1 column 2".to_string()
            ),
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tail_shows_binary_records_and_exports_them_as_structured_events() {
    let env = TestEnv::new().await;
    open_in_binary_mode(&env).await;

    let pretty = env.run(&["tail", "accounts.events", "--from", "start", "--no-follow"]);
    assert!(pretty.status.success(), "{}", stderr(&pretty));
    assert!(
        stdout(&pretty).contains("accounts.AccountOpened v1 id=b-open {\"account_id\":\"acc-b\""),
        "{}",
        stdout(&pretty)
    );

    let export = env.run(&["tail", "accounts.events", "--from", "start", "--no-follow", "--format", "ndjson"]);
    let event: Value = serde_json::from_str(stdout(&export).trim()).unwrap();
    assert_eq!(event["specversion"], "1.0");
    assert_eq!(event["id"], "b-open");
    assert_eq!(event["datacontenttype"], "application/json; charset=utf-8");
    assert_eq!(event["data"]["owner"], "Bo");
    // The export is valid input for `eventline publish`.
    let republished = env.run_with_stdin(&["publish"], stdout(&export).as_bytes());
    assert!(republished.status.success(), "{}", stderr(&republished));
}
