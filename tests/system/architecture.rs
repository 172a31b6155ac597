//! The layering rules of ARCHITECTURE.md, checked on the dependency graph: among the engine
//! crates only the store layer may use sqlx, only the Kafka layer rdkafka, and the core neither; only the core's telemetry
//! knows OpenTelemetry; only the auth layer checks JWTs, and it knows nothing of Kafka; the console reads
//! through the query API's status.

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
    // The reference application writes its own queries, as any application's Rust projections do.
    assert_eq!(users("sqlx"), ["eventline-reference", "eventline-store"]);
    assert_eq!(users("rdkafka"), ["eventline-kafka"]);
    for otel in ["opentelemetry", "opentelemetry_sdk", "opentelemetry-otlp", "tracing-opentelemetry"] {
        assert_eq!(users(otel), ["eventline-core"], "only the core's telemetry knows OpenTelemetry");
    }
    let core = &packages["eventline-core"];
    assert!(
        !core.iter().any(|d| d.starts_with("eventline-")),
        "the core depends on no other eventline crate: {core:?}"
    );
    assert_eq!(users("jsonwebtoken"), ["eventline-auth"], "only the auth layer checks JWTs");
    assert_eq!(users("aes-gcm"), ["eventline-core"], "only the core's cipher seals and opens personal data");
    let auth = &packages["eventline-auth"];
    assert!(
        !auth.iter().any(|d| d == "eventline-kafka" || d == "rdkafka"),
        "authentication knows nothing of Kafka: {auth:?}"
    );
    let console = &packages["eventline-console"];
    assert!(
        !console.iter().any(|d| d == "eventline-kafka" || d == "eventline-producers"),
        "the console reads through the query API's status and acts through the projections: {console:?}"
    );
    assert_eq!(packages.len(), 12, "a new crate needs a paragraph in ARCHITECTURE.md: {:?}", packages.keys());
}

/// Names of the reference application (its topics, types, projections and payloads).
const REFERENCE_NAMES: &[&str] = &[
    "accounts.",
    "projects.",
    "activity.",
    "account_balances",
    "project_progress",
    "daily_activity",
    "feature_usage_daily",
    "AccountEvent",
    "ProjectEvent",
    "ActivityEvent",
    "FundsDeposited",
    "PageViewed",
];

/// A crate's code as the compiler sees it outside its tests: comments and `#[cfg(test)]`
/// modules (the last item of a file, by this codebase's habit) left out.
fn code_outside_tests(dir: &std::path::Path, found: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "tests") {
                code_outside_tests(&path, found);
            }
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap();
        for line in code.lines().map(str::trim).filter(|l| !l.starts_with("//")) {
            if let Some(name) = REFERENCE_NAMES.iter().find(|n| line.contains(*n)) {
                found.push((path.display().to_string(), format!("{name} in `{line}`")));
            }
        }
    }
}

#[test]
fn the_engine_knows_no_reference_domain() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    // Every engine crate; the reference application is a crate of its own (reference/).
    for dir in [
        "src/core",
        "src/kafka",
        "src/http",
        "src/auth",
        "src/store",
        "consumers/src",
        "producers/src",
        "api/src",
        "console/src",
    ] {
        let mut found = Vec::new();
        code_outside_tests(&root.join(dir), &mut found);
        assert_eq!(found, Vec::<(String, String)>::new(), "{dir} names the reference domains");
    }
}

#[test]
fn no_engine_crate_carries_the_reference_registry() {
    // The reference domains' registry (schemas/) is the reference application's data: it builds
    // it in (reference/build.rs); an engine crate embedding it would know those domains.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for crate_root in
        ["src/core", "src/kafka", "src/http", "src/auth", "src/store", "consumers", "producers", "api", "console"]
    {
        let build = root.join(crate_root).join("build.rs");
        let script = std::fs::read_to_string(&build).unwrap_or_default();
        assert!(!script.contains("schemas"), "{} embeds the schemas folder", build.display());
    }
    let reference = std::fs::read_to_string(root.join("reference/build.rs")).unwrap();
    assert!(reference.contains("../schemas"), "the reference application builds its registry in");
}
