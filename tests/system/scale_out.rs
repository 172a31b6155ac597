//! Nothing assumes one process: two workers of one projection split the partitions, and when one
//! stops, the other takes its partitions over from the stored offsets.

use crate::helpers::{wait_until, AccountsScenario, TestEnv};

#[tokio::test(flavor = "multi_thread")]
async fn two_workers_share_the_partitions_and_one_takes_over_from_the_other() {
    let env = TestEnv::new().await;
    let scenario = AccountsScenario::generate(&env.id, 100, 6_000, 4);
    let (first, second) = scenario.events.split_at(3_000);
    let batch_env = [("EVENTLINE_BATCH_MAX_EVENTS", "50")];
    let worker_a = env.spawn("worker-a", &["worker", "account_balances"], &batch_env);
    let worker_b = env.spawn("worker-b", &["worker", "account_balances"], &batch_env);
    // Both members of the group own partitions before any event is published: otherwise a fast
    // worker A could apply everything before B has joined.
    let partition = format!("\"{}.accounts.events/", env.id);
    let owns = |log: String| log.lines().any(|line| line.contains("Partitions assigned.") && line.contains(&partition));
    wait_until("both workers to own partitions", || async { owns(worker_a.log()) && owns(worker_b.log()) }).await;

    env.publish("first.ndjson", first);
    wait_until("both workers to apply the first 3,000 events", || async {
        env.applied_through("account_balances").await == 3_000
    })
    .await;
    let stored = env.store.checkpoints("account_balances").await.unwrap();
    assert_eq!(stored.len(), 6, "every partition was applied: {stored:?}");

    assert!(worker_b.terminate().success());
    env.publish("second.ndjson", second);
    wait_until("worker A to take over and apply all 6,000 events", || async {
        env.applied_through("account_balances").await == 6_000
    })
    .await;

    scenario.assert_projected(&env, &worker_a.log()).await;
    assert!(worker_a.terminate().success());
}
