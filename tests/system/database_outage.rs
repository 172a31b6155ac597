//! PostgreSQL going away under load, on a private cluster of the test's own (the shared one
//! serves the other tests): stopped at once (`pg_ctl stop -m immediate`, a crash to its clients)
//! while a worker applies a stream, started again seconds later. The worker retries the batch
//! in hand, moves no offset while the database is gone, and ends exact: nothing lost, nothing
//! doubled, no restart.

use std::time::Duration;

use crate::helpers::{wait_until, AccountsScenario, Services, TestEnv};
use crate::private_services::PrivatePostgres;

#[tokio::test(flavor = "multi_thread")]
async fn a_database_outage_under_load_loses_and_doubles_nothing() {
    const EVENTS: usize = 20_000;
    let postgres = PrivatePostgres::start();
    let env = TestEnv::with_services(Services::with_database_server(&postgres.url())).await;
    let scenario = AccountsScenario::generate(&env.id, 300, EVENTS, rand::random());
    // A short connect timeout, so waiting for a connection gives up within the outage (a batch
    // that only waited for the pool would prove no retry).
    let worker = env.spawn(
        "worker",
        &["worker", "account_balances"],
        &[("EVENTLINE_BATCH_MAX_EVENTS", "100"), ("EVENTLINE_CONNECT_TIMEOUT_SECS", "1")],
    );
    env.publish("events.ndjson", &scenario.events);

    wait_until("the worker to pass 2,000 events", || async { env.applied_through("account_balances").await >= 2_000 })
        .await;
    postgres.stop_immediately();
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(worker.running(), "the worker exited while the database was gone: {}", worker.log());
    postgres.start_again();

    // The store's pool reconnects by itself; what it holds now is what committed before the
    // outage, and the worker goes on from there.
    let at_restart = env.applied_through("account_balances").await;
    assert!(at_restart < EVENTS as i64, "the worker finished before the outage; the test proved nothing");
    wait_until("the worker to apply every event", || async {
        env.applied_through("account_balances").await == EVENTS as i64
    })
    .await;
    scenario.assert_projected(&env, &format!("log: {}", worker.log())).await;
    assert!(
        worker.log().contains("Database unavailable; the batch will be retried"),
        "no batch met the outage: {}",
        worker.log()
    );
    assert!(worker.running(), "the worker exited: {}", worker.log());
}
