//! A worker stopped halfway through 10,000 events, gracefully or with kill -9, and started again
//! still ends with exact balances: nothing lost, nothing applied twice.

use crate::helpers::{stderr, wait_until, AccountsScenario, TestEnv};

const EVENTS: usize = 10_000;
const CHUNKS: usize = 10;

#[derive(Clone, Copy, Debug)]
enum Stop {
    Terminate,
    Kill,
}

async fn stop_halfway_and_resume(stop: Stop) {
    let env = TestEnv::new().await;
    let scenario = AccountsScenario::generate(&env.id, 200, EVENTS, 3);
    let files: Vec<_> = scenario
        .events
        .chunks(EVENTS / CHUNKS)
        .enumerate()
        .map(|(i, chunk)| env.write_ndjson(&format!("chunk-{i}.ndjson"), chunk))
        .collect();

    // Small batches, so the worker is mid-stream when it is stopped.
    let batch_env = [("EVENTLINE_BATCH_MAX_EVENTS", "50")];
    let first = env.spawn("worker-1", &["worker", "account_balances"], &batch_env);

    // Publish chunk by chunk while the worker runs.
    let publisher = {
        let commands: Vec<_> = files.iter().map(|f| env.command(&["publish", f.to_str().unwrap()])).collect();
        std::thread::spawn(move || {
            for mut command in commands {
                let output = command.output().expect("publish runs");
                assert!(output.status.success(), "publish failed: {}", stderr(&output));
            }
        })
    };

    wait_until("the first worker to pass 2,000 events", || async {
        env.applied_through("account_balances").await >= 2_000
    })
    .await;
    let status = match stop {
        Stop::Terminate => first.terminate(),
        Stop::Kill => first.kill_hard(),
    };
    let at_stop = env.applied_through("account_balances").await;
    assert!(at_stop < EVENTS as i64, "the worker finished before it was stopped ({at_stop}); the test proves nothing");
    match stop {
        Stop::Terminate => assert!(status.success(), "a terminated worker exits cleanly, got {status}"),
        Stop::Kill => assert!(!status.success()),
    }

    let second = env.spawn("worker-2", &["worker", "account_balances"], &batch_env);
    publisher.join().expect("all chunks published");
    assert_eq!(env.end_offsets("accounts.events").await.iter().sum::<i64>(), EVENTS as i64);
    wait_until("the second worker to apply every event", || async {
        env.applied_through("account_balances").await == EVENTS as i64
    })
    .await;

    let context = format!("stopped with {stop:?} at {at_stop}; second worker log: {}", second.log());
    scenario.assert_projected(&env, &context).await;
    let applied: i64 = AccountsScenario::actual(&env.store).await.values().map(|(_, n, _)| n).sum();
    assert_eq!(applied, EVENTS as i64, "every event applied exactly once");
    assert!(second.terminate().success());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_terminated_worker_resumes_without_loss_or_duplicates() {
    stop_halfway_and_resume(Stop::Terminate).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_worker_resumes_without_loss_or_duplicates() {
    stop_halfway_and_resume(Stop::Kill).await;
}
