//! Bad input to `eventline publish`: each bad line is named with its problem, the exit code is
//! 65, and nothing at all is published (the topic's end offsets do not move).

use serde_json::json;

use crate::helpers::{stderr, TestEnv};

fn deposit(id: &str) -> serde_json::Value {
    json!({"specversion": "1.0", "id": id, "source": "/t", "type": "accounts.FundsDeposited", "subject": "a1",
           "data": {"account_id": "a1", "amount_minor": 5, "currency": "EUR"}})
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_with_bad_lines_names_each_one_and_publishes_nothing() {
    let env = TestEnv::new().await;
    let path = env.write_ndjson("bad.ndjson", &[]);
    let missing_source =
        json!({"specversion": "1.0", "id": "x", "type": "accounts.AccountClosed", "data": {"account_id": "a1"}});
    let unknown_type = json!({"specversion": "1.0", "id": "y", "source": "/t", "type": "accounts.Nope", "data": {}});
    let text = format!("{}\n{{not json\n{missing_source}\n{unknown_type}\n{}\n", deposit("ok-1"), deposit("ok-2"));
    std::fs::write(&path, text).unwrap();

    let output = env.run(&["publish", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(65));
    let name = path.display();
    assert_eq!(
        stderr(&output),
        format!(
            "error: {name}: line 2: not valid JSON: key must be a string at line 1 column 2 [not_json]\n\
             error: {name}: line 3: missing required attribute `source` [missing_attribute at /source]\n\
             error: {name}: line 4: unknown event type `accounts.Nope` [unknown_type at /type]\n\
             error: {name}: 3 invalid event(s); nothing was published\n"
        )
    );
    assert_eq!(env.end_offsets("accounts.events").await, vec![0; 6], "nothing may reach the topic");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_data_on_stdin_is_refused_with_its_field() {
    let env = TestEnv::new().await;
    let bad = json!({"specversion": "1.0", "id": "n", "source": "/t", "type": "accounts.FundsWithdrawn", "subject": "a1",
                     "data": {"account_id": "a1", "amount_minor": -5, "currency": "EUR"}});
    let output = env.run_with_stdin(&["publish"], format!("{bad}\n").as_bytes());
    assert_eq!(output.status.code(), Some(65));
    assert_eq!(
        stderr(&output),
        "error: standard input: line 1: field `data.amount_minor` must be greater than 0, found -5 [invalid_value at /data/amount_minor]\n\
         error: standard input: 1 invalid event(s); nothing was published\n"
    );
    assert_eq!(env.end_offsets("accounts.events").await, vec![0; 6]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_good_file_is_published_with_positions_keyed_by_subject() {
    let env = TestEnv::new().await;
    let path = env.write_ndjson("good.ndjson", &[deposit("p-1"), deposit("p-2")]);
    let output = env.run(&["publish", "--positions", path.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    let positions: Vec<serde_json::Value> =
        String::from_utf8(output.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(positions.len(), 2);
    // Same key, so same partition, in order.
    assert_eq!(positions[0]["partition"], positions[1]["partition"]);
    assert_eq!(positions[0]["id"], "p-1");
    assert_eq!(positions[1]["offset"].as_i64().unwrap(), positions[0]["offset"].as_i64().unwrap() + 1);
    assert_eq!(positions[0]["topic"], env.topic("accounts.events"));
    assert_eq!(env.end_offsets("accounts.events").await.iter().sum::<i64>(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_with_one_bad_event_names_its_index_and_publishes_none() {
    let env = TestEnv::new().await;
    let mut no_subject = deposit("b-2");
    no_subject.as_object_mut().unwrap().remove("subject");
    let batch = json!([deposit("b-0"), deposit("b-1"), no_subject, deposit("b-3")]);
    let output = env.run_with_stdin(&["publish"], batch.to_string().as_bytes());
    assert_eq!(output.status.code(), Some(65));
    assert_eq!(
        stderr(&output),
        "error: standard input: event 2: missing required attribute `subject` (the `account_id` of the entity) [missing_attribute at /subject]\n\
         error: standard input: 1 invalid event(s); nothing was published\n"
    );
    assert_eq!(
        env.end_offsets("accounts.events").await,
        vec![0; 6],
        "the good events of the batch are not published either"
    );

    let good = json!([deposit("b-0"), deposit("b-1")]);
    let output = env.run_with_stdin(&["publish"], good.to_string().as_bytes());
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(env.end_offsets("accounts.events").await.iter().sum::<i64>(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_file_is_a_clear_error() {
    let env = TestEnv::new().await;
    let output = env.run(&["publish", "/nonexistent/events.ndjson"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr(&output),
        "error: cannot open /nonexistent/events.ndjson: No such file or directory (os error 2)\n"
    );
}
