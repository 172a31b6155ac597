//! PostgreSQL going away under load, on a private cluster of the test's own (the shared one
//! serves the other tests): stopped at once (`pg_ctl stop -m immediate`, a crash to its clients)
//! while a worker applies a stream, started again seconds later. The worker retries the batch
//! in hand, moves no offset while the database is gone, and ends exact: nothing lost, nothing
//! doubled, no restart. And a connection dropped while a process starts is waited out too.

use std::time::Duration;

use eventline_store::sqlx;

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

/// The HTTP process's start-up checks migrations first. Held up there by a lock on the
/// migrations table, its connection is dropped (what an operator's `pg_terminate_backend`, a
/// failover or a restarting pooler does): the process waits it out and serves, as workers do.
#[tokio::test(flavor = "multi_thread")]
async fn a_connection_dropped_while_the_http_process_starts_is_waited_out() {
    let env = TestEnv::new().await;
    let mut lock = env.store.pool().begin().await.unwrap();
    sqlx::query("LOCK TABLE _sqlx_migrations IN ACCESS EXCLUSIVE MODE").execute(&mut *lock).await.unwrap();
    let dropper = tokio::spawn({
        let pool = env.store.pool().clone();
        async move {
            // The start-up's query, waiting on the lock.
            let waiting = "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
                           AND wait_event_type = 'Lock' AND query LIKE '%_sqlx_migrations%'";
            let pid: i32 = loop {
                if let Some(pid) = sqlx::query_scalar(waiting).fetch_optional(&pool).await.unwrap() {
                    break pid;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            let dropped: bool =
                sqlx::query_scalar("SELECT pg_terminate_backend($1)").bind(pid).fetch_one(&pool).await.unwrap();
            assert!(dropped, "the waiting connection was not dropped");
            lock.rollback().await.unwrap();
        }
    });
    let api = env.spawn_http("api", &["api"], &[]).await;
    dropper.await.unwrap();
    let log = api.process.log();
    assert!(log.contains("Database unavailable while checking migrations; retrying."), "{log}");
    let answer = api.get("/v1/tables/account_balances").await;
    assert_eq!(answer.status(), 200, "{}", api.process.log());
    assert!(api.process.running(), "{}", api.process.log());
}
