//! What observability costs: the worker and the gateway with metrics and tracing off, then on
//! (metrics recorded and scraped every second, spans exported to an OTLP collector with 1% of
//! traces sampled), in one run on one machine. Needs the services (`scripts/services.sh up`):
//!
//! ```sh
//! cargo bench --bench observability                          # 100,000 events, 5 rounds
//! cargo bench --bench observability -- --events 200000 --rounds 5
//! ```
//!
//! The worker reads a topic filled once with events that carry a `traceparent`, 1% of them
//! sampled, as a gateway tracing at 1% stamps them. The gateway answers single-event requests, 32
//! at a time, starting its own traces at 1%. Off and on alternate within each round, in a
//! different order each round; the medians are compared. The collector is in this process and
//! decodes what it receives, so spans cost what they cost against a real one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use eventline_core::config::Settings;
use eventline_producers::publisher::Publisher;
use eventline_reference::loadgen::AccountsTraffic;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

mod support;
use support::{database_with_key, fresh_store, number_option, publish_all, run_worker, topic_records, HttpProcess};

/// Concurrent requests to the gateway.
const CONCURRENCY: usize = 32;
/// One trace in this many is sampled.
const SAMPLE_ONE_IN: usize = 100;

struct Options {
    events: usize,
    rounds: usize,
    requests: usize,
}

fn options() -> Options {
    Options {
        events: number_option("--events", 100_000),
        rounds: number_option("--rounds", 5),
        requests: number_option("--requests", 10_000),
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Observability {
    Off,
    On,
}

/// An OTLP/HTTP collector counting the spans it decodes.
async fn collector() -> (String, Arc<AtomicU64>) {
    let spans = Arc::new(AtomicU64::new(0));
    let counted = spans.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: Bytes| {
            let counted = counted.clone();
            async move {
                let request = ExportTraceServiceRequest::decode(body).expect("an OTLP export request");
                let n: usize = request.resource_spans.iter().flat_map(|r| &r.scope_spans).map(|s| s.spans.len()).sum();
                counted.fetch_add(n as u64, Ordering::Relaxed);
                Vec::<u8>::new()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (endpoint, spans)
}

/// The process environment for a mode.
fn with_mode(env: &HashMap<String, String>, mode: Observability, endpoint: &str) -> HashMap<String, String> {
    let mut env = env.clone();
    match mode {
        Observability::Off => {
            env.insert("EVENTLINE_METRICS".into(), "false".into());
        }
        Observability::On => {
            env.insert("EVENTLINE_METRICS".into(), "true".into());
            env.insert("EVENTLINE_OTLP_ENDPOINT".into(), endpoint.into());
            env.insert("EVENTLINE_TRACE_SAMPLE_RATIO".into(), format!("{}", 1.0 / SAMPLE_ONE_IN as f64));
        }
    }
    env
}

/// Scrapes `url` every second until the returned handle is aborted, as Prometheus would (more
/// often than its default).
fn scrape_every_second(url: String) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let client = reqwest::Client::new();
        loop {
            if let Ok(response) = client.get(&url).send().await {
                let _ = response.text().await;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

fn random_hex(len: usize) -> String {
    let mut out = String::new();
    while out.len() < len {
        out.push_str(&format!("{:032x}", rand::random::<u128>()));
    }
    out.truncate(len);
    out
}

#[tokio::main]
async fn main() {
    let options = options();
    let mut env: HashMap<String, String> = std::env::vars().filter(|(k, _)| !k.starts_with("EVENTLINE_")).collect();
    let namespace = format!("bench-observability-n{}", options.events);
    env.insert("EVENTLINE_NAMESPACE".into(), namespace.clone());
    let settings = Settings::load_from(None, &env).expect("settings");
    let registry = Arc::new(eventline_reference::registry().expect("registry"));
    let topic = settings.namespace.topic("accounts.events");
    let present = topic_records(&settings, &topic).await;
    if present < options.events {
        let missing = options.events - present;
        println!("filling {topic} with {missing} traced events (once; later runs reuse it)");
        let publisher = Publisher::connect(&settings, registry.clone()).await.unwrap();
        let traffic = AccountsTraffic::new(registry.clone(), &format!("fill{present}"), 10_000, 7).take(missing);
        let traced = traffic.enumerate().map(|(n, mut event)| {
            let flags = if n % SAMPLE_ONE_IN == 0 { "01" } else { "00" };
            event.adopt_traceparent(&format!("00-{}-{}-{flags}", random_hex(32), random_hex(16)));
            event
        });
        publish_all(&publisher, traced, missing).await;
    }
    let total = topic_records(&settings, &topic).await;
    let (endpoint, spans) = collector().await;
    println!(
        "observability overhead: worker on {total} events (1 in {SAMPLE_ONE_IN} traced), gateway single events {CONCURRENCY} at a time; {} rounds, {} cores",
        options.rounds,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    // The gateway publishes to a namespace of its own, so the worker's topic stays as filled.
    let mut gateway_env = env.clone();
    gateway_env.insert("EVENTLINE_NAMESPACE".into(), format!("{namespace}-gateway"));
    let gateway_settings = Settings::load_from(None, &gateway_env).unwrap();
    topic_records(&gateway_settings, &gateway_settings.namespace.topic("accounts.events")).await;
    let client = reqwest::Client::builder().pool_max_idle_per_host(64).build().unwrap();

    let mut worker: HashMap<&str, Vec<f64>> = HashMap::new();
    let mut gateway: HashMap<&str, Vec<f64>> = HashMap::new();
    let mut spans_by_mode: HashMap<&str, u64> = HashMap::new();
    for round in 0..options.rounds {
        let order = if round % 2 == 0 {
            [Observability::Off, Observability::On]
        } else {
            [Observability::On, Observability::Off]
        };
        for mode in order {
            let label = if mode == Observability::On { "on" } else { "off" };
            let spans_before = spans.load(Ordering::Relaxed);

            let db = settings.database_url.with_database(&format!("eventline_bench_obs_{}", rand::random::<u32>()));
            let store = fresh_store(&db, &settings).await;
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let listen = format!("127.0.0.1:{port}");
            let scraper = (mode == Observability::On).then(|| scrape_every_second(format!("http://{listen}/metrics")));
            let args: Vec<&str> = if mode == Observability::On { vec!["--listen", &listen] } else { Vec::new() };
            let run =
                run_worker(&with_mode(&env, mode, &endpoint), "account_balances", &args, &db, &store, total).await;
            if let Some(scraper) = scraper {
                scraper.abort();
            }
            store.close().await;
            eventline_store::drop_database(&db).await.unwrap();
            worker.entry(label).or_default().push(run.events_per_second);

            let name = format!("eventline_bench_obs_gw_{}", rand::random::<u32>());
            let (db, store, token) = database_with_key(&gateway_settings, &name, 2).await;
            let process = HttpProcess::start("gateway", &with_mode(&gateway_env, mode, &endpoint), &db, &client).await;
            let scraper = (mode == Observability::On).then(|| scrape_every_second(format!("{}/metrics", process.base)));
            let bodies: Vec<String> = AccountsTraffic::new(registry.clone(), &format!("gw{round}{label}"), 5_000, 11)
                .take(options.requests)
                .map(|e| e.envelope().to_value().to_string())
                .collect();
            let bearer = format!("Bearer {token}");
            let started = Instant::now();
            for chunk in bodies.chunks(CONCURRENCY) {
                let requests = chunk.iter().map(|body| {
                    client
                        .post(format!("{}/v1/events", process.base))
                        .header("authorization", &bearer)
                        .header("content-type", "application/cloudevents+json")
                        .body(body.clone())
                        .send()
                });
                for response in futures::future::join_all(requests).await {
                    assert_eq!(response.unwrap().status(), 202);
                }
            }
            let rate = bodies.len() as f64 / started.elapsed().as_secs_f64();
            if let Some(scraper) = scraper {
                scraper.abort();
            }
            // SIGTERM sends the spans still queued.
            process.stop();
            store.close().await;
            eventline_store::drop_database(&db).await.unwrap();
            gateway.entry(label).or_default().push(rate);
            *spans_by_mode.entry(label).or_default() += spans.load(Ordering::Relaxed) - spans_before;
            println!(
                "  round {} {label:>3}: worker {:>8.0} events/s, gateway {rate:>7.0} requests/s",
                round + 1,
                run.events_per_second
            );
        }
    }

    println!();
    println!("                      off (median)      on (median)     difference   per round (median)");
    for (what, unit, runs) in [("worker", "events/s", &mut worker), ("gateway", "requests/s", &mut gateway)] {
        // Each round's on against the same round's off: the machine's drift between rounds cancels.
        let mut paired: Vec<f64> =
            runs["on"].iter().zip(&runs["off"]).map(|(on, off)| 100.0 * (on - off) / off).collect();
        let off = median(runs.get_mut("off").unwrap());
        let on = median(runs.get_mut("on").unwrap());
        println!(
            "{what:<10} {off:>12.0} {unit:<10} {on:>8.0} {unit:<10} {:>+6.1}%      {:>+6.1}%",
            100.0 * (on - off) / off,
            median(&mut paired)
        );
    }
    println!(
        "spans received by the collector: {} with observability on, {} off (target: under 5% difference)",
        spans_by_mode.get("on").copied().unwrap_or(0),
        spans_by_mode.get("off").copied().unwrap_or(0)
    );
}
