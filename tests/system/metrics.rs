//! `/metrics` in the Prometheus text format, scraped after known traffic: names follow the
//! conventions, labels stay low-cardinality, values match what was sent.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::events::opened;
use crate::helpers::{wait_until, HttpProcess, TestEnv};

/// One sample: name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

/// Parses the text format's sample lines (comments skipped).
fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("a sample has a value");
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => {
                    let labels = rest
                        .trim_end_matches('}')
                        .split("\",")
                        .filter(|pair| !pair.is_empty())
                        .map(|pair| {
                            let (k, v) = pair.split_once('=').expect("label=value");
                            (k.to_string(), v.trim_matches('"').to_string())
                        })
                        .collect();
                    (name.to_string(), labels)
                }
                None => (series.to_string(), BTreeMap::new()),
            };
            (name, labels, value.parse().expect("a number"))
        })
        .collect()
}

fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|(n, l, _)| n == name && labels.iter().all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v)))
        .map(|(_, _, v)| *v)
}

async fn scrape(up: &HttpProcess) -> (String, Vec<Sample>) {
    scrape_at(&up.client, &up.base).await
}

async fn scrape_at(client: &reqwest::Client, base: &str) -> (String, Vec<Sample>) {
    let response = client.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_string();
    assert_eq!(content_type, "text/plain; version=0.0.4");
    let text = response.text().await.unwrap();
    let samples = parse(&text);
    (text, samples)
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_requests_and_applied_events_by_route_and_projection() {
    let env = TestEnv::new().await;
    let up = env.spawn_http("up", &["up"], &[]).await;
    let (_, key) = env.create_key("metrics", &["accounts.*"]);
    let bearer = format!("Bearer {key}");
    for i in 0..5 {
        let event = opened(&format!("m{i}"), &format!("acct-{i}"));
        let response = up
            .post(&[("content-type", "application/cloudevents+json"), ("authorization", &bearer)], event.to_string())
            .await;
        assert_eq!(response.status(), 202);
    }
    let refused =
        up.post(&[("content-type", "application/cloudevents+json")], opened("m9", "acct-9").to_string()).await;
    assert_eq!(refused.status(), 401);
    for i in 0..3 {
        assert_eq!(up.get(&format!("/v1/accounts/acct-missing-{i}")).await.status(), 404);
    }
    wait_until("the five events to be applied", || async { env.applied_through("account_balances").await == 5 }).await;

    let (text, samples) = scrape(&up).await;
    let requests = |route: &str, method: &str, status: &str| {
        value(&samples, "eventline_http_requests_total", &[("route", route), ("method", method), ("status", status)])
    };
    assert_eq!(requests("/v1/events", "POST", "202"), Some(5.0), "{text}");
    assert_eq!(requests("/v1/events", "POST", "401"), Some(1.0), "{text}");
    // The route template, not the path: one series for every account id.
    assert_eq!(requests("/v1/accounts/{account_id}", "GET", "404"), Some(3.0), "{text}");
    assert!(!text.contains("acct-missing"), "no id becomes a label");
    let post_count = value(
        &samples,
        "eventline_http_request_duration_seconds_count",
        &[("route", "/v1/events"), ("method", "POST")],
    );
    assert_eq!(post_count, Some(6.0));
    let topic = env.topic("accounts.events");
    assert_eq!(value(&samples, "eventline_producer_acknowledged_total", &[("topic", &topic)]), Some(5.0), "{text}");
    assert_eq!(value(&samples, "eventline_producer_queue_messages", &[]), Some(0.0), "all acknowledged");
    assert_eq!(value(&samples, "eventline_producer_delivery_errors_total", &[]), None, "none failed");
    let applied = |name: &str| value(&samples, name, &[("projection", "account_balances")]);
    assert_eq!(applied("eventline_events_consumed_total"), Some(5.0), "{text}");
    assert_eq!(applied("eventline_events_applied_total"), Some(5.0));
    assert_eq!(applied("eventline_events_dead_lettered_total"), Some(0.0));
    let batches = applied("eventline_batch_apply_duration_seconds_count").expect("batches are timed");
    assert!(batches >= 1.0);
    assert_eq!(applied("eventline_batch_size_events_sum"), Some(5.0));
    assert_eq!(
        value(&samples, "eventline_batch_size_events_bucket", &[("projection", "account_balances"), ("le", "+Inf")]),
        Some(batches)
    );

    // Conventions: counters end in _total, durations are histograms in seconds.
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let (name, kind) = (parts[2], parts[3]);
        assert!(name.starts_with("eventline_"), "{line}");
        match kind {
            "counter" => assert!(name.ends_with("_total"), "{line}"),
            "histogram" => assert!(name.ends_with("_seconds") || name.ends_with("_events"), "{line}"),
            "gauge" => assert!(!name.ends_with("_total"), "{line}"),
            other => panic!("unexpected metric type {other}: {line}"),
        }
    }
}

fn sum(samples: &[Sample], name: &str, projection: &str) -> f64 {
    samples.iter().filter(|(n, l, _)| n == name && l["projection"] == projection).map(|(_, _, v)| v).sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn freshness_gauges_show_lag_without_a_worker_and_clear_once_one_runs() {
    let env = TestEnv::new().await;
    let api = env.spawn_http("api", &["api"], &[]).await;
    env.publish("events.ndjson", &[opened("g1", "acct-1"), opened("g2", "acct-2"), opened("g3", "acct-3")]);
    wait_until("the gauges to show three events behind", || async {
        let (_, samples) = scrape(&api).await;
        sum(&samples, "eventline_projection_lag_events", "account_balances") == 3.0
            && sum(&samples, "eventline_projection_end_offset", "account_balances") == 3.0
    })
    .await;
    let (text, samples) = scrape(&api).await;
    let oldest = samples
        .iter()
        .filter(|(n, l, _)| n == "eventline_projection_lag_seconds" && l["projection"] == "account_balances")
        .map(|(_, _, v)| *v)
        .fold(0.0, f64::max);
    assert!(oldest > 0.0, "the oldest unapplied event has an age: {text}");
    assert_eq!(value(&samples, "eventline_projection_generation", &[("projection", "account_balances")]), Some(1.0));

    let worker = env.spawn("worker", &["worker", "account_balances"], &[]);
    wait_until("the gauges to show the projection caught up", || async {
        let (_, samples) = scrape(&api).await;
        sum(&samples, "eventline_projection_lag_events", "account_balances") == 0.0
            && sum(&samples, "eventline_projection_stored_offset", "account_balances") == 3.0
            && sum(&samples, "eventline_projection_lag_seconds", "account_balances") == 0.0
    })
    .await;
    drop(worker);
}

/// The `eventline_*` metric names an expression uses.
fn used_metrics(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = expr;
    while let Some(start) = rest.find("eventline_") {
        let tail = &rest[start..];
        let end =
            tail.find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')).unwrap_or(tail.len());
        names.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

/// Every series name a scrape can hold: each declared metric, and a histogram's parts.
fn exported(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let parts: Vec<&str> = line.split_whitespace().collect();
        names.insert(parts[2].to_string());
        if parts[3] == "histogram" {
            for suffix in ["_bucket", "_sum", "_count"] {
                names.insert(format!("{}{suffix}", parts[2]));
            }
        }
    }
    names
}

#[tokio::test(flavor = "multi_thread")]
async fn the_alert_rules_and_the_dashboard_are_well_formed_and_use_only_exported_metrics() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("observability");
    // The rule file is JSON, which is YAML too: Prometheus loads it, and it is checked here
    // without a YAML parser (promtool is not installed here).
    let rules: Value = serde_json::from_str(&std::fs::read_to_string(root.join("alerts.yml")).unwrap()).unwrap();
    let mut used = BTreeSet::new();
    let mut alerts = Vec::new();
    for group in rules["groups"].as_array().expect("groups") {
        assert!(!group["name"].as_str().unwrap().is_empty());
        for rule in group["rules"].as_array().expect("rules") {
            let name = rule["alert"].as_str().expect("an alert name");
            let expr = rule["expr"].as_str().expect("an expression");
            let duration = rule["for"].as_str().expect("a for duration");
            assert!(
                duration.ends_with(['s', 'm', 'h']) && duration[..duration.len() - 1].parse::<u32>().is_ok(),
                "{name}: {duration}"
            );
            assert!(["page", "ticket"].contains(&rule["labels"]["severity"].as_str().unwrap()), "{name}");
            assert!(!rule["annotations"]["summary"].as_str().unwrap().is_empty(), "{name}");
            assert_eq!(expr.matches('(').count(), expr.matches(')').count(), "{name}: {expr}");
            used.extend(used_metrics(expr));
            alerts.push(name.to_string());
        }
    }
    assert_eq!(
        alerts,
        [
            "EventlineProjectionLagging",
            "EventlineDeadLettersGrowing",
            "EventlineGateway5xx",
            "EventlineOutboxBacklogOld",
            "EventlinePartitionUnowned"
        ]
    );
    let prometheus = std::fs::read_to_string(root.join("prometheus.yml")).unwrap();
    for needed in ["/etc/prometheus/alerts.yml", "eventline:8080", "eventline-outbox-relay:9101"] {
        assert!(prometheus.contains(needed), "{needed} in prometheus.yml");
    }
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("grafana/dashboards/eventline.json")).unwrap())
            .unwrap();
    assert_eq!(dashboard["uid"], "eventline");
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.len() >= 6);
    for panel in panels {
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{}", panel["title"]);
        for target in targets {
            used.extend(used_metrics(target["expr"].as_str().unwrap()));
        }
    }

    // After traffic, a running `up` and an outbox relay export every one of them.
    let env = TestEnv::new().await;
    let up = env.spawn_http("up", &["up"], &[]).await;
    let relay_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let relay_base = format!("http://127.0.0.1:{relay_port}");
    let relay_addr = format!("127.0.0.1:{relay_port}");
    let _relay = env.spawn("relay", &["outbox-relay", "--install", "--listen", &relay_addr], &[]);
    let (_, key) = env.create_key("metrics", &["accounts.*"]);
    let bearer = format!("Bearer {key}");
    let response = up
        .post(
            &[("content-type", "application/cloudevents+json"), ("authorization", &bearer)],
            opened("d1", "acct-1").to_string(),
        )
        .await;
    assert_eq!(response.status(), 202);
    wait_until("every metric the rules and the dashboard use to be exported", || async {
        let (text, _) = scrape(&up).await;
        let mut all = exported(&text);
        if let Ok(response) = up.client.get(format!("{relay_base}/metrics")).send().await {
            all.extend(exported(&response.text().await.unwrap()));
        }
        used.is_subset(&all)
    })
    .await;
    assert!(used.len() >= 8, "{used:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_serves_health_and_metrics_and_its_counters_start_again_after_a_restart() {
    let env = TestEnv::new().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let base = format!("http://{addr}");
    let client = reqwest::Client::new();
    let ready = || async {
        match client.get(format!("{base}/readyz")).send().await {
            Ok(response) if response.status() == 200 => {
                response.json::<Value>().await.unwrap() == serde_json::json!({"status": "ready"})
            }
            _ => false,
        }
    };
    let assigned = |samples: &[Sample]| {
        value(samples, "eventline_worker_assigned_partitions", &[("projection", "account_balances")])
    };

    let worker = env.spawn("worker", &["worker", "account_balances", "--listen", &addr], &[]);
    wait_until("the worker to be ready (assigned)", ready).await;
    env.publish("first.ndjson", &[opened("w1", "acct-1"), opened("w2", "acct-2"), opened("w3", "acct-3")]);
    wait_until("three events applied", || async { env.applied_through("account_balances").await == 3 }).await;
    let (text, samples) = scrape_at(&client, &base).await;
    let applied =
        |samples: &[Sample]| value(samples, "eventline_events_applied_total", &[("projection", "account_balances")]);
    assert_eq!(applied(&samples), Some(3.0), "{text}");
    assert_eq!(assigned(&samples), Some(6.0), "{text}");
    let health = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert!(worker.terminate().success());
    assert!(client.get(format!("{base}/healthz")).send().await.is_err(), "the listener stops with the worker");

    // Restarted: counters start again from zero, the gauges are right.
    let _restarted = env.spawn("worker-again", &["worker", "account_balances", "--listen", &addr], &[]);
    wait_until("the restarted worker to be ready", ready).await;
    env.publish("second.ndjson", &[opened("w4", "acct-4"), opened("w5", "acct-5")]);
    wait_until("five events applied", || async { env.applied_through("account_balances").await == 5 }).await;
    let (text, samples) = scrape_at(&client, &base).await;
    assert_eq!(applied(&samples), Some(2.0), "{text}");
    assert_eq!(assigned(&samples), Some(6.0), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_is_not_ready_while_its_broker_is_unreachable_and_says_why() {
    let env = TestEnv::new().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    // The worker keeps trying to reach the broker for a while; meanwhile its probes answer.
    let _worker = env.spawn(
        "worker",
        &["worker", "account_balances", "--listen", &addr],
        &[("EVENTLINE_KAFKA_BROKERS", &closed), ("EVENTLINE_CONNECT_TIMEOUT_SECS", "60")],
    );
    let client = reqwest::Client::new();
    let base = format!("http://{addr}");
    wait_until("the probes to answer", || async { client.get(format!("{base}/healthz")).send().await.is_ok() }).await;
    let response = client.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "not ready");
    let reasons: Vec<&str> = body["reasons"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
    assert!(reasons.iter().any(|r| r.starts_with("the broker is not reachable: ")), "{body}");
    assert!(!reasons.iter().any(|r| r.contains("database")), "the database is fine: {body}");
    assert_eq!(client.get(format!("{base}/healthz")).send().await.unwrap().status(), 200, "alive all the same");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_outbox_relay_serves_its_backlog_as_metrics() {
    let env = TestEnv::new().await;
    let outbox_db = env.database_url.expose().to_string();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let relay = env.spawn(
        "relay",
        &["outbox-relay", "--install", "--listen", &addr],
        &[("EVENTLINE_OUTBOX_DATABASE_URL", outbox_db.as_str())],
    );
    wait_until("the relay to start", || async { relay.log().contains("Outbox relay started.") }).await;
    let row = |id: &str, key: &str, currency: &str| {
        format!(
            "('{}')",
            serde_json::json!({"specversion": "1.0", "id": id, "source": "/o", "type": "accounts.AccountOpened",
                               "subject": key, "data": {"account_id": key, "owner": "o", "currency": currency}})
        )
    };
    // One refused row holding the one behind it, and one that goes out.
    let sql = format!(
        "INSERT INTO eventline_outbox (event) VALUES {}, {}, {}",
        row("bad", "held", "euro"),
        row("behind", "held", "EUR"),
        row("free", "other", "EUR")
    );
    let output = std::process::Command::new("psql").args([outbox_db.as_str(), "-q", "-c", &sql]).output().unwrap();
    assert!(output.status.success(), "{}", crate::helpers::stderr(&output));

    let client = reqwest::Client::new();
    let base = format!("http://{addr}");
    wait_until("the backlog gauges to show the held rows", || async {
        let (_, samples) = scrape_at(&client, &base).await;
        value(&samples, "eventline_outbox_unpublished_rows", &[]) == Some(2.0)
            && value(&samples, "eventline_outbox_failed_rows", &[]) == Some(1.0)
    })
    .await;
    let (text, samples) = scrape_at(&client, &base).await;
    assert_eq!(value(&samples, "eventline_outbox_published_total", &[]), Some(1.0), "{text}");
    assert_eq!(value(&samples, "eventline_outbox_refused_total", &[]), Some(1.0), "{text}");
    assert!(value(&samples, "eventline_outbox_oldest_unpublished_seconds", &[]).unwrap() > 0.0, "{text}");
    assert_eq!(value(&samples, "eventline_producer_acknowledged_total", &[]), Some(1.0), "{text}");
    let ready = client.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_turned_off_record_nothing_and_say_so() {
    let env = TestEnv::new().await;
    let up = env.spawn_http("up", &["up"], &[("EVENTLINE_METRICS", "false")]).await;
    assert_eq!(up.get("/v1/accounts/acct-none").await.status(), 404);
    let (text, samples) = scrape(&up).await;
    assert_eq!(text, "# eventline's metrics are turned off (EVENTLINE_METRICS=false)\n");
    assert!(samples.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn under_load_the_counters_only_grow_and_add_up_and_the_lag_clears() {
    let env = TestEnv::new().await;
    let up = env.spawn_http("up", &["up"], &[]).await;
    let _loadgen = env.spawn("loadgen", &["loadgen", "--accounts", "200", "--events", "3000", "--rate", "1500"], &[]);
    let consumed = |samples: &[Sample]| {
        value(samples, "eventline_events_consumed_total", &[("projection", "account_balances")]).unwrap_or(0.0)
    };
    // Scraped while the traffic flows: never lower than the scrape before.
    let mut seen = Vec::new();
    while seen.last().copied().unwrap_or(0.0) < 3000.0 {
        let (_, samples) = scrape(&up).await;
        let now = consumed(&samples);
        if let Some(&before) = seen.last() {
            assert!(now >= before, "a counter went down: {seen:?} then {now}");
        }
        seen.push(now);
        assert!(seen.len() < 1200, "3,000 events not consumed within two minutes: {seen:?}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(seen.iter().any(|&n| n > 0.0 && n < 3000.0), "scraped mid-load at least once: {seen:?}");

    let (text, samples) = scrape(&up).await;
    let of = |name: &str| value(&samples, name, &[("projection", "account_balances")]).unwrap_or(0.0);
    assert_eq!(of("eventline_events_consumed_total"), 3000.0, "{text}");
    assert_eq!(of("eventline_batch_size_events_sum"), 3000.0, "{text}");
    assert!(of("eventline_batch_size_events_count") > 1.0, "several batches under load: {text}");
    let outcomes = of("eventline_events_applied_total")
        + of("eventline_events_duplicate_total")
        + of("eventline_events_dead_lettered_total");
    assert_eq!(outcomes, 3000.0, "every event applied, passed over as a copy or set aside: {text}");

    // The freshness gauges (read every 5 s) come back to zero once the worker caught up.
    wait_until("the lag gauges to clear", || async {
        let (_, samples) = scrape(&up).await;
        let lag: Vec<f64> = samples
            .iter()
            .filter(|(n, l, _)| {
                (n == "eventline_projection_lag_events" || n == "eventline_projection_lag_seconds")
                    && l["projection"] == "account_balances"
            })
            .map(|(_, _, v)| *v)
            .collect();
        lag.len() == 12 && lag.iter().all(|v| *v == 0.0)
    })
    .await;
}

/// Partitions a worker (with `--listen` at `base`) owns, as its gauge says; none before it answers.
async fn owned_partitions(client: &reqwest::Client, base: &str) -> f64 {
    match client.get(format!("{base}/metrics")).send().await {
        Ok(response) => {
            let samples = parse(&response.text().await.unwrap());
            value(&samples, "eventline_worker_assigned_partitions", &[("projection", "account_balances")])
                .unwrap_or(0.0)
        }
        Err(_) => 0.0,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_assigned_partitions_gauge_follows_rebalances_on_a_topic_where_nothing_is_published() {
    let env = TestEnv::new().await;
    let client = reqwest::Client::new();
    let listen = || {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        (format!("127.0.0.1:{port}"), format!("http://127.0.0.1:{port}"))
    };
    let (addr_a, base_a) = listen();
    let (addr_b, base_b) = listen();
    let _a = env.spawn("worker-a", &["worker", "account_balances", "--listen", &addr_a], &[]);
    wait_until("A to own all six partitions", || async { owned_partitions(&client, &base_a).await == 6.0 }).await;
    let b = env.spawn("worker-b", &["worker", "account_balances", "--listen", &addr_b], &[]);
    wait_until("B to take a share from A", || async {
        let (a, b) = (owned_partitions(&client, &base_a).await, owned_partitions(&client, &base_b).await);
        b > 0.0 && a + b == 6.0
    })
    .await;
    b.kill_hard();
    wait_until("A to own all six again after B was killed", || async {
        owned_partitions(&client, &base_a).await == 6.0
    })
    .await;
    assert_eq!(env.end_offsets("accounts.events").await.iter().sum::<i64>(), 0, "nothing was published");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_partition_no_live_member_holds_shows_in_the_api_the_gauges_and_status_under_the_consumer_protocol() {
    let env = TestEnv::new().await;
    let api = env.spawn_http("api", &["api"], &[]).await;
    let protocol = [("EVENTLINE_GROUP_PROTOCOL", "consumer")];
    let worker = env.spawn("worker", &["worker", "account_balances"], &protocol);
    let projection = || async {
        let body: Value = api.get("/v1/projections").await.json().await.unwrap();
        body["projections"].as_array().unwrap().iter().find(|p| p["name"] == "account_balances").unwrap().clone()
    };
    wait_until("the worker's member to hold all six partitions", || async {
        let status = projection().await;
        status["group_members"] == 1
            && status["partitions"].as_array().unwrap().iter().all(|p| p["held_by"].as_str().is_some())
    })
    .await;
    assert_eq!(projection().await["group_state"], "Stable");

    worker.kill_hard();
    env.publish("waiting.ndjson", &(0..12).map(|i| opened(&format!("w{i}"), &format!("acct-{i}"))).collect::<Vec<_>>());
    // The killed member leaves the group when its session (6 s on the test broker) runs out.
    wait_until("the partitions with events to show as unowned", || async {
        let status = projection().await;
        status["group_members"] == 0 && !status["unowned_partitions"].as_array().unwrap().is_empty()
    })
    .await;
    let status = projection().await;
    let unowned: Vec<(String, String)> = status["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["unowned"] == true)
        .map(|p| (p["topic"].as_str().unwrap().to_string(), p["partition"].to_string()))
        .collect();
    let with_lag =
        status["partitions"].as_array().unwrap().iter().filter(|p| p["lag_events"].as_i64() > Some(0)).count();
    assert_eq!(unowned.len(), with_lag, "every partition with events is unowned: {status}");

    wait_until("the gauge to flag the same partitions", || async {
        let (_, samples) = scrape(&api).await;
        unowned.iter().all(|(topic, partition)| {
            value(
                &samples,
                "eventline_projection_partition_unowned",
                &[("projection", "account_balances"), ("topic", topic), ("partition", partition)],
            ) == Some(1.0)
        }) && value(&samples, "eventline_projection_group_members", &[("projection", "account_balances")]) == Some(0.0)
    })
    .await;
    let cli = env.run(&["status", "account_balances"]);
    assert!(crate::helpers::stdout(&cli).contains("UNOWNED"), "{}", crate::helpers::stdout(&cli));
}
