//! `eventline tail`: reading a topic from the start, an offset or a time, once or following.

use serde_json::Value;

use crate::events::opened;
use crate::helpers::{stderr, stdout, wait_until, TestEnv};

#[tokio::test(flavor = "multi_thread")]
async fn tail_reads_from_the_start_an_offset_or_a_time_and_follows() {
    let env = TestEnv::new().await;
    let before = chrono::Utc::now() - chrono::Duration::seconds(60);
    let events: Vec<Value> =
        (0..6).map(|i| opened(&format!("e{i}"), if i % 2 == 0 { "even" } else { "odd" })).collect();
    let file = env.write_ndjson("events.ndjson", &events);
    let published = env.run(&["publish", "--positions", file.to_str().unwrap()]);
    assert!(published.status.success(), "{}", stderr(&published));
    let positions: Vec<Value> = stdout(&published).lines().map(|l| serde_json::from_str(l).unwrap()).collect();

    let ids = |output: &std::process::Output| -> Vec<String> {
        let mut ids: Vec<String> = stdout(output)
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap()["id"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        ids
    };
    let all = env.run(&["tail", "accounts.events", "--from", "start", "--no-follow", "--format", "ndjson"]);
    assert!(all.status.success(), "{}", stderr(&all));
    assert_eq!(ids(&all), ["e0", "e1", "e2", "e3", "e4", "e5"]);

    let since = env.run(&[
        "tail",
        "accounts.events",
        "--from",
        &format!("time:{}", before.to_rfc3339()),
        "--no-follow",
        "--format",
        "ndjson",
    ]);
    assert_eq!(ids(&since).len(), 6);
    let future = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let none = env.run(&["tail", "accounts.events", "--from", &format!("time:{future}"), "--no-follow"]);
    assert!(none.status.success());
    assert_eq!(stdout(&none), "");

    // From the position of e2, in its partition: e2 and the later events of its key.
    let e2 = positions.iter().find(|p| p["id"] == "e2").unwrap();
    let from = format!("offset:{}:{}", e2["partition"], e2["offset"]);
    let partition = env.run(&["tail", "accounts.events", "--from", &from, "--no-follow", "--format", "ndjson"]);
    assert_eq!(ids(&partition), ["e2", "e4"]);

    let limited = env.run(&["tail", "accounts.events", "--from", "start", "--limit", "2"]);
    assert_eq!(stdout(&limited).lines().count(), 2);
    assert!(stdout(&limited).contains("accounts.AccountOpened v1 id=e"), "{}", stdout(&limited));

    let bad = env.run(&["tail", "accounts.events", "--from", "yesterday"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        stderr(&bad).contains("expected end, start, offset:<partition>:<offset> or time:<RFC 3339 time>"),
        "{}",
        stderr(&bad)
    );
    let no_partition = env.run(&["tail", "accounts.events", "--from", "offset:99:0"]);
    assert_eq!(no_partition.status.code(), Some(65));
    assert_eq!(stderr(&no_partition), format!("error: topic `{}` has no partition 99\n", env.topic("accounts.events")));

    let follower = env.spawn("tail", &["tail", "accounts.events", "--format", "ndjson"], &[]);
    tokio::time::sleep(std::time::Duration::from_secs(2)).await; // let it open at the end
    let later = env.write_ndjson("later.ndjson", &[opened("late", "even")]);
    assert!(env.run(&["publish", later.to_str().unwrap()]).status.success());
    wait_until("the follower to print the new event", || async { follower.log().contains("\"id\":\"late\"") }).await;
    assert!(!follower.log().contains("\"id\":\"e0\""), "following from the end prints only new events");
    assert!(follower.terminate().success());
}
