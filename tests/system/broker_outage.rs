//! A broker that goes away and comes back, on a private Apache Kafka of the test's own (the
//! shared one serves the other tests): the gateway answers 503 promptly while it is gone and
//! accepts again after; under load, a broker killed with SIGKILL mid-stream and started again
//! loses and doubles nothing, and nothing of eventline is restarted.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use eventline_core::config::{KafkaSettings, Settings};
use serde_json::{json, Value};

use crate::helpers::{stderr, wait_until, wait_until_reporting, AccountsScenario, HttpProcess, TestEnv};
use crate::private_services::PrivateBroker;

fn kafka_settings(brokers: &str) -> KafkaSettings {
    let env = [("EVENTLINE_KAFKA_BROKERS".to_string(), brokers.to_string())].into_iter().collect();
    Settings::load_from(None, &env).expect("valid settings").kafka
}

/// Creates this test's topics on the private broker.
fn create_topics(env: &TestEnv, brokers: &str) {
    let topics =
        env.command(&["topics", "create", "--partitions", "6"]).env("EVENTLINE_KAFKA_BROKERS", brokers).output();
    let topics = topics.expect("eventline runs");
    assert!(topics.status.success(), "{}", stderr(&topics));
}

async fn readyz_reports_the_broker(http: &HttpProcess) -> bool {
    let response = http.client.get(format!("{}/readyz", http.base)).send().await.unwrap();
    response.status() == 503 && response.text().await.unwrap().contains("the broker is not reachable")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_gateway_answers_503_promptly_while_the_broker_is_gone_and_recovers() {
    let env = TestEnv::new().await;
    let mut broker = PrivateBroker::start();
    let brokers = broker.brokers();
    create_topics(&env, &brokers);

    let settings = [("EVENTLINE_KAFKA_BROKERS", brokers.as_str()), ("EVENTLINE_GATEWAY_PRODUCE_TIMEOUT_MS", "2000")];
    let gateway = env.spawn_http("gateway", &["gateway", "--insecure-no-auth"], &settings).await;
    let event = |id: &str| {
        json!({"specversion": "1.0", "id": id, "source": "/t", "type": "accounts.AccountOpened", "subject": id,
               "data": {"account_id": id, "owner": "o", "currency": "EUR"}})
        .to_string()
    };
    let headers = [("content-type", "application/cloudevents+json")];
    assert_eq!(gateway.post(&headers, event("before")).await.status(), 202);

    broker.kill();
    let asked = Instant::now();
    let refused = gateway.post(&headers, event("during")).await;
    let waited = asked.elapsed();
    assert_eq!(refused.status(), 503);
    assert!(waited < Duration::from_secs(15), "the answer took {waited:?}: the gateway hung");
    assert_eq!(refused.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string()).as_deref(), Some("1"));
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["type"], "https://eventline.dev/problems/broker-unavailable");
    wait_until("readyz to report the broker", || readyz_reports_the_broker(&gateway)).await;

    broker.start_again();
    wait_until("the gateway to accept events again", || async {
        gateway.post(&headers, event("after")).await.status() == 202
    })
    .await;
    assert!(gateway.process.log().contains("Broker reachable again"), "{}", gateway.process.log());
}

/// Posts `events` one at a time, in order, each until it is accepted (202), as an upstream
/// system that must not lose an event does. Returns how many answers were not 202.
async fn post_until_accepted(http: Arc<HttpProcess>, events: Vec<Value>, posted: Arc<AtomicUsize>) -> usize {
    let mut refusals = 0;
    for event in events {
        loop {
            let response = http
                .client
                .post(format!("{}/v1/events", http.base))
                .header("content-type", "application/cloudevents+json")
                .body(event.to_string())
                .send()
                .await;
            match response {
                Ok(response) if response.status() == 202 => break,
                Ok(response) => {
                    assert_eq!(response.status(), 503, "only the outage may refuse an event");
                    refusals += 1;
                }
                Err(error) => panic!("the gateway must answer while the broker is away: {error}"),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        posted.fetch_add(1, Ordering::Relaxed);
    }
    refusals
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broker_killed_under_load_loses_and_doubles_nothing() {
    const EVENTS: usize = 4_000;
    let env = TestEnv::new().await;
    let mut broker = PrivateBroker::start();
    let brokers = broker.brokers();
    create_topics(&env, &brokers);
    let settings = [("EVENTLINE_KAFKA_BROKERS", brokers.as_str()), ("EVENTLINE_GATEWAY_PRODUCE_TIMEOUT_MS", "2000")];
    let up = env.spawn_http("up", &["up", "--insecure-no-auth"], &settings).await;

    // Eight upstream clients, each with its own accounts, each posting its events in order.
    let scenario = AccountsScenario::generate(&env.id, 40, EVENTS, rand::random());
    let mut lanes: BTreeMap<usize, Vec<Value>> = BTreeMap::new();
    for event in &scenario.events {
        let account = event["subject"].as_str().unwrap();
        let index: usize = account.rsplit('-').next().unwrap().parse().unwrap();
        lanes.entry(index % 8).or_default().push(event.clone());
    }
    let up = Arc::new(up);
    let posted = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> =
        lanes.into_values().map(|lane| tokio::spawn(post_until_accepted(up.clone(), lane, posted.clone()))).collect();

    wait_until("a third of the events to be accepted", || async { posted.load(Ordering::Relaxed) >= EVENTS / 3 }).await;
    broker.kill();
    let killed_at = posted.load(Ordering::Relaxed);
    wait_until("readyz to explain the outage", || readyz_reports_the_broker(&up)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    broker.start_again();

    let mut refusals = 0;
    for client in clients {
        refusals += client.await.expect("a client finished");
    }
    assert!(killed_at < EVENTS, "every event was accepted before the broker was killed; the test proved nothing");
    assert!(refusals > 0, "no request met the outage; the test proved nothing");

    // Every record on the topic, repeats of events refused during the outage included, passed.
    let kafka = kafka_settings(&brokers);
    let topic = env.topic("accounts.events");
    wait_until_reporting(
        "the workers to pass every record on the topic",
        || async {
            let ends = eventline_kafka::admin::watermarks(&kafka, &topic, Duration::from_secs(5)).await;
            let end: i64 = ends.map(|w| w.iter().map(|w| w.high).sum()).unwrap_or(-1);
            end >= EVENTS as i64 && env.applied_through("account_balances").await == end
        },
        || async { format!("broker log:\n{}\neventline log:\n{}", broker.log(), up.process.log()) },
    )
    .await;
    scenario.assert_projected(&env, &format!("killed after {killed_at} accepted; log: {}", up.process.log())).await;
    assert!(up.process.running(), "eventline up exited: {}", up.process.log());
    let readyz = format!("{}/readyz", up.base);
    wait_until("readyz to be ready again", || async {
        up.client.get(&readyz).send().await.is_ok_and(|r| r.status() == 200)
    })
    .await;
}
