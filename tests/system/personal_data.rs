//! No personal data where it does not belong (issue 16): a data subject with events in two
//! domains, through the gateway, `eventline publish` and the outbox, a dead letter and a rebuilt
//! generation, every personal value a unique canary, the whole system at trace level exporting
//! its spans. Before erasure the canaries (as text, base64 and hex) are in no Kafka record's raw
//! bytes, no row of any schema, no log, span, `tail` export or `/metrics`, while an authorized API
//! read returns them; after `eventline erase` not even that, also once the projection is rebuilt
//! from the log, its other values exact.

use base64::Engine;
use eventline_kafka::reader::{StartAt, TopicReader};
use serde_json::{json, Value};

use crate::helpers::{stderr, stdout, wait_until, HttpProcess, Services, TestEnv};
use crate::secrets::raw_collector;

const KEK: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const SUBJECT: &str = "person-7";

/// Each canary as text and in the encodings a careless copy would hold it in.
fn forms(canaries: &[String]) -> Vec<String> {
    let mut forms = Vec::new();
    for canary in canaries {
        let bytes = canary.as_bytes();
        forms.push(canary.clone());
        forms.push(base64::engine::general_purpose::STANDARD.encode(bytes));
        forms.push(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes));
        forms.push(bytes.iter().map(|b| format!("{b:02x}")).collect());
    }
    forms
}

fn assert_nowhere(forms: &[String], what: &str, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    for form in forms {
        assert!(!text.contains(form.as_str()), "{what} holds personal data ({form})");
    }
}

/// Every record of every topic of the test, key, headers and value, from the earliest offset.
pub(crate) async fn raw_records(env: &TestEnv) -> Vec<u8> {
    let mut bytes = Vec::new();
    for base in ["accounts.events", "activity.events", "projects.events"] {
        let topic = env.topic(base);
        let mut reader = TopicReader::open(&env.kafka, &topic, StartAt::Beginning, std::time::Duration::from_secs(10))
            .await
            .unwrap();
        while let Some(record) = reader.next(true).await.unwrap() {
            bytes.extend(record.key.unwrap_or_default());
            for (name, value) in record.headers {
                bytes.extend(name.into_bytes());
                bytes.extend(value);
            }
            bytes.extend(record.payload.unwrap_or_default());
            bytes.push(b'\n');
        }
    }
    bytes
}

fn pg_dump(env: &TestEnv) -> Vec<u8> {
    let dump = std::process::Command::new("pg_dump").args(["--data-only", env.database_url.expose()]).output().unwrap();
    assert!(dump.status.success(), "{}", stderr(&dump));
    dump.stdout
}

fn tail_exports(env: &TestEnv) -> Vec<u8> {
    let mut bytes = Vec::new();
    for topic in ["accounts.events", "activity.events"] {
        for format in ["ndjson", "pretty"] {
            let tail = env.run(&["tail", topic, "--from", "start", "--no-follow", "--format", format]);
            assert!(tail.status.success(), "{}", stderr(&tail));
            bytes.extend(tail.stdout);
        }
    }
    bytes
}

async fn api_answers(up: &HttpProcess, personal: &str) -> Vec<u8> {
    let mut bytes = Vec::new();
    for path in [
        format!("/v1/accounts/{SUBJECT}"),
        "/v1/tables/account_balances".to_string(),
        format!("/v1/tables/account_balances/{SUBJECT}"),
        "/v1/projections".to_string(),
        "/metrics".to_string(),
    ] {
        bytes.extend(up.get_as(&path, Some(personal)).await.bytes().await.unwrap());
    }
    bytes
}

fn opened(id: &str, account: &str, owner: &str) -> Value {
    json!({"specversion": "1.0", "id": id, "source": "/bank", "type": "accounts.AccountOpened",
           "subject": account, "data": {"account_id": account, "owner": owner, "currency": "EUR"}})
}

fn viewed(id: &str, user: &str, session: &str) -> Value {
    json!({"specversion": "1.0", "id": id, "source": "/web", "type": "activity.PageViewed", "subject": user,
           "time": "2026-12-04T10:00:00Z", "data": {"user_id": user, "path": "/pricing", "session_id": session}})
}

#[tokio::test(flavor = "multi_thread")]
async fn a_subjects_personal_data_is_stored_nowhere_readable_and_after_erasure_is_read_nowhere() {
    let (endpoint, spans) = raw_collector().await;
    let env = TestEnv::with_app(
        Services::from_env(),
        &[
            ("EVENTLINE_KEY_ENCRYPTION_KEY", KEK),
            ("EVENTLINE_OTLP_ENDPOINT", &endpoint),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    )
    .await;
    let trace = [("RUST_LOG", "trace")];
    let up = env.spawn_http("up", &["up"], &trace).await;
    let outbox_db = env.database_url.expose().to_string();
    let relay =
        env.spawn("relay", &["outbox-relay", "--install"], &[("EVENTLINE_OUTBOX_DATABASE_URL", &outbox_db), trace[0]]);
    wait_until("the relay to start", || async { relay.log().contains("Outbox relay started.") }).await;
    let (_, writer) = env.create_key("writer", &["*"]);
    let (_, personal) = env.create_key_with_scopes("support", &[], &["read:*", "status", "personal"]);
    let id = uuid::Uuid::new_v4().simple().to_string();
    let canaries = [format!("Owner{id}"), format!("SessionCli{id}"), format!("SessionOutbox{id}")];
    let forms = forms(&canaries);

    // The subject's account through the gateway, a page view through `eventline publish`, another
    // through the outbox.
    let accepted = up
        .post(
            &[("authorization", &format!("Bearer {writer}")), ("content-type", "application/cloudevents+json")],
            opened("o-1", SUBJECT, &canaries[0]).to_string(),
        )
        .await;
    assert_eq!(accepted.status(), 202);
    let published =
        env.run_with_stdin(&["publish", "-"], format!("{}\n", viewed("v-1", SUBJECT, &canaries[1])).as_bytes());
    assert!(published.status.success(), "{}", stderr(&published));
    let mut cli_output = published.stdout.clone();
    cli_output.extend(&published.stderr);
    env.psql(&format!("INSERT INTO eventline_outbox (event) VALUES ('{}')", viewed("v-2", SUBJECT, &canaries[2])));
    wait_until("the outbox row to be published", || async {
        env.psql("SELECT count(*) FROM eventline_outbox WHERE published_at IS NOT NULL") == "1"
    })
    .await;

    // A dead letter: the subject's sealed owner copied into another account's event.
    let stolen = env.psql("SELECT owner FROM account_balances");
    assert!(stolen.starts_with("elc1."), "{stolen}");
    let mut forged = opened("o-2", "acc-other", "x");
    forged["data"]["owner"] = json!(stolen);
    crate::kafka_binding::produce(
        &env,
        "acc-other",
        forged.to_string().as_bytes(),
        &[("content-type", "application/cloudevents+json")],
    )
    .await;
    wait_until("the forged event to be set aside", || async { env.applied_through("account_balances").await == 2 })
        .await;
    assert_eq!(env.psql("SELECT count(*) FROM eventline_dead_letters"), "1");
    wait_until("both page views to be counted", || async {
        env.psql("SELECT coalesce(sum(page_views), 0) FROM daily_activity") == "2"
    })
    .await;

    // A rebuilt generation of the accounts, cut over; the retired one stays in its schema.
    let rebuild = env
        .command(&["rebuild", "start", "account_balances", "--progress", "json"])
        .env("RUST_LOG", "trace")
        .output()
        .unwrap();
    assert!(rebuild.status.success(), "{}", stderr(&rebuild));
    cli_output.extend(&rebuild.stdout);
    cli_output.extend(&rebuild.stderr);
    let cutover = env.run(&["rebuild", "cutover", "account_balances"]);
    assert!(cutover.status.success(), "{}", stderr(&cutover));

    // Stored: nowhere in clear. Read by a caller allowed to: in clear.
    let opened_owner =
        up.get_as(&format!("/v1/accounts/{SUBJECT}"), Some(&personal)).await.json::<Value>().await.unwrap();
    assert_eq!(opened_owner["owner"], canaries[0].as_str());
    let by_owner = format!("/v1/accounts?owner={}", canaries[0]);
    let found = up.get_as(&by_owner, Some(&personal)).await.json::<Value>().await.unwrap();
    assert_eq!(found["items"][0]["account_id"], SUBJECT, "{found}");
    assert_nowhere(&forms, "the Kafka records", &raw_records(&env).await);
    assert_nowhere(&forms, "the database", &pg_dump(&env));
    assert_nowhere(&forms, "the tail exports", &tail_exports(&env));
    assert_nowhere(&forms, "the commands' output", &cli_output);

    // Erased: the API no longer reads it, nor does anything else; the balance stays.
    let erased = env.run(&["erase", "--subject", SUBJECT, "--reason", "r", "--requested-by", "the person"]);
    assert!(erased.status.success(), "{}", stderr(&erased));
    assert_eq!(
        stdout(&erased),
        format!(
            "erased subject {SUBJECT}: its personal data is unreadable everywhere within 5 s; 1 blind-index entry deleted\n\
             daily_activity: its id replaced in 1 row\n"
        )
    );
    let found = up.get_as(&by_owner, Some(&personal)).await.json::<Value>().await.unwrap();
    assert_eq!(found["items"], json!([]), "{found}");
    wait_until("the API to drop the erased key", || async {
        up.get_as(&format!("/v1/accounts/{SUBJECT}"), Some(&personal)).await.json::<Value>().await.unwrap()["owner"]
            .is_null()
    })
    .await;
    let account =
        |answer: Value| (answer["owner"].clone(), answer["balance_minor"].clone(), answer["currency"].clone());
    let read = || async {
        account(up.get_as(&format!("/v1/accounts/{SUBJECT}"), Some(&personal)).await.json::<Value>().await.unwrap())
    };
    assert_eq!(read().await, (Value::Null, json!(0), json!("EUR")));
    // Rebuilt from the log after the erasure: the same, the name gone, the rest exact.
    let rebuilt = env.run(&["rebuild", "start", "account_balances", "--progress", "json"]);
    assert!(rebuilt.status.success(), "{}", stderr(&rebuilt));
    let cutover = env.run(&["rebuild", "cutover", "account_balances"]);
    assert!(cutover.status.success(), "{}", stderr(&cutover));
    assert_eq!(read().await, (Value::Null, json!(0), json!("EUR")));
    assert_eq!(env.psql("SELECT count(*) FROM account_balances WHERE owner LIKE 'elc1.%'"), "1");
    assert_nowhere(&forms, "the API's answers", &api_answers(&up, &personal).await);
    assert_nowhere(&forms, "the Kafka records", &raw_records(&env).await);
    assert_nowhere(&forms, "the database", &pg_dump(&env));
    assert_nowhere(&forms, "the tail exports", &tail_exports(&env));
    up.process.terminate();
    relay.terminate();
    wait_until("spans to be exported", || async { !spans.lock().unwrap().is_empty() }).await;
    assert_nowhere(&forms, "the exported spans", &spans.lock().unwrap());
    // Read once they stopped, their last lines included.
    let logs = ["up.log", "relay.log"].map(|name| std::fs::read_to_string(env.file(name)).unwrap()).concat();
    assert!(logs.contains("TRACE"), "the logs are at trace level");
    assert_nowhere(&forms, "the logs", logs.as_bytes());
}
