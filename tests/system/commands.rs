//! The operator-facing commands behave the same the second time, and logs can be JSON.

use crate::helpers::{stderr, stdout, wait_until, TestEnv};

#[tokio::test(flavor = "multi_thread")]
async fn migrate_and_topics_create_are_safe_to_run_again() {
    let env = TestEnv::new().await;
    let migrate = env.run(&["migrate"]);
    assert!(migrate.status.success(), "{}", stderr(&migrate));
    assert_eq!(stdout(&migrate), format!("database {}: migrations applied\n", env.database_url.database_name()));

    let topics = env.run(&["topics", "create", "--partitions", "3"]);
    assert!(topics.status.success(), "{}", stderr(&topics));
    assert_eq!(
        stdout(&topics),
        ["accounts", "activity", "projects"]
            .map(|d| format!("exists  {}.{d}.events (left as it is)\n", env.id))
            .concat()
    );
    // The existing topics keep their 6 partitions.
    assert_eq!(env.end_offsets("accounts.events").await.len(), 6);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_migrated_by_an_earlier_eventline_keeps_its_reference_tables() {
    let env = TestEnv::new().await;
    // As an earlier eventline left it: the reference projections' migrations in sqlx's history
    // only, their tables there with rows.
    env.psql(
        "INSERT INTO _sqlx_migrations (version, description, installed_on, success, checksum, execution_time)
         SELECT version, 'earlier', now(), true, '\\x00', 0 FROM eventline_projection_migrations;
         DELETE FROM eventline_projection_migrations;
         INSERT INTO account_balances (account_id, owner, currency, balance_minor, status, events_applied, last_event_id, last_event_time)
         VALUES ('kept', 'o', 'EUR', 7, 'open', 1, 'e', now())",
    );
    let migrate = env.run(&["migrate"]);
    assert!(migrate.status.success(), "the tables are not created again: {}", stderr(&migrate));
    assert_eq!(env.psql("SELECT balance_minor FROM account_balances"), "7");
    assert_eq!(
        env.psql("SELECT count(*) FROM eventline_projection_migrations"),
        "8",
        "every reference migration recorded"
    );
    let worker_ready = env.run(&["status", "account_balances"]);
    assert!(worker_ready.status.success(), "{}", stderr(&worker_ready));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_partition_count_is_a_usage_error() {
    let env = TestEnv::new().await;
    let output = env.run(&["topics", "create", "--partitions", "0"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("invalid value '0' for '--partitions <PARTITIONS>': 0 is not in 1..=10000"),
        "{}",
        stderr(&output)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_are_json_lines_when_asked() {
    let env = TestEnv::new().await;
    let worker = env.spawn("worker-json", &["--log-format", "json", "worker", "account_balances"], &[]);
    wait_until("the worker to log its start", || async { worker.log().contains("Worker started.") }).await;
    let log_path = worker.log_path.clone();
    assert!(worker.terminate().success());
    let log = std::fs::read_to_string(log_path).unwrap();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}")))
        .collect();
    let started = lines.iter().find(|l| l["message"] == "Worker started.").expect("the start line");
    assert_eq!(started["level"], "INFO");
    assert_eq!(started["projection"], "account_balances");
    assert!(lines.iter().any(|l| l["message"] == "Worker stopped."));
}

#[tokio::test(flavor = "multi_thread")]
async fn loadgen_output_is_valid_input_for_publish() {
    let env = TestEnv::new().await;
    let generated =
        env.run(&["loadgen", "--ndjson", "--accounts", "5", "--events", "50", "--seed", "9", "--prefix", "lg"]);
    assert!(generated.status.success(), "{}", stderr(&generated));
    let published = env.run_with_stdin(&["publish"], &generated.stdout);
    assert!(published.status.success(), "{}", stderr(&published));
    assert_eq!(stderr(&published), "published 50 events from standard input\n");
    assert_eq!(env.end_offsets("accounts.events").await.iter().sum::<i64>(), 50);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_namespace_s_topics_are_deleted_and_deleting_a_missing_one_is_not_an_error() {
    use std::time::Duration;
    let env = TestEnv::new().await;
    let within = Duration::from_secs(10);
    let prefix = format!("{}.", env.id);
    let topics = eventline_kafka::admin::topics_with_prefix(&env.kafka, &prefix, within).await.unwrap();
    assert_eq!(topics, ["accounts", "activity", "projects"].map(|d| format!("{prefix}{d}.events")));

    let doomed = [topics[0].clone(), format!("{prefix}never.created")];
    eventline_kafka::admin::delete_topics(&env.kafka, &doomed, within).await.unwrap();
    // Deleting is asynchronous on the broker: the topic leaves the metadata shortly after.
    wait_until("the deleted topic to leave the metadata", || async {
        eventline_kafka::admin::topics_with_prefix(&env.kafka, &prefix, within).await.unwrap() == topics[1..]
    })
    .await;
    // Only this namespace's topics were touched (a broker deleting every topic would fail here).
    let others = eventline_kafka::admin::topics_with_prefix(&env.kafka, "", within).await.unwrap();
    assert!(others.iter().any(|t| t == &topics[1]) && others.iter().any(|t| t == &topics[2]));
}
