//! The projection runtime under real conditions: random streams for every reference projection,
//! duplicates and poison events, a paused worker that must be fenced, a database that drops its
//! connections, and a worker killed ten times while another runs throughout.

use std::process::Command;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::events::{deposit, opened, withdrawal};
use crate::helpers::{wait_until, wait_until_reporting, Process, TestEnv};
use crate::scenario::ReferenceScenario;

fn seed() -> u64 {
    rand::random()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_projection_equals_a_recomputation_of_a_random_stream() {
    let env = TestEnv::new().await;
    let seed = seed();
    let scenario = ReferenceScenario::generate(&env.id, 3_000, seed);
    let up = env.spawn("up", &["up"], &[]);
    env.publish("events.ndjson", &scenario.events);
    wait_until("every projection to pass every event", || scenario.all_applied(&env)).await;
    scenario.assert_projected(&env, &format!("seed {seed}; log: {}", up.log())).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicates_apply_once_and_a_poison_event_parks_only_its_key() {
    let env = TestEnv::new().await;
    let (a, b, ghost) = ("acct-a", "acct-b", "acct-ghost");
    let first = [
        opened("open-a", a),
        opened("open-b", b),
        deposit("dep-1", a, 100),
        deposit("dep-1", a, 100),       // the same event published again, in the same batch
        withdrawal("poison", ghost, 5), // no such account: refused, parks the key
        deposit("behind-1", ghost, 7),  // waits behind it
        deposit("dep-b", b, 200),
    ];
    let worker = env.spawn("worker", &["worker", "account_balances"], &[]);
    env.publish("first.ndjson", &first);
    wait_until("the first events to be passed", || async { env.applied_through("account_balances").await == 7 }).await;
    let second = [deposit("dep-1", a, 100), deposit("dep-2", a, 50), deposit("behind-2", ghost, 9)];
    env.publish("second.ndjson", &second);
    wait_until("the second events to be passed", || async { env.applied_through("account_balances").await == 10 })
        .await;

    let rows = env.balances().await;
    assert_eq!(rows, [(a.to_string(), 150, 3), (b.to_string(), 200, 2)], "log: {}", worker.log());

    let dead: Vec<(String, String, String)> = env
        .store
        .dead_letters("account_balances")
        .await
        .unwrap()
        .into_iter()
        .map(|d| (d.event_id.unwrap_or_default(), d.reason_kind, d.reason))
        .collect();
    let parked = format!("key {ghost} is parked behind an earlier dead letter");
    assert_eq!(
        dead,
        [
            ("poison".to_string(), "rejected".to_string(), format!("account {ghost} does not exist")),
            ("behind-1".to_string(), "parked".to_string(), parked.clone()),
            ("behind-2".to_string(), "parked".to_string(), parked),
        ]
    );
    assert_eq!(env.store.parked_keys("account_balances").await.unwrap(), [ghost]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_held_up_in_one_lane_does_not_hold_the_others() {
    let env = TestEnv::new().await;
    let accounts: Vec<String> = (0..12).map(|n| format!("acct-{n}")).collect();
    let worker = env.spawn("worker", &["worker", "account_balances"], &[("EVENTLINE_WORKER_LANES", "3")]);
    let openings: Vec<Value> = accounts.iter().map(|a| opened(&format!("open-{a}"), a)).collect();
    env.publish("open.ndjson", &openings);
    wait_until("the accounts to open", || async { env.applied_through("account_balances").await == 12 }).await;

    // Another session holds acct-0's row: the batch with its deposit waits at its load.
    let mut holder = Command::new("psql")
        .args([env.database_url.expose(), "-XAtq", "-c", "BEGIN", "-c"])
        .arg("SELECT 1 FROM account_balances WHERE account_id = 'acct-0' FOR UPDATE")
        .args(["-c", "SELECT pg_sleep(120)"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("psql runs");
    wait_until("the row to be held", || async {
        env.psql("SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(120)'") == "1"
    })
    .await;
    let deposits: Vec<Value> = accounts.iter().map(|a| deposit(&format!("dep-{a}"), a, 10)).collect();
    env.publish("deposits.ndjson", &deposits);

    // With one batch at a time nothing would be applied until the row is released.
    wait_until_reporting(
        "deposits of other lanes to be applied while acct-0's lane waits",
        || async { env.balances().await.iter().any(|(_, balance, _)| *balance == 10) },
        || async { format!("balances {:?}; log: {}", env.balances().await, worker.log()) },
    )
    .await;
    let held = env.balances().await;
    assert_eq!(held.iter().find(|(a, ..)| a == "acct-0").map(|(_, balance, _)| *balance), Some(0), "{held:?}");

    // Ending the holding session (a killed psql would leave its backend asleep with the lock).
    env.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(120)'");
    holder.wait().expect("psql ends");
    wait_until("every deposit to be applied", || async { env.applied_through("account_balances").await == 24 }).await;
    let rows = env.balances().await;
    assert!(rows.iter().all(|(_, balance, applied)| *balance == 10 && *applied == 2), "{rows:?}");
    assert!(worker.terminate().success());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_record_on_the_topic_is_dead_lettered_and_parks_its_key() {
    let env = TestEnv::new().await;
    // Produced around eventline's validation, as a foreign producer might.
    let topic = env.topic("accounts.events");
    let worker = env.spawn("worker", &["worker", "account_balances"], &[]);
    env.publish("open.ndjson", &[opened("open-x", "x")]);
    let producer =
        eventline_kafka::producer::EventProducer::connect(&env.kafka, Duration::from_secs(10), Duration::from_secs(10))
            .await
            .unwrap();
    for (key, payload) in [("x", &b"{not json"[..]), ("x", br#"{"specversion":"1.0"}"#)] {
        let record = eventline_kafka::producer::OutgoingRecord { topic: &topic, key, payload, headers: &[] };
        producer.send(record).await.unwrap();
    }
    env.publish("later.ndjson", &[deposit("later", "x", 5)]);
    wait_until("all four records to be passed", || async { env.applied_through("account_balances").await == 4 }).await;
    let dead: Vec<(String, String)> = env
        .store
        .dead_letters("account_balances")
        .await
        .unwrap()
        .into_iter()
        .map(|d| (d.reason_kind, d.reason))
        .collect();
    assert_eq!(
        dead,
        [
            ("undecodable".to_string(), "not valid JSON: key must be a string at line 1 column 2".to_string()),
            ("invalid".to_string(), "missing required attribute `id` (at /id)".to_string()),
            ("parked".to_string(), "key x is parked behind an earlier dead letter".to_string()),
        ],
        "log: {}",
        worker.log()
    );
    assert_eq!(
        eventline_reference::store::account_balances::account_balances(&env.store).await.unwrap()[0].balance_minor,
        0,
        "the later deposit waits"
    );
}

fn signal(process: &Process, signal: &str) {
    let status = Command::new("kill").args([signal, &process.pid().to_string()]).status().unwrap();
    assert!(status.success(), "kill {signal} failed");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paused_worker_cannot_commit_after_its_partitions_moved() {
    pause_a_worker_past_its_session("classic").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paused_worker_cannot_commit_after_its_partitions_moved_with_the_consumer_protocol() {
    pause_a_worker_past_its_session("consumer").await;
}

/// Worker A is paused (SIGSTOP) with a batch in hand until its partitions move to worker B, then
/// resumed: its commit is fenced and nothing is applied twice.
async fn pause_a_worker_past_its_session(protocol: &str) {
    let env = TestEnv::new().await;
    let scenario = crate::helpers::AccountsScenario::generate(&env.id, 20, 300, seed());
    // A collects for 4 s before it writes, so it is paused (2 s in) with a batch in hand, and the
    // batch is due while it is paused: resumed, it writes before it hears of the rebalance
    // (which would make it drop the batch instead), so the fence is what stops it.
    let slow = [
        ("EVENTLINE_BATCH_MAX_WAIT_MS", "4000"),
        ("EVENTLINE_BATCH_MAX_EVENTS", "100000"),
        ("EVENTLINE_GROUP_PROTOCOL", protocol),
    ];
    let worker_a = env.spawn("worker-a", &["worker", "account_balances"], &slow);
    wait_until("worker A to own the partitions", || async { worker_a.log().contains("Partitions assigned.") }).await;
    env.publish("events.ndjson", &scenario.events);
    tokio::time::sleep(Duration::from_secs(2)).await; // let A fetch the records into its batch
    signal(&worker_a, "-STOP");

    let worker_b = env.spawn("worker-b", &["worker", "account_balances"], &[("EVENTLINE_GROUP_PROTOCOL", protocol)]);
    wait_until("worker B to take over and apply everything", || async {
        env.applied_through("account_balances").await == 300
    })
    .await;
    signal(&worker_a, "-CONT");
    wait_until("worker A to find itself fenced", || async {
        worker_a.log().contains("Stored offset moved under this worker")
    })
    .await;
    scenario.assert_projected(&env, &format!("A: {}\nB: {}", worker_a.log(), worker_b.log())).await;
    assert!(worker_a.terminate().success());
    assert!(worker_b.terminate().success());
}

#[tokio::test(flavor = "multi_thread")]
async fn workers_wait_out_dropped_database_connections() {
    let env = TestEnv::new().await;
    let seed = seed();
    let scenario = ReferenceScenario::generate(&env.id, 2_000, seed);
    let up = env.spawn("up", &["up"], &[("EVENTLINE_BATCH_MAX_EVENTS", "50")]);
    let chunks: Vec<Vec<Value>> = scenario.events.chunks(1_000).map(<[Value]>::to_vec).collect();
    let commands: Vec<Command> = chunks
        .iter()
        .enumerate()
        .map(|(i, c)| env.command(&["publish", env.write_ndjson(&format!("c{i}.ndjson"), c).to_str().unwrap()]))
        .collect();
    let publisher = std::thread::spawn(move || {
        for mut command in commands {
            assert!(command.output().unwrap().status.success());
        }
    });
    // Drop every connection to the test's database, again and again, while events flow.
    let terminate = format!(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '{}' AND pid <> pg_backend_pid()",
        env.database_url.database_name()
    );
    let server = env.database_url.with_database("postgres");
    let mut dropped = 0;
    for _ in 0..60 {
        let output =
            Command::new("psql").args([server.expose(), "-qAt", "-c", &terminate]).output().expect("psql runs");
        dropped += String::from_utf8_lossy(&output.stdout).trim().parse::<u32>().unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    publisher.join().unwrap();
    wait_until_reporting(
        "every projection to pass every event",
        || scenario.all_applied(&env),
        || async { format!("{}\nlog: {}", scenario.progress(&env).await, up.log()) },
    )
    .await;
    scenario.assert_projected(&env, &format!("seed {seed}; log: {}", up.log())).await;
    assert!(dropped > 0, "no connection was dropped; the test proved nothing");
    assert!(
        up.log().contains("Database unavailable; the batch will be retried"),
        "no batch met a dropped connection: {}",
        up.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_killed_ten_times_beside_a_steady_one_loses_and_doubles_nothing() {
    kill_a_worker_ten_times("classic").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_killed_ten_times_beside_a_steady_one_loses_and_doubles_nothing_with_the_consumer_protocol() {
    kill_a_worker_ten_times("consumer").await;
}

/// Two `up` processes in the same groups under `protocol` (`classic` or `consumer`, KIP-848):
/// one runs throughout, the other is killed (SIGKILL) and restarted ten times while the events
/// are published; every projection ends exact, and the dead letters are exactly the poison.
async fn kill_a_worker_ten_times(protocol: &str) {
    let env = TestEnv::new().await;
    let protocol_env = [("EVENTLINE_GROUP_PROTOCOL", protocol)];
    let seed = seed();
    let mut scenario = ReferenceScenario::generate(&env.id, 16_700, seed);
    // Poison: deposits to accounts never opened, and completions in projects never created;
    // each key has no later event, so the dead letters must be exactly these.
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut poison: Vec<(String, &str)> = Vec::new();
    for i in 0..20 {
        let position = rng.random_range(0..scenario.events.len());
        let (id, projection, event) = if i % 2 == 0 {
            let id = format!("poison-{i}");
            (id.clone(), "account_balances", deposit(&id, &format!("ghost-account-{i}"), 10))
        } else {
            let id = format!("poison-{i}");
            let project = format!("ghost-project-{i}");
            let event = json!({"specversion": "1.0", "id": id, "source": "/t", "type": "projects.TaskCompleted",
                               "subject": project, "data": {"project_id": project, "task_id": "t"}});
            (id, "project_progress", event)
        };
        *scenario
            .per_topic
            .get_mut(if projection == "account_balances" { "accounts.events" } else { "projects.events" })
            .unwrap() += 1;
        scenario.events.insert(position, event);
        poison.push((id, projection));
    }
    let total = scenario.events.len();
    assert!(total >= 50_000);

    let steady = env.spawn("steady", &["up"], &protocol_env);
    let mut victim = env.spawn("victim-0", &["up"], &protocol_env);
    let chunks: Vec<Vec<Value>> = scenario.events.chunks(total / 10 + 1).map(<[Value]>::to_vec).collect();
    for (round, chunk) in chunks.iter().enumerate() {
        env.publish(&format!("chunk-{round}.ndjson"), chunk);
        tokio::time::sleep(Duration::from_millis(rng.random_range(200..2_000))).await;
        victim.kill_hard();
        victim = env.spawn(&format!("victim-{}", round + 1), &["up"], &protocol_env);
    }
    wait_until_reporting(
        "every projection to pass every event",
        || scenario.all_applied(&env),
        || scenario.progress(&env),
    )
    .await;

    let context = format!("{protocol} protocol, seed {seed}; steady: {}", steady.log());
    assert!(steady.log().contains(&format!("group_protocol=\"{protocol}\"")), "{context}");
    scenario.assert_projected_except_dead_letters(&env, &context).await;
    for projection in ["account_balances", "project_progress"] {
        let mut dead: Vec<String> = env
            .store
            .dead_letters(projection)
            .await
            .unwrap()
            .into_iter()
            .map(|d| d.event_id.unwrap_or_default())
            .collect();
        dead.sort();
        let mut expected: Vec<String> =
            poison.iter().filter(|(_, p)| *p == projection).map(|(id, _)| id.clone()).collect();
        expected.sort();
        assert_eq!(dead, expected, "{projection}: the dead letters are exactly the poison events");
    }
    assert!(steady.terminate().success());
    assert!(victim.terminate().success());
}
