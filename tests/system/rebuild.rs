//! Rebuilding a projection beside the live one: under load with readers and writers (zero failed
//! queries, no stale read after the cutover, the new generation equal to a recomputation, a
//! rollback), a rebuild after the handler changed, and every refusal.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use eventline_store::generations::GenerationState;
use eventline_store::Store;
use serde_json::{json, Value};

use crate::helpers::{stderr, stdout, wait_until, AccountsScenario, HttpProcess, TestEnv};

fn deposit(id: &str, account: &str, amount: i64) -> Value {
    json!({"specversion": "1.0", "id": id, "source": "/t", "type": "accounts.FundsDeposited", "subject": account,
           "dataversion": 2, "data": {"account_id": account, "amount_minor": amount, "currency": "EUR", "channel": "card"}})
}

fn lines(text: &str) -> Vec<Value> {
    text.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).collect()
}

fn events<'a>(output: &'a [Value], kind: &str) -> Vec<&'a Value> {
    output.iter().filter(|v| v["event"] == kind).collect()
}

async fn status(env: &TestEnv) -> Value {
    let output = env.run(&["status", "account_balances", "--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    serde_json::from_str::<Value>(&stdout(&output)).unwrap()["projections"][0].clone()
}

async fn total_end(env: &TestEnv) -> i64 {
    env.end_offsets("accounts.events").await.iter().sum()
}

/// Per account: balance, events applied, channel of the latest deposit.
type Balances = BTreeMap<String, (i64, i64, Option<String>)>;

/// Writes deposits through the gateway one at a time, reading each back with its consistency
/// token: the answer must include the write, before, during and after the cutover.
async fn write_and_read_back(
    up: &HttpProcess,
    key: &str,
    accounts: &[String],
    expected: &Mutex<Balances>,
    stop: &AtomicBool,
    failures: &Mutex<Vec<String>>,
) -> usize {
    let bearer = format!("Bearer {key}");
    let mut written = 0;
    while !stop.load(Ordering::Relaxed) {
        let account = &accounts[written % accounts.len()];
        let event = deposit(&format!("live-{written}"), account, 1 + written as i64 % 7);
        let response = up
            .post(&[("content-type", "application/cloudevents+json"), ("authorization", &bearer)], event.to_string())
            .await;
        if response.status() != 202 {
            failures.lock().unwrap().push(format!("write {written}: {}", response.status()));
            continue;
        }
        let accepted: Value = response.json().await.unwrap();
        let want = {
            let mut expected = expected.lock().unwrap();
            let entry = expected.get_mut(account).unwrap();
            entry.0 += 1 + written as i64 % 7;
            entry.1 += 1;
            entry.2 = Some("card".into());
            entry.0
        };
        let token = accepted["consistency_token"].as_str().unwrap();
        let read = up.get(&format!("/v1/accounts/{account}?consistency_token={token}&wait_ms=30000")).await;
        let status = read.status();
        let body: Value = read.json().await.unwrap_or(Value::Null);
        if status != 200 || body["balance_minor"].as_i64() != Some(want) {
            failures
                .lock()
                .unwrap()
                .push(format!("read-your-write {written} of {account}: {status} {body}, want {want}"));
        }
        written += 1;
    }
    written
}

/// Reads accounts one by one and in pages as fast as it can; every answer must be a 200.
async fn read_in_a_loop(
    up: &HttpProcess,
    accounts: &[String],
    stop: &AtomicBool,
    failures: &Mutex<Vec<String>>,
) -> usize {
    let mut reads = 0;
    while !stop.load(Ordering::Relaxed) {
        let path = if reads % 3 == 0 {
            "/v1/accounts?limit=50".to_string()
        } else {
            format!("/v1/accounts/{}", accounts[reads % accounts.len()])
        };
        let response = up.get(&path).await;
        if response.status() != 200 {
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            failures.lock().unwrap().push(format!("GET {path}: {status} {body}"));
        }
        reads += 1;
    }
    reads
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rebuild_under_load_cuts_over_with_no_failed_query_and_rolls_back() {
    let env = TestEnv::new().await;
    let scenario = AccountsScenario::generate(&env.id, 20, 4_000, rand::random());
    env.publish("history.ndjson", &scenario.events);
    let up = env.spawn_http("up", &["up"], &[]).await;
    let (_, key) = env.create_key("writer", &["accounts.*"]);
    wait_until("the history to be applied", || async { env.applied_through("account_balances").await == 4_000 }).await;
    let accounts: Vec<String> = scenario.expected.keys().cloned().collect();
    let expected = Mutex::new(scenario.expected.clone());
    let stop_writes = AtomicBool::new(false);
    let failures = Mutex::new(Vec::new());

    let rebuild = {
        let command =
            env.command(&["rebuild", "start", "account_balances", "--diff", "--cutover", "--progress", "json"]);
        tokio::task::spawn_blocking(move || {
            let mut command = command;
            command.output().expect("rebuild runs")
        })
    };
    let operate = async {
        let output = rebuild.await.unwrap();
        // Keep writing and reading a while on the new generation.
        tokio::time::sleep(Duration::from_secs(3)).await;
        stop_writes.store(true, Ordering::Relaxed);
        output
    };
    let (output, written, reads) = tokio::join!(
        operate,
        write_and_read_back(&up, &key, &accounts, &expected, &stop_writes, &failures),
        read_in_a_loop(&up, &accounts, &stop_writes, &failures),
    );
    assert!(output.status.success(), "rebuild: {}\n{}", stderr(&output), up.process.log());
    let printed = lines(&stdout(&output));
    assert_eq!(events(&printed, "started")[0]["generation"], 2);
    assert!(!events(&printed, "progress").is_empty(), "{}", stdout(&output));
    assert_eq!(events(&printed, "caught_up").len(), 1);
    let diff = events(&printed, "diff");
    assert_eq!(diff.len(), 1);
    assert_eq!((diff[0]["table"].as_str(), diff[0]["live"]["rows"].as_i64()), (Some("account_balances"), Some(20)));
    assert_eq!(diff[0]["rebuilt"]["rows"], 20);
    assert_eq!(events(&printed, "cutover")[0]["live_generation"], 2);
    let failures = failures.into_inner().unwrap();
    assert!(failures.is_empty(), "{} failed of {reads} reads and {written} writes: {failures:#?}", failures.len());
    assert!(written >= 3 && reads >= 100, "the load ran: {written} writes, {reads} reads");
    eprintln!("under load: {written} writes read back, {reads} reads, none failed");

    // The new generation serves, and equals a recomputation from the topic.
    let after = status(&env).await;
    assert_eq!((after["generation"].as_i64(), after["retired_generations"].clone()), (Some(2), json!([1])));
    let expected = expected.into_inner().unwrap();
    let total = total_end(&env).await;
    wait_until("the live generation to apply every write", || async {
        env.applied_through("account_balances").await == total
    })
    .await;
    assert_eq!(AccountsScenario::actual(&env.store).await, expected, "generation 2 against the events");
    let analytics = env.psql("SELECT count(*), sum(balance_minor) FROM analytics.account_balances");
    let sum: i64 = expected.values().map(|v| v.0).sum();
    assert_eq!(analytics, format!("20|{sum}"), "the analytics view follows the cutover");
    let audit = env.store.audit_log(Some("account_balances"), 5).await.unwrap();
    assert_eq!(audit.iter().map(|a| a.action.as_str()).collect::<Vec<_>>(), ["rebuild.cutover"]);

    // Rollback: generation 1 serves again and catches up with what came since.
    let rolled = env.run(&["rebuild", "rollback", "account_balances", "--actor", "ops"]);
    assert!(rolled.status.success(), "{}", stderr(&rolled));
    assert_eq!(lines(&stdout(&rolled))[0]["live_generation"], 1);
    let back = status(&env).await;
    assert_eq!((back["generation"].as_i64(), back["retired_generations"].clone()), (Some(1), json!([2])));
    wait_until("generation 1 to catch up", || async {
        env.applied_through("account_balances").await == total && AccountsScenario::actual(&env.store).await == expected
    })
    .await;
    let cleaned = env.run(&["rebuild", "cleanup", "account_balances"]);
    assert!(cleaned.status.success(), "{}", stderr(&cleaned));
    assert_eq!(lines(&stdout(&cleaned))[0]["dropped_generations"], json!([2]));
    assert_eq!(status(&env).await["retired_generations"], json!([]));
    assert_eq!(env.psql("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'eventline_gen_%'"), "0");
    drop(up);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rebuild_after_the_handler_changed_produces_the_new_shape() {
    let env = TestEnv::new().await;
    let scenario = AccountsScenario::generate(&env.id, 10, 300, rand::random());
    let worker = env.spawn("worker", &["worker", "account_balances"], &[]);
    env.publish("events.ndjson", &scenario.events);
    wait_until("the events to be applied", || async { env.applied_through("account_balances").await == 300 }).await;
    scenario.assert_rows(&env, &worker.log()).await;
    // As when a migration adds a column a new handler fills: the rows written before have none.
    env.psql("UPDATE account_balances SET last_deposit_channel = NULL");
    let stale: BTreeMap<_, _> = AccountsScenario::actual(&env.store).await;
    assert!(stale.values().all(|v| v.2.is_none()));

    let built = env.run(&["rebuild", "start", "account_balances", "--diff", "--progress", "json"]);
    assert!(built.status.success(), "{}", stderr(&built));
    let printed = lines(&stdout(&built));
    let diff = events(&printed, "diff")[0];
    assert_eq!(
        (diff["equal"].as_bool(), diff["live"]["rows"].as_i64(), diff["rebuilt"]["rows"].as_i64()),
        (Some(false), Some(10), Some(10))
    );
    assert_ne!(diff["live"]["checksum"], diff["rebuilt"]["checksum"]);
    assert_eq!(AccountsScenario::actual(&env.store).await, stale, "readers still see the live generation");
    assert!(stderr(&built).contains("switch readers with `eventline rebuild cutover account_balances`"));
    // A handler writing the rebuilt generation is told so; its queries reach that generation.
    let generations = env.store.generations("account_balances").await.unwrap();
    let building = generations.iter().find(|g| g.state == GenerationState::Building).unwrap();
    assert_eq!(building.schema(), "eventline_gen_account_balances_2");
    let rebuilt =
        Store::connect_rebuilding(&env.database_url, 1, Duration::from_secs(10), &building.schema()).await.unwrap();
    assert!(rebuilt.begin().await.unwrap().rebuilding());
    assert!(!env.store.begin().await.unwrap().rebuilding());
    assert_eq!(AccountsScenario::actual(&rebuilt).await, scenario.expected, "the new generation's rows");
    rebuilt.close().await;

    let switched = env.run(&["rebuild", "cutover", "account_balances"]);
    assert!(switched.status.success(), "{}", stderr(&switched));
    scenario.assert_rows(&env, "after the cutover").await;
    let identical = env.run(&["rebuild", "diff", "account_balances"]);
    assert_eq!(identical.status.code(), Some(65), "no rebuild in progress any more: {}", stderr(&identical));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_rebuild_requests_are_refused_and_change_nothing() {
    let env = TestEnv::new().await;
    let scenario = AccountsScenario::generate(&env.id, 10, 3_000, rand::random());
    env.publish("events.ndjson", &scenario.events);
    let name = "account_balances";
    let generations = || {
        env.psql("SELECT string_agg(generation || ':' || state, ',' ORDER BY generation) FROM eventline_generations WHERE projection = 'account_balances'")
    };

    let refusals: [(&[&str], i32, String); 5] = [
        (&["rebuild", "start", "nope"], 2, crate::cli::UNKNOWN_PROJECTION.into()),
        (
            &["rebuild", "start", name, "--from", "time:2026-11-28T00:00:00Z"],
            65,
            "error: account_balances folds each entity's whole history, so it cannot start mid-stream: replay or rebuild it from earliest\n".into(),
        ),
        (&["rebuild", "start", "daily_activity", "--from", "someday"], 2, "expected earliest, offset:<partition>:<offset>[,<partition>:<offset>...] or time:<RFC 3339 time>".into()),
        (
            &["rebuild", "cutover", name],
            65,
            "error: no rebuild of account_balances is in progress; start one with `eventline rebuild start account_balances`\n".into(),
        ),
        (&["rebuild", "rollback", name], 65, "error: account_balances has no retired generation to roll back to\n".into()),
    ];
    for (args, code, message) in refusals {
        let output = env.run(args);
        assert_eq!(output.status.code(), Some(code), "{args:?}: {}", stderr(&output));
        assert!(stderr(&output).contains(&message), "{args:?}: {}", stderr(&output));
    }
    assert_eq!(generations(), "", "nothing was created");

    // A slow rebuild (one event per batch) holds the projection: a second one, a cutover or a
    // replay meanwhile is refused.
    let slow =
        env.spawn("rebuild", &["rebuild", "start", name, "--progress", "json"], &[("EVENTLINE_BATCH_MAX_EVENTS", "1")]);
    wait_until("the rebuild to start", || async { slow.log().contains("\"event\":\"started\"") }).await;
    let busy = "error: another rebuild, cutover, rollback, cleanup or replay of account_balances is running; wait for it to finish\n";
    for args in
        [&["rebuild", "start", name][..], &["rebuild", "cutover", name], &["replay", name, "--from", "earliest"]]
    {
        let output = env.run(args);
        assert_eq!(output.status.code(), Some(75), "{args:?}: {}", stderr(&output));
        assert_eq!(stderr(&output), busy, "{args:?}");
    }
    assert!(!slow.log().contains("\"event\":\"caught_up\""), "the rebuild was still running: {}", slow.log());
    let stopped = slow.terminate();
    assert!(stopped.success());
    assert_eq!(generations(), "1:live,2:building");

    // Its generation is behind: a cutover is refused until it catches up.
    let early = env.run(&["rebuild", "cutover", name, "--max-lag", "0"]);
    assert_eq!(early.status.code(), Some(75), "{}", stderr(&early));
    let message = stderr(&early);
    assert!(message.starts_with("error: generation 2 of account_balances has not caught up: "), "{message}");
    assert!(
        message.ends_with(
            " events behind (a cutover allows 0); let `eventline rebuild start account_balances` finish first\n"
        ),
        "{message}"
    );
    assert_eq!(generations(), "1:live,2:building");
    assert!(
        eventline_reference::store::account_balances::account_balances(&env.store).await.unwrap().is_empty(),
        "no worker ran: the live generation is untouched"
    );

    let cleaned = env.run(&["rebuild", "cleanup", name]);
    assert!(cleaned.status.success(), "{}", stderr(&cleaned));
    assert_eq!(generations(), "1:live");
    assert_eq!(env.psql("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'eventline_gen_%'"), "0");
}
