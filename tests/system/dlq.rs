//! Dead-letter handling by an operator: a poison event parks its key; `dlq retry` after the cause
//! is fixed applies the parked events in order and unparks the key; `skip` drops one with a
//! reason and moves on; `purge` forgets; every action is in the audit table.

use std::path::Path;

use serde_json::{json, Value};

use crate::events::{account_event, deposit, opened, withdrawal};
use crate::helpers::{stderr, stdout, wait_until, TestEnv};

/// A copy of the built-in registry whose withdrawal contract is too strict (at most 2000): the
/// kind of mistake a later deployment fixes.
pub(crate) fn too_strict_registry(dir: &Path) {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
    for entry in walk(&source) {
        let target = dir.join(entry.strip_prefix(&source).unwrap());
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(&entry, &target).unwrap();
    }
    let schema = dir.join("accounts/FundsWithdrawn.v1.schema.json");
    let text = std::fs::read_to_string(&schema).unwrap().replace("\"maximum\": 9007199254740991", "\"maximum\": 2000");
    std::fs::write(schema, text).unwrap();
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

async fn letters(env: &TestEnv, key: &str) -> Vec<(String, String)> {
    let all = env.store.dead_letters("account_balances").await.unwrap();
    all.into_iter()
        .filter(|l| l.record_key.as_deref() == Some(key))
        .map(|l| (l.event_id.unwrap_or_default(), l.reason_kind))
        .collect()
}

pub(crate) async fn balance(env: &TestEnv, account: &str) -> Option<(i64, i64)> {
    let rows = eventline_reference::store::account_balances::account_balances(&env.store).await.unwrap();
    rows.into_iter().find(|r| r.account_id == account).map(|r| (r.balance_minor, r.events_applied))
}

#[tokio::test(flavor = "multi_thread")]
async fn retry_after_the_fix_applies_parked_events_in_order_and_skip_moves_on() {
    let env = TestEnv::new().await;
    let strict = tempfile::tempdir().unwrap();
    too_strict_registry(strict.path());
    let strict_dir = strict.path().to_str().unwrap();
    let (a, b) = ("acct-a", "acct-b");
    let events = [
        opened("open-a", a),
        deposit("dep-a", a, 6000),
        withdrawal("wd-big", a, 5000), // refused by the too-strict contract: parks acct-a
        deposit("dep-a2", a, 100),     // waits behind it
        withdrawal("wd-a2", a, 1100),  // valid; the last of acct-a's events in offset order
        opened("open-b", b),
        deposit("dep-b", b, 100),
        // The wrong currency: a domain rule refuses it, parks acct-b.
        account_event("wd-usd", "accounts.FundsWithdrawn", b, json!({"amount_minor": 500, "currency": "USD"})),
        deposit("dep-b2", b, 50),
    ];
    let worker = env.spawn("worker", &["worker", "account_balances"], &[("EVENTLINE_SCHEMAS_DIR", strict_dir)]);
    env.publish("events.ndjson", &events);
    wait_until("every event to be passed", || async { env.applied_through("account_balances").await == 9 }).await;
    assert_eq!(
        letters(&env, a).await,
        // An event refused by its contract has no trusted id.
        [("".into(), "invalid".into()), ("dep-a2".into(), "parked".into()), ("wd-a2".into(), "parked".into())],
        "log: {}",
        worker.log()
    );
    assert_eq!(balance(&env, a).await, Some((6000, 2)));
    assert_eq!(env.store.parked_keys("account_balances").await.unwrap(), [a, b]);

    // Listing filters by projection, key, kind and reason.
    let listed = env.run(&["dlq", "list", "--projection", "account_balances", "--kind", "parked", "--json"]);
    assert!(listed.status.success(), "{}", stderr(&listed));
    let mut ids: Vec<String> =
        stdout(&listed).lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["event_id"].to_string()).collect();
    ids.sort();
    assert_eq!(ids, ["\"dep-a2\"", "\"dep-b2\"", "\"wd-a2\""]);
    let by_reason = env.run(&["dlq", "list", "--reason", "HOLDS EUR, not usd", "--json"]);
    let found: Vec<Value> = stdout(&by_reason).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(found.len(), 1, "{}", stdout(&by_reason));
    assert_eq!(found[0]["event_id"], "wd-usd");
    assert_eq!(found[0]["reason"], "account acct-b holds EUR, not USD");
    let over_id = found[0]["id"].as_i64().unwrap();
    let shown = env.run(&["dlq", "show", &over_id.to_string()]);
    let shown: Value = serde_json::from_str(&stdout(&shown)).unwrap();
    assert_eq!(shown["payload"]["data"]["amount_minor"], 500);
    assert_eq!(shown["key"], b);

    // Retried while the cause is still there: nothing applies, the key stays parked.
    let early = env
        .command(&["dlq", "retry", "account_balances", "--key", a, "--actor", "ops-anna"])
        .env("EVENTLINE_SCHEMAS_DIR", strict_dir)
        .output()
        .unwrap();
    assert_eq!(early.status.code(), Some(65), "{}", stderr(&early));
    let all = env.store.dead_letters("account_balances").await.unwrap();
    let first_id = all.iter().filter(|l| l.record_key.as_deref() == Some(a)).min_by_key(|l| l.offset).unwrap().id;
    assert!(
        stderr(&early).contains(&format!("dead letter {first_id} still fails: ")) && stderr(&early).contains("2000"),
        "{}",
        stderr(&early)
    );
    assert_eq!(letters(&env, a).await.len(), 3);
    assert_eq!(balance(&env, a).await, Some((6000, 2)));

    // After the fix (the built-in contract): applied in offset order, the key unparked.
    let retried = env.run(&["dlq", "retry", "account_balances", "--key", a, "--actor", "ops-anna"]);
    assert!(retried.status.success(), "{}", stderr(&retried));
    let report: Value = serde_json::from_str(stdout(&retried).trim()).unwrap();
    assert_eq!(report["applied"].as_array().unwrap().len(), 3, "{report}");
    assert_eq!(report["unparked"], true);
    assert_eq!(balance(&env, a).await, Some((6000 - 5000 + 100 - 1100, 5)));
    let row = eventline_reference::store::account_balances::account_balances(&env.store)
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.account_id == a)
        .unwrap();
    assert_eq!(row.last_event_id, "wd-a2", "applied in offset order");
    assert!(letters(&env, a).await.is_empty());
    // The key flows again through the running worker.
    env.publish("after.ndjson", &[deposit("dep-a3", a, 70)]);
    wait_until("the unparked key to apply again", || async { balance(&env, a).await == Some((70, 6)) }).await;

    // skip drops the overdraft with a reason and applies the deposit behind it.
    let skipped = env.run(&[
        "dlq",
        "skip",
        "account_balances",
        "--id",
        &over_id.to_string(),
        "--reason",
        "bank feed sent it twice",
        "--actor",
        "ops-ben",
    ]);
    assert!(skipped.status.success(), "{}", stderr(&skipped));
    assert_eq!(balance(&env, b).await, Some((150, 3)));
    assert!(env.store.parked_keys("account_balances").await.unwrap().is_empty());
    assert!(env.store.dead_letters("account_balances").await.unwrap().is_empty());

    // The audit has every action: who, what, why, and what came of it.
    let audit: Vec<(String, String, Option<String>, Value)> = env
        .store
        .audit_log(Some("account_balances"), 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.actor, e.action, e.reason, e.outcome))
        .collect();
    let summary: Vec<(&str, &str, Option<&str>)> =
        audit.iter().map(|(who, what, why, _)| (who.as_str(), what.as_str(), why.as_deref())).collect();
    assert_eq!(
        summary,
        [
            ("ops-anna", "dlq.retry", None),
            ("ops-anna", "dlq.retry", None),
            ("ops-ben", "dlq.skip", Some("bank feed sent it twice")),
        ]
    );
    assert_eq!(audit[0].3["applied"], json!([]));
    assert_eq!(audit[1].3["unparked"], true);
    assert_eq!(audit[2].3["skipped"], over_id);
    let log = env.run(&["dlq", "log", "--projection", "account_balances"]);
    assert_eq!(stdout(&log).lines().count(), 3, "{}", stdout(&log));
    for line in stdout(&log).lines() {
        let origin = serde_json::from_str::<Value>(line).unwrap()["origin"].as_str().unwrap_or_default().to_string();
        assert!(origin.starts_with("eventline dlq "), "each entry names the command that wrote it: {line}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn purge_forgets_and_bad_dlq_input_is_refused_with_nothing_changed() {
    let env = TestEnv::new().await;
    let worker = env.spawn("worker", &["worker", "account_balances"], &[]);
    env.publish("events.ndjson", &[withdrawal("ghost-wd", "ghost", 5), deposit("ghost-dep", "ghost", 7)]);
    wait_until("both events to be passed", || async { env.applied_through("account_balances").await == 2 }).await;
    assert_eq!(letters(&env, "ghost").await.len(), 2, "log: {}", worker.log());

    let refused: [(&[&str], i32, &str); 6] = [
        (
            &["dlq", "retry", "account_balances", "--key", "nobody"],
            65,
            "error: projection account_balances has no dead letters for key nobody\n",
        ),
        (
            &["dlq", "retry", "daily_activity", "--id", "999999"],
            65,
            "error: projection daily_activity has no dead letter 999999\n",
        ),
        (
            &["dlq", "skip", "account_balances", "--id", "999999", "--reason", "r"],
            65,
            "error: projection account_balances has no dead letter 999999\n",
        ),
        (&["dlq", "show", "999999"], 65, "error: there is no dead letter 999999\n"),
        (
            &["dlq", "purge", "account_balances", "--key", "ghost", "--because", "test data"],
            2,
            "error: purged dead letters are gone for good; pass --yes to confirm\n",
        ),
        (&["dlq", "retry", "account_balances"], 2, "the following required arguments were not provided"),
    ];
    for (args, code, message) in refused {
        let output = env.run(args);
        assert_eq!(output.status.code(), Some(code), "{args:?}: {}", stderr(&output));
        assert!(stderr(&output).contains(message), "{args:?}: {}", stderr(&output));
    }
    let skip_without_reason = env.run(&["dlq", "skip", "account_balances", "--id", "1"]);
    assert_eq!(skip_without_reason.status.code(), Some(2));
    assert!(stderr(&skip_without_reason).contains("--reason <REASON>"), "{}", stderr(&skip_without_reason));
    assert_eq!(letters(&env, "ghost").await.len(), 2, "nothing changed");
    assert!(env.store.audit_log(None, 10).await.unwrap().is_empty(), "refusals are not actions");

    let purged = env.run(&[
        "dlq",
        "purge",
        "account_balances",
        "--key",
        "ghost",
        "--because",
        "test data",
        "--yes",
        "--actor",
        "ops",
    ]);
    assert!(purged.status.success(), "{}", stderr(&purged));
    assert!(letters(&env, "ghost").await.is_empty());
    assert!(env.store.parked_keys("account_balances").await.unwrap().is_empty(), "a key without letters is unparked");
    let audit = env.store.audit_log(None, 10).await.unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!((audit[0].action.as_str(), audit[0].reason.as_deref()), ("dlq.purge", Some("test data")));
    assert_eq!(audit[0].outcome["purged"].as_array().unwrap().len(), 2);
    let origin = audit[0].origin.as_deref().unwrap_or_default();
    assert!(origin.starts_with("eventline dlq purge from "), "the entry names the command that wrote it: {origin}");
}
