//! A broker that goes away and comes back, on a private Tansu of this test (the shared one serves
//! the other tests): the gateway answers 503 promptly while it is gone and accepts again after.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{stderr, wait_until, TestEnv};

/// A Tansu broker of this test's own, on its own port and data folder.
struct PrivateBroker {
    child: Child,
}

impl PrivateBroker {
    fn start(port: u16, dir: &std::path::Path) -> Self {
        let tansu = std::env::var("HOME")
            .map(|h| format!("{h}/.cargo/bin/tansu"))
            .ok()
            .filter(|p| std::path::Path::new(p).exists())
            .unwrap_or_else(|| "tansu".into());
        let url = format!("tcp://127.0.0.1:{port}");
        let log = std::fs::File::create(dir.join("tansu.log")).unwrap();
        let child = Command::new(tansu)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--storage-engine",
                "sqlite://tansu.db",
            ])
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("tansu runs (scripts/services.sh installs it)");
        Self { child }
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_gateway_answers_503_promptly_while_the_broker_is_gone_and_recovers() {
    let env = TestEnv::new().await;
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let brokers = format!("127.0.0.1:{port}");
    let broker = PrivateBroker::start(port, dir.path());
    wait_until("the private broker to listen", || async { port_open(port) }).await;
    let topics = env.command(&["topics", "create"]).env("EVENTLINE_KAFKA_BROKERS", &brokers).output().unwrap();
    assert!(topics.status.success(), "{}", stderr(&topics));

    let settings = [("EVENTLINE_KAFKA_BROKERS", brokers.as_str()), ("EVENTLINE_GATEWAY_PRODUCE_TIMEOUT_MS", "2000")];
    let gateway = env.spawn_http("gateway", &["gateway", "--insecure-no-auth"], &settings).await;
    let event = |id: &str| {
        json!({"specversion": "1.0", "id": id, "source": "/t", "type": "accounts.AccountOpened", "subject": id,
               "data": {"account_id": id, "owner": "o", "currency": "EUR"}})
        .to_string()
    };
    let headers = [("content-type", "application/cloudevents+json")];
    assert_eq!(gateway.post(&headers, event("before")).await.status(), 202);

    drop(broker);
    let asked = Instant::now();
    let refused = gateway.post(&headers, event("during")).await;
    let waited = asked.elapsed();
    assert_eq!(refused.status(), 503);
    assert!(waited < Duration::from_secs(15), "the answer took {waited:?}: the gateway hung");
    assert_eq!(refused.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string()).as_deref(), Some("1"));
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["type"], "https://eventline.dev/problems/broker-unavailable");
    let readyz = format!("{}/readyz", gateway.base);
    wait_until("readyz to report the broker", || async {
        let response = gateway.client.get(&readyz).send().await.unwrap();
        response.status() == 503 && response.text().await.unwrap().contains("the broker is not reachable")
    })
    .await;

    let _broker = PrivateBroker::start(port, dir.path());
    wait_until("the gateway to accept events again", || async {
        gateway.post(&headers, event("after")).await.status() == 202
    })
    .await;
    assert!(gateway.process.log().contains("Broker reachable again"), "{}", gateway.process.log());
}
