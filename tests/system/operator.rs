//! Operator commands against real services: `status` (table, JSON, exit code as a health check),
//! `replay` in place (picked up by running workers), and `tail --to` exports of a time range.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;

use crate::events::opened;
use crate::helpers::{stderr, stdout, wait_until, AccountsScenario, TestEnv};
use crate::scenario::{actual_daily, actual_features, ReferenceScenario};

fn json_of(output: &std::process::Output) -> Value {
    serde_json::from_str(&stdout(output)).unwrap_or_else(|e| panic!("{e}: {}", stdout(output)))
}

#[tokio::test(flavor = "multi_thread")]
async fn status_shows_positions_owners_and_fails_when_behind() {
    let env = TestEnv::new().await;
    let events: Vec<Value> = (0..20).map(|i| opened(&format!("o{i}"), &format!("acct-{i}"))).collect();
    let worker = env.spawn("worker", &["worker", "account_balances"], &[]);
    env.publish("first.ndjson", &events);
    wait_until("the events to be applied", || async { env.applied_through("account_balances").await == 20 }).await;

    let shown = env.run(&["status", "account_balances", "--json"]);
    assert!(shown.status.success(), "{}", stderr(&shown));
    let status = &json_of(&shown)["projections"][0];
    assert_eq!((status["name"].as_str(), status["lag_events"].as_i64()), (Some("account_balances"), Some(0)));
    assert_eq!((status["generation"].as_i64(), status["rebuild"].is_null()), (Some(1), true));
    let host = gethostname::gethostname().to_string_lossy().to_string();
    let owner = format!("{host}:{}", worker.pid());
    let partitions = status["partitions"].as_array().unwrap();
    assert_eq!(partitions.len(), 6);
    for p in partitions.iter().filter(|p| !p["stored_offset"].is_null()) {
        assert_eq!(p["owner"], owner.as_str(), "{p}");
        assert_eq!(p["stored_offset"], p["end_offset"]);
    }
    // The running worker is the group's one live member and holds every partition.
    assert_eq!(status["group_members"].as_u64(), Some(1), "{status}");
    assert_eq!(status["unowned_partitions"], serde_json::json!([]));
    let holders: BTreeSet<&str> = partitions.iter().map(|p| p["held_by"].as_str().unwrap_or("none")).collect();
    assert_eq!(holders.len(), 1, "one member holds all six: {holders:?}");
    assert!(holders.iter().all(|h| h.ends_with("@127.0.0.1")), "{holders:?}");

    worker.terminate();
    let more: Vec<Value> = (20..25).map(|i| opened(&format!("o{i}"), &format!("acct-{i}"))).collect();
    env.publish("second.ndjson", &more);
    let behind = env.run(&["status", "account_balances", "--max-lag-events", "4"]);
    assert_eq!(behind.status.code(), Some(3), "{}", stderr(&behind));
    assert!(
        stderr(&behind).starts_with("error: behind the lag threshold: account_balances (5 events, "),
        "{}",
        stderr(&behind)
    );
    let table = stdout(&behind);
    assert!(table.starts_with("account_balances  generation 1  lag 5 events / "), "{table}");
    // The stopped worker left the group: the partitions where the new events wait are unowned.
    let group = format!("{}.eventline.account_balances", env.id);
    let group_line = table.lines().nth(1).unwrap();
    assert!(group_line.starts_with(&format!("  group {group}: Empty, 0 live member(s); UNOWNED: ")), "{table}");
    assert!(table.lines().nth(2).unwrap().split_whitespace().eq([
        "topic",
        "partition",
        "stored",
        "end",
        "lag",
        "lag",
        "(s)",
        "held",
        "by",
        "written",
        "by"
    ]));
    let shown = json_of(&env.run(&["status", "account_balances", "--json"]));
    let status = &shown["projections"][0];
    let waiting: Vec<String> = status["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["lag_events"].as_i64() > Some(0))
        .map(|p| format!("{}/{}", p["topic"].as_str().unwrap(), p["partition"]))
        .collect();
    assert!(!waiting.is_empty());
    assert_eq!(status["unowned_partitions"], serde_json::json!(waiting), "{status}");
    assert_eq!((status["group"].as_str(), status["group_members"].as_u64()), (Some(group.as_str()), Some(0)));
    assert!(group_line.ends_with(&waiting.join(", ")), "{group_line}");
    let within = env.run(&["status", "account_balances", "--max-lag-events", "5"]);
    assert_eq!(within.status.code(), Some(0), "the same lag within a higher threshold: {}", stderr(&within));
    let unknown = env.run(&["status", "nope"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert_eq!(stderr(&unknown), crate::cli::UNKNOWN_PROJECTION);
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_from_earliest_resets_in_place_and_running_workers_follow() {
    let env = TestEnv::new().await;
    let scenario = AccountsScenario::generate(&env.id, 8, 200, rand::random());
    let worker = env.spawn("worker", &["worker", "account_balances"], &[]);
    env.publish("events.ndjson", &scenario.events);
    wait_until("every event to be applied", || async { env.applied_through("account_balances").await == 200 }).await;
    scenario.assert_rows(&env, "before the replay").await;

    // Entity projections cannot start mid-stream; malformed starts are usage errors. Nothing changes.
    let now = chrono::Utc::now().to_rfc3339();
    let refusals: [(&[&str], i32, String); 4] = [
        (
            &["replay", "account_balances", "--from", &format!("time:{now}")],
            65,
            "error: account_balances folds each entity's whole history, so it cannot start mid-stream: replay or rebuild it from earliest\n".into(),
        ),
        (
            &["replay", "account_balances", "--from", "offset:0:1"],
            65,
            "error: account_balances folds each entity's whole history".into(),
        ),
        (
            &["replay", "account_balances", "--from", "yesterday"],
            2,
            "invalid value 'yesterday' for '--from <FROM>': expected earliest, offset:<partition>:<offset>[,<partition>:<offset>...] or time:<RFC 3339 time>".into(),
        ),
        (&["replay", "nope", "--from", "earliest"], 2, crate::cli::UNKNOWN_PROJECTION.into()),
    ];
    for (args, code, message) in refusals {
        let output = env.run(args);
        assert_eq!(output.status.code(), Some(code), "{args:?}: {}", stderr(&output));
        assert!(stderr(&output).contains(&message), "{args:?}: {}", stderr(&output));
    }
    scenario.assert_rows(&env, "after refused replays").await;

    let replayed = env.run(&["replay", "account_balances", "--from", "earliest", "--actor", "ops"]);
    assert!(replayed.status.success(), "{}", stderr(&replayed));
    let report: Value = serde_json::from_str(stdout(&replayed).trim()).unwrap();
    assert_eq!(report["rows_removed"], 8);
    assert_eq!(report["from"], "earliest");
    // The same worker process re-reads everything, without a restart.
    wait_until("the worker to apply everything again", || async {
        env.applied_through("account_balances").await == 200
            && eventline_reference::store::account_balances::account_balances(&env.store).await.unwrap().len() == 8
    })
    .await;
    scenario.assert_rows(&env, &format!("after the replay; log: {}", worker.log())).await;
    assert!(worker.log().contains("Stored position changed under this worker"), "{}", worker.log());
    let audit = env.store.audit_log(Some("account_balances"), 5).await.unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!((audit[0].action.as_str(), audit[0].actor.as_str()), ("replay", "ops"));
    assert_eq!(audit[0].outcome["rows_removed"], 8);
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_from_a_time_keeps_exactly_the_daily_events_from_then_on() {
    let env = TestEnv::new().await;
    let before = ReferenceScenario::generate(&format!("{}-old", env.id), 300, rand::random());
    let after = ReferenceScenario::generate(&format!("{}-new", env.id), 300, rand::random());
    let activity = |s: &ReferenceScenario| -> Vec<Value> {
        s.events.iter().filter(|e| e["type"].as_str().unwrap().starts_with("activity.")).cloned().collect()
    };
    let total = (activity(&before).len() + activity(&after).len()) as i64;
    let worker = env.spawn("worker", &["worker", "daily_activity", "feature_usage_daily"], &[]);
    env.publish("before.ndjson", &activity(&before));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let start = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    env.publish("after.ndjson", &activity(&after));
    let all_applied = || async {
        env.applied_through("daily_activity").await == total
            && env.applied_through("feature_usage_daily").await == total
    };
    wait_until("every activity event to be applied", all_applied).await;

    let bad_offset = env.run(&["replay", "daily_activity", "--from", "offset:0:99999"]);
    assert_eq!(bad_offset.status.code(), Some(65), "{}", stderr(&bad_offset));
    let ends = env.end_offsets("activity.events").await;
    assert_eq!(
        stderr(&bad_offset),
        format!(
            "error: offset 99999 is outside partition 0 of {}, which holds offsets 0 to {}\n",
            env.topic("activity.events"),
            ends[0]
        )
    );
    let bad_partition = env.run(&["replay", "daily_activity", "--from", "offset:6:0"]);
    assert_eq!(bad_partition.status.code(), Some(65));
    assert_eq!(
        stderr(&bad_partition),
        format!("error: daily_activity reads no partition 6 of {}\n", env.topic("activity.events"))
    );
    for (from, expected) in [
        ("offset:0:1,0:2", "partition 0 is given twice"),
        ("offset:0:1,x", "`x` is not <partition>:<offset>"),
        ("offset:0:-1", "partitions and offsets are not negative"),
    ] {
        let refused = env.run(&["replay", "daily_activity", "--from", from]);
        assert_eq!(refused.status.code(), Some(2), "{from}: {}", stderr(&refused));
        assert!(
            stderr(&refused).contains(&format!("invalid value '{from}' for '--from <FROM>': {expected}")),
            "{from}: {}",
            stderr(&refused)
        );
    }

    // Offsets for several partitions: those start there at once, the others from the earliest.
    let several = env.run(&[
        "replay",
        "daily_activity",
        "--from",
        &format!("offset:2:{},0:{}", ends[2], ends[0]),
        "--actor",
        "ops",
    ]);
    assert!(several.status.success(), "{}", stderr(&several));
    let report: Value = serde_json::from_str(stdout(&several).trim()).unwrap();
    let topic = env.topic("activity.events");
    assert_eq!(report["from"], format!("offset:0:{},2:{}", ends[0], ends[2]));
    assert_eq!(report["positions"], serde_json::json!([[topic, 0, ends[0]], [topic, 2, ends[2]]]));
    let stored: Vec<(i32, i64)> = env
        .store
        .checkpoints("daily_activity")
        .await
        .unwrap()
        .iter()
        .map(|c| (c.partition, c.next_offset))
        .filter(|(partition, _)| [0, 2].contains(partition))
        .collect();
    assert_eq!(stored, [(0, ends[0]), (2, ends[2])]);

    for projection in ["daily_activity", "feature_usage_daily"] {
        let replayed = env.run(&["replay", projection, "--from", &format!("time:{}", start.to_rfc3339())]);
        assert!(replayed.status.success(), "{}", stderr(&replayed));
    }
    wait_until("the daily projections to re-read from the time", all_applied).await;
    let expected_daily = after.daily.clone();
    let expected_features = after.features.clone();
    wait_until("the rows to hold exactly the events from the time on", || async {
        actual_daily(&env.store).await == expected_daily && actual_features(&env.store).await == expected_features
    })
    .await;
    drop(worker);
}

#[tokio::test(flavor = "multi_thread")]
async fn tail_exports_exactly_a_time_range() {
    let env = TestEnv::new().await;
    let batch =
        |name: &str| -> Vec<Value> { (0..9).map(|i| opened(&format!("{name}-{i}"), &format!("k{i}"))).collect() };
    env.publish("first.ndjson", &batch("first"));
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let from = chrono::Utc::now();
    env.publish("second.ndjson", &batch("second"));
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let to = chrono::Utc::now();
    env.publish("third.ndjson", &batch("third"));

    let exported = env.run(&[
        "tail",
        "accounts.events",
        "--from",
        &format!("time:{}", from.to_rfc3339()),
        "--to",
        &format!("time:{}", to.to_rfc3339()),
        "--format",
        "ndjson",
    ]);
    assert!(exported.status.success(), "{}", stderr(&exported));
    let ids: BTreeSet<String> = stdout(&exported)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["id"].as_str().unwrap().to_string())
        .collect();
    let expected: BTreeSet<String> = (0..9).map(|i| format!("second-{i}")).collect();
    assert_eq!(ids, expected);

    let reversed = env.run(&[
        "tail",
        "accounts.events",
        "--from",
        &format!("time:{}", to.to_rfc3339()),
        "--to",
        &format!("time:{}", from.to_rfc3339()),
    ]);
    assert_eq!(reversed.status.code(), Some(2));
    assert_eq!(stderr(&reversed), "error: --to must be later than --from\n");
    let malformed = env.run(&["tail", "accounts.events", "--to", "tomorrow"]);
    assert_eq!(malformed.status.code(), Some(2));
    assert!(stderr(&malformed).contains("expected time:<RFC 3339 time>"), "{}", stderr(&malformed));
}
