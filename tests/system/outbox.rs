//! The outbox relay: rows committed by concurrent transactions (some rolled back) reach Kafka,
//! every committed row and no rolled-back one, each key in insertion order, while two relays run
//! and one of them is killed twice.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::Command;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::helpers::{stderr, wait_until, TestEnv};

const WRITERS: usize = 8;
const KEYS_PER_WRITER: usize = 10;
const COMMITTED_PER_WRITER: usize = 1_250;

struct Plan {
    /// One SQL script per writer: its transactions, in order.
    scripts: Vec<String>,
    /// Per key, the committed event ids in insertion order.
    committed: BTreeMap<String, Vec<String>>,
    rolled_back: HashSet<String>,
}

fn plan(test_id: &str, seed: u64) -> Plan {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut scripts = Vec::new();
    let mut committed: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut rolled_back = HashSet::new();
    for writer in 0..WRITERS {
        let keys: Vec<String> = (0..KEYS_PER_WRITER).map(|k| format!("{test_id}-w{writer}-k{k}")).collect();
        let mut script = String::from("\\set ON_ERROR_STOP 1\n");
        let mut written = 0;
        let mut n = 0;
        while written < COMMITTED_PER_WRITER {
            let key = &keys[rng.random_range(0..keys.len())];
            let rollback = rng.random_bool(0.1);
            let rows = rng.random_range(1..=4).min(COMMITTED_PER_WRITER - written);
            let mut values = Vec::new();
            for _ in 0..rows {
                n += 1;
                let opened = !committed.contains_key(key) && !rollback && values.is_empty();
                let id = if rollback { format!("rb-{writer}-{n}") } else { format!("ok-{writer}-{n}") };
                let event = if opened {
                    json!({"specversion": "1.0", "id": id, "source": "/outbox", "type": "accounts.AccountOpened", "subject": key,
                           "data": {"account_id": key, "owner": "o", "currency": "EUR"}})
                } else {
                    json!({"specversion": "1.0", "id": id, "source": "/outbox", "type": "accounts.FundsDeposited", "subject": key,
                           "dataversion": 2, "data": {"account_id": key, "amount_minor": 1 + n, "currency": "EUR", "channel": "transfer"}})
                };
                values.push(format!("('{event}')"));
                if rollback {
                    rolled_back.insert(id);
                } else {
                    committed.entry(key.clone()).or_default().push(id);
                    written += 1;
                }
            }
            let end = if rollback { "ROLLBACK" } else { "COMMIT" };
            script.push_str(&format!(
                "BEGIN;\nINSERT INTO eventline_outbox (event) VALUES {};\n{end};\n",
                values.join(", ")
            ));
        }
        scripts.push(script);
    }
    Plan { scripts, committed, rolled_back }
}

#[tokio::test(flavor = "multi_thread")]
async fn committed_rows_reach_kafka_in_order_per_key_despite_a_killed_relay() {
    let env = TestEnv::new().await;
    let outbox_db = env.database_url.expose().to_string();
    let relay_env = [("EVENTLINE_OUTBOX_DATABASE_URL", outbox_db.as_str())];
    let mut first = env.spawn("relay-a-0", &["outbox-relay", "--install"], &relay_env);
    wait_until("the first relay to install the outbox", || async { first.log().contains("Outbox relay started.") })
        .await;
    let second = env.spawn("relay-b", &["outbox-relay"], &relay_env);

    let plan = plan(&env.id, rand::random());
    let writers: Vec<std::thread::JoinHandle<()>> = plan
        .scripts
        .iter()
        .enumerate()
        .map(|(i, script)| {
            let path = env.write_ndjson(&format!("writer-{i}.sql"), &[]);
            std::fs::write(&path, script).unwrap();
            let url = outbox_db.clone();
            std::thread::spawn(move || {
                let output = Command::new("psql")
                    .args([url.as_str(), "-q", "-f", path.to_str().unwrap()])
                    .output()
                    .expect("psql runs");
                assert!(output.status.success(), "writer failed: {}", String::from_utf8_lossy(&output.stderr));
            })
        })
        .collect();
    let mut pending_at_kills = Vec::new();
    for round in 1..=2 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Kill while rows wait, so the kill interrupts work (the relays may keep up for a while).
        let mut pending = 0;
        for _ in 0..2_000 {
            pending = env.store.outbox_backlog().await.unwrap().0;
            if pending > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        pending_at_kills.push(pending);
        first.kill_hard();
        first = env.spawn(&format!("relay-a-{round}"), &["outbox-relay"], &relay_env);
    }
    for writer in writers {
        writer.join().expect("writer finished");
    }
    assert!(pending_at_kills[0] > 0, "the relay was killed with nothing to do; the test proved nothing");
    let total: usize = plan.committed.values().map(Vec::len).sum();
    assert_eq!(total, WRITERS * COMMITTED_PER_WRITER);

    // Read the topic until every committed id is there.
    let topic = env.topic("accounts.events");
    let mut reader = eventline_kafka::reader::TopicReader::open(
        &env.kafka,
        &topic,
        eventline_kafka::reader::StartAt::Beginning,
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    let mut seen: HashSet<String> = HashSet::new();
    let mut order: HashMap<String, Vec<String>> = HashMap::new();
    let mut records = 0;
    while seen.len() < total {
        let next = tokio::time::timeout(Duration::from_secs(60), reader.next(false)).await;
        let record = next
            .unwrap_or_else(|_| {
                panic!("only {} of {total} committed rows reached Kafka; relay log: {}", seen.len(), second.log())
            })
            .unwrap()
            .expect("following never ends");
        records += 1;
        let event: Value = serde_json::from_slice(record.payload.as_deref().unwrap()).unwrap();
        let id = event["id"].as_str().unwrap().to_string();
        assert!(!plan.rolled_back.contains(&id), "rolled-back row {id} was published");
        // What a consumer applies: the first copy of each id, in offset order.
        if seen.insert(id.clone()) {
            order.entry(event["subject"].as_str().unwrap().to_string()).or_default().push(id);
        }
    }
    for (key, ids) in &plan.committed {
        assert_eq!(order.get(key), Some(ids), "key {key} out of order");
    }
    assert!(records >= total);
    wait_until("the outbox to be drained", || async { env.store.outbox_backlog().await.unwrap() == (0, 0) }).await;
    assert!(second.terminate().success());
    assert!(first.terminate().success());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_row_is_marked_failed_and_holds_its_key_only() {
    let env = TestEnv::new().await;
    let outbox_db = env.database_url.expose().to_string();
    let relay =
        env.spawn("relay", &["outbox-relay", "--install"], &[("EVENTLINE_OUTBOX_DATABASE_URL", outbox_db.as_str())]);
    wait_until("the relay to install the outbox", || async { relay.log().contains("Outbox relay started.") }).await;
    let row = |id: &str, key: &str, currency: &str| {
        format!(
            "('{}')",
            json!({"specversion": "1.0", "id": id, "source": "/o", "type": "accounts.AccountOpened", "subject": key,
                   "data": {"account_id": key, "owner": "o", "currency": currency}})
        )
    };
    let sql = format!(
        "INSERT INTO eventline_outbox (event) VALUES {}, {}, {}",
        row("bad", "held", "euro"),
        row("behind", "held", "EUR"),
        row("free", "other", "EUR")
    );
    let output = Command::new("psql").args([outbox_db.as_str(), "-q", "-c", &sql]).output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    wait_until("the valid row of the other key to be published", || async {
        env.end_offsets("accounts.events").await.iter().sum::<i64>() == 1
    })
    .await;
    wait_until("the failed row to be marked", || async { env.store.outbox_backlog().await.unwrap() == (2, 1) }).await;
    assert!(relay.log().contains("Outbox row refused"), "{}", relay.log());
}
