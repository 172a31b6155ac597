//! The layering rules of ARCHITECTURE.md, checked on the dependency graph: only the store layer
//! may use sqlx, only the Kafka layer rdkafka, and the core neither; only the core's telemetry
//! knows OpenTelemetry.

use std::collections::BTreeMap;
use std::process::Command;

fn workspace_dependencies() -> BTreeMap<String, Vec<String>> {
    let output = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|package| {
            let deps = package["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["kind"].is_null())
                .map(|d| d["name"].as_str().unwrap().to_string())
                .collect();
            (package["name"].as_str().unwrap().to_string(), deps)
        })
        .collect()
}

#[test]
fn only_the_store_uses_sqlx_and_only_the_kafka_layer_uses_rdkafka() {
    let packages = workspace_dependencies();
    let users = |dependency: &str| -> Vec<&str> {
        packages
            .iter()
            .filter(|(_, deps)| deps.iter().any(|d| d == dependency))
            .map(|(name, _)| name.as_str())
            .collect()
    };
    assert_eq!(users("sqlx"), ["eventline-store"]);
    assert_eq!(users("rdkafka"), ["eventline-kafka"]);
    for otel in ["opentelemetry", "opentelemetry_sdk", "opentelemetry-otlp", "tracing-opentelemetry"] {
        assert_eq!(users(otel), ["eventline-core"], "only the core's telemetry knows OpenTelemetry");
    }
    let core = &packages["eventline-core"];
    assert!(
        !core.iter().any(|d| d.starts_with("eventline-")),
        "the core depends on no other eventline crate: {core:?}"
    );
    assert_eq!(packages.len(), 8, "a new crate needs a paragraph in ARCHITECTURE.md: {:?}", packages.keys());
}
