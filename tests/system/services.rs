//! `scripts/services.sh`, which the README's two commands and CI rely on: safe to run twice, and
//! the broker it brings up is Apache Kafka run by this checkout's scripts.

use std::path::Path;
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn services(action: &str) -> (bool, String) {
    let output =
        Command::new(Path::new(ROOT).join("scripts/services.sh")).arg(action).output().expect("the script runs");
    (output.status.success(), String::from_utf8_lossy(&output.stderr).into_owned())
}

fn state_dir() -> String {
    std::env::var("EVENTLINE_STATE_DIR").unwrap_or_else(|_| format!("{ROOT}/.eventline"))
}

#[test]
fn services_up_is_safe_to_run_twice_and_runs_apache_kafka() {
    for run in 1..=2 {
        let (ok, log) = services("up");
        assert!(ok, "scripts/services.sh up failed: {log}");
        assert!(log.contains("PostgreSQL answers on 127.0.0.1:5432"), "{log}");
        assert!(log.contains("Apache Kafka answers on 127.0.0.1:9092"), "not this checkout's broker: {log}");
        assert!(run == 1 || !log.contains("starting"), "the second `up` started something again: {log}");
    }
    let state = state_dir();
    let pid = std::fs::read_to_string(Path::new(&state).join("run/kafka.pid")).expect("the broker's pid file");
    let (ok, status) = services("status");
    assert!(ok);
    assert_eq!(
        status,
        format!(
            "services: PostgreSQL: up on 127.0.0.1:5432\nservices: broker: Apache Kafka up on 127.0.0.1:9092 (pid {})\n",
            pid.trim()
        )
    );
    let command = std::fs::read(format!("/proc/{}/cmdline", pid.trim())).expect("the broker's process runs");
    assert!(String::from_utf8_lossy(&command).contains("kafka.Kafka"), "pid {pid} is not the broker");

    // The storage was formatted once, with the cluster id kept beside it.
    let cluster_id = std::fs::read_to_string(Path::new(&state).join("kafka/cluster-id")).expect("the cluster id");
    let meta =
        std::fs::read_to_string(Path::new(&state).join("kafka/data/meta.properties")).expect("formatted storage");
    assert!(meta.contains(&format!("cluster.id={}", cluster_id.trim())), "{meta}");
    assert!(!cluster_id.starts_with('-'), "the storage tool reads a leading '-' as an option: {cluster_id}");

    // eventline's default URL (postgres on 127.0.0.1, no password) connects.
    let psql = Command::new("psql")
        .args(["postgres://postgres@127.0.0.1:5432/postgres", "-XAtqw", "-c", "SELECT 1"])
        .output()
        .expect("psql runs");
    assert_eq!(String::from_utf8_lossy(&psql.stdout), "1\n", "{}", String::from_utf8_lossy(&psql.stderr));
}

#[test]
fn an_unknown_action_is_a_usage_error() {
    let output = Command::new(Path::new(ROOT).join("scripts/services.sh")).arg("restart").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&output.stderr), format!("usage: {ROOT}/scripts/services.sh up|down|status\n"));
}

#[test]
fn the_broker_script_refuses_missing_arguments() {
    let output =
        Command::new(Path::new(ROOT).join("scripts/kafka/broker.sh")).args(["run", "/tmp/nowhere"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).ends_with("broker.sh run DIR PORT CONTROLLER_PORT\n"));
}
