use crate::helpers::{stderr, wait_until, AccountsScenario, TestEnv};

#[tokio::test(flavor = "multi_thread")]
async fn published_accounts_events_become_exact_balances() {
    let env = TestEnv::new().await;
    let scenario = AccountsScenario::generate(&env.id, 50, 1_000, 1);
    env.publish("events.ndjson", &scenario.events);
    assert_eq!(env.end_offsets("accounts.events").await.iter().sum::<i64>(), 1_000);

    let worker = env.spawn("worker", &["worker", "account_balances"], &[]);
    wait_until("the worker to apply all 1,000 events", || async {
        env.applied_through("account_balances").await == 1_000
    })
    .await;

    scenario.assert_projected(&env, &worker.log()).await;
    let status = worker.terminate();
    assert!(status.success(), "worker exited with {status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn up_runs_the_workers_and_events_from_stdin_are_applied() {
    let env = TestEnv::new().await;
    let scenario = AccountsScenario::generate(&env.id, 5, 60, 2);
    let up = env.spawn("up", &["up"], &[]);
    let input: String = scenario.events.iter().map(|e| format!("{e}\n")).collect();
    let published = env.run_with_stdin(&["publish", "-"], input.as_bytes());
    assert!(published.status.success(), "publish failed: {}", stderr(&published));
    wait_until("`up` to apply the events", || async { env.applied_through("account_balances").await == 60 }).await;
    scenario.assert_projected(&env, &up.log()).await;
    assert!(up.terminate().success());
}

#[tokio::test(flavor = "multi_thread")]
async fn events_a_domain_rule_refuses_become_dead_letters_and_the_rest_applies() {
    let env = TestEnv::new().await;
    let deposit = |id: &str, account: &str| {
        serde_json::json!({"specversion": "1.0", "id": id, "source": "/t", "type": "accounts.FundsDeposited",
                           "subject": account, "data": {"account_id": account, "amount_minor": 10, "currency": "EUR"}})
    };
    let opened = serde_json::json!({"specversion": "1.0", "id": "o1", "source": "/t", "type": "accounts.AccountOpened",
                                    "subject": "known", "data": {"account_id": "known", "owner": "x", "currency": "EUR"}});
    env.publish("events.ndjson", &[opened, deposit("d1", "known"), deposit("d2", "ghost")]);

    let worker = env.spawn("worker", &["worker", "account_balances"], &[]);
    wait_until("all three events to be passed", || async { env.applied_through("account_balances").await == 3 }).await;
    let rows = eventline_reference::store::account_balances::account_balances(&env.store).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].account_id.as_str(), rows[0].balance_minor), ("known", 10));
    let dead = env.store.dead_letters("account_balances").await.unwrap();
    assert_eq!(dead.len(), 1, "worker log: {}", worker.log());
    assert_eq!(
        (
            dead[0].event_id.as_deref(),
            dead[0].record_key.as_deref(),
            dead[0].reason_kind.as_str(),
            dead[0].reason.as_str()
        ),
        (Some("d2"), Some("ghost"), "rejected", "account ghost does not exist")
    );
    assert_eq!(dead[0].topic, env.topic("accounts.events"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_v1_deposit_lands_in_the_projection_as_its_v2_form_would() {
    let env = TestEnv::new().await;
    let event = |id: &str, account: &str, event_type: &str, version: u32, data: serde_json::Value| {
        serde_json::json!({"specversion": "1.0", "id": id, "source": "/t", "type": event_type, "subject": account,
                           "dataversion": version, "data": data})
    };
    let opened = |account: &str| serde_json::json!({"account_id": account, "owner": "o", "currency": "EUR"});
    let events = [
        event("o-old", "old", "accounts.AccountOpened", 1, opened("old")),
        event("o-new", "new", "accounts.AccountOpened", 1, opened("new")),
        // An older upstream still publishes version 1, without a channel ...
        event(
            "d-old",
            "old",
            "accounts.FundsDeposited",
            1,
            serde_json::json!({"account_id": "old", "amount_minor": 700, "currency": "EUR"}),
        ),
        // ... and the same deposit in version 2 says the channel is unknown.
        event(
            "d-new",
            "new",
            "accounts.FundsDeposited",
            2,
            serde_json::json!({"account_id": "new", "amount_minor": 700, "currency": "EUR", "channel": "unknown"}),
        ),
    ];
    env.publish("events.ndjson", &events);

    let worker = env.spawn("worker", &["worker", "account_balances"], &[]);
    wait_until("both deposits to be applied", || async { env.applied_through("account_balances").await == 4 }).await;
    let rows = AccountsScenario::actual(&env.store).await;
    assert_eq!(rows["old"], (700, 2, Some("unknown".to_string())), "log: {}", worker.log());
    assert_eq!(rows["old"], rows["new"]);
    assert!(env.store.dead_letters("account_balances").await.unwrap().is_empty());
}
