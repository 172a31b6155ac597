//! `scripts/services.sh`, which the README's two commands and CI rely on: safe to run twice, and
//! its one broker-specific workaround (an index Tansu 0.6.0's SQLite schema lacks) in place.

use std::path::Path;
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn services(action: &str) -> (bool, String) {
    let output =
        Command::new(Path::new(ROOT).join("scripts/services.sh")).arg(action).output().expect("the script runs");
    (output.status.success(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn services_up_is_safe_to_run_twice_and_indexes_tansu_headers() {
    for _ in 0..2 {
        let (ok, log) = services("up");
        assert!(ok, "scripts/services.sh up failed: {log}");
        assert!(log.contains("PostgreSQL answers on 127.0.0.1:5432"), "{log}");
    }
    let (ok, status) = services("status");
    assert!(ok);
    assert_eq!(status, "services: PostgreSQL: up on 127.0.0.1:5432\nservices: broker: up on 127.0.0.1:9092\n");

    let state = std::env::var("EVENTLINE_STATE_DIR").unwrap_or_else(|_| format!("{ROOT}/.eventline"));
    let db = Path::new(&state).join("tansu/tansu.db");
    assert!(
        db.exists(),
        "{} does not exist: the broker on 127.0.0.1:9092 was not started by this checkout's scripts/services.sh",
        db.display()
    );
    let output = Command::new("sqlite3")
        .arg(&db)
        .arg("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'header'")
        .output()
        .expect("sqlite3 runs (scripts/services.sh installs it)");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "eventline_header_by_record\n", "in {}", db.display());
}

#[test]
fn an_unknown_action_is_a_usage_error() {
    let output = Command::new(Path::new(ROOT).join("scripts/services.sh")).arg("restart").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).starts_with("usage: "));
}
