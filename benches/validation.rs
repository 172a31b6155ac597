//! Validation throughput of the schema registry, one core, per reference event type and version.
//!
//! Run with `cargo bench --bench validation`. Each row validates the type's schema example as a
//! whole structured event (envelope, JSON Schema, subject, upcasting to the current version,
//! typed payload), next to a baseline measured in the same run on the same bytes: parsing the
//! JSON alone, which every consumer of the event pays anyway. Rows for an older version include
//! upcasting. Last, what sealing adds per event on one core: a page view validated, its personal
//! session id sealed under a key in hand, and serialized as the gateway sends it, next to the same
//! without sealing.

use std::hint::black_box;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const MEASURE_FOR: Duration = Duration::from_millis(700);

/// Events per second of `work`, run repeatedly for about [`MEASURE_FOR`].
fn rate(mut work: impl FnMut()) -> f64 {
    for _ in 0..1_000 {
        work();
    }
    let started = Instant::now();
    let mut runs = 0u64;
    while started.elapsed() < MEASURE_FOR {
        for _ in 0..1_000 {
            work();
        }
        runs += 1_000;
    }
    runs as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let registry = eventline_reference::registry().expect("the shipped registry loads");
    println!(
        "validation throughput, one thread ({} cores on this machine)",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "{:<28} {:>3} {:>9} {:>16} {:>16} {:>10}",
        "type", "v", "upcast", "parse only ev/s", "validate ev/s", "of parse"
    );
    for contract in registry.contracts() {
        for version in contract.versions.values() {
            let data = version.schema["examples"][0].clone();
            let event: Value = json!({
                "specversion": "1.0", "id": "bench-0001", "source": "/bench", "type": contract.event_type,
                "subject": data[&contract.key], "time": "2026-11-28T12:00:00Z", "dataversion": version.version, "data": data,
            });
            let bytes = event.to_string().into_bytes();
            registry.validate_slice(&bytes).expect("the example validates");
            let parse = rate(|| {
                black_box(serde_json::from_slice::<Value>(black_box(&bytes)).unwrap());
            });
            let validate = rate(|| {
                black_box(registry.validate_slice(black_box(&bytes)).unwrap());
            });
            let upcast = if version.version < contract.current() {
                format!("v{}→v{}", version.version, contract.current())
            } else {
                "-".into()
            };
            println!(
                "{:<28} {:>3} {:>9} {:>16.0} {:>16.0} {:>9.0}%",
                contract.event_type,
                version.version,
                upcast,
                parse,
                validate,
                100.0 * validate / parse
            );
        }
    }

    let key = eventline_core::cipher::DataKey::generate();
    let view = json!({"specversion": "1.0", "id": "3f2c1b6e-bench-view-000001", "source": "/web",
        "type": "activity.PageViewed", "subject": "user-4711", "time": "2026-12-04T10:00:00Z",
        "data": {"user_id": "user-4711", "path": "/pricing", "session_id": "session-8f3a2c91d4"}});
    let bytes = view.to_string().into_bytes();
    let mut sizes = [0usize; 2];
    let clear = rate(|| {
        let event = registry.validate_slice(black_box(&bytes)).unwrap();
        sizes[0] = black_box(event.envelope().to_value().to_string()).len();
    });
    let sealed = rate(|| {
        let (event, _) = registry.seal_personal(registry.validate_slice(black_box(&bytes)).unwrap(), "user-4711", &key);
        sizes[1] = black_box(event.envelope().to_value().to_string()).len();
    });
    println!(
        "page view, validated and serialized: {clear:.0} ev/s ({} bytes); sealed too: {sealed:.0} ev/s ({} bytes) = {:.0}%, {:.2} µs more per event",
        sizes[0],
        sizes[1],
        100.0 * sealed / clear,
        1e6 / sealed - 1e6 / clear
    );
}
