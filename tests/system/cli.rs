//! The command line lists only what works, and every subcommand explains itself.

use std::process::Command;

use crate::helpers::{stdout, BIN};

const SUBCOMMANDS: &[&[&str]] = &[
    &["up"],
    &["erase"],
    &["key-store"],
    &["key-store", "isolate"],
    &["api"],
    &["console"],
    &["worker"],
    &["migrate"],
    &["topics"],
    &["topics", "create"],
    &["publish"],
    &["schemas"],
    &["schemas", "check"],
    &["projections"],
    &["projections", "check"],
    &["status"],
    &["rebuild"],
    &["rebuild", "start"],
    &["rebuild", "diff"],
    &["rebuild", "cutover"],
    &["rebuild", "rollback"],
    &["rebuild", "cleanup"],
    &["replay"],
    &["dlq"],
    &["dlq", "list"],
    &["dlq", "show"],
    &["dlq", "retry"],
    &["dlq", "skip"],
    &["dlq", "purge"],
    &["dlq", "log"],
    &["audit"],
    &["audit", "verify"],
    &["audit", "log"],
    &["loadgen"],
];

#[test]
fn top_level_help_lists_exactly_the_working_subcommands() {
    let output = Command::new(BIN).arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = stdout(&output);
    let listed: Vec<&str> = help
        .split("Commands:")
        .nth(1)
        .expect("a Commands section")
        .split("Options:")
        .next()
        .unwrap()
        .lines()
        .filter(|line| line.starts_with("  ") && !line.starts_with("   "))
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    assert_eq!(
        listed,
        [
            "up",
            "gateway",
            "api",
            "console",
            "keys",
            "erase",
            "key-store",
            "outbox-relay",
            "tail",
            "worker",
            "migrate",
            "topics",
            "publish",
            "schemas",
            "projections",
            "status",
            "rebuild",
            "replay",
            "dlq",
            "audit",
            "loadgen",
            "help"
        ]
    );
    assert!(help.contains("EVENTLINE_KAFKA_BROKERS"), "the help documents configuration");
    assert!(help.contains("EVENTLINE_GROUP_PROTOCOL"), "the help names the group protocol setting");
    assert!(help.contains("EVENTLINE_PROJECTIONS_DIR"), "the help names the declarative projections setting");
    assert!(help.contains("sslmode=verify-full"), "the help says how to reach a database on another machine");
    assert!(help.contains("EVENTLINE_DATABASE_ALLOW_INSECURE"), "and how to accept less");
}

#[test]
fn every_subcommand_has_help() {
    for args in SUBCOMMANDS {
        let output = Command::new(BIN).args(*args).arg("--help").output().unwrap();
        assert!(output.status.success(), "{args:?} --help failed");
        let help = stdout(&output);
        assert!(help.contains(&format!("Usage: eventline {}", args.join(" "))), "{args:?}: {help}");
    }
}

#[test]
fn an_unknown_projection_is_a_usage_error_listing_the_known_ones() {
    let output = Command::new(BIN).args(["worker", "nope"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&output.stderr), UNKNOWN_PROJECTION);
}

/// What every command naming a projection the application does not have says.
pub const UNKNOWN_PROJECTION: &str = "error: unknown projection `nope` (known: account_balances, project_progress, daily_activity, feature_usage_daily)\n";

#[test]
fn every_command_that_names_a_projection_refuses_an_unknown_one() {
    let commands: [&[&str]; 10] = [
        &["status", "nope"],
        &["replay", "nope", "--from", "earliest"],
        &["rebuild", "start", "nope"],
        &["rebuild", "cutover", "nope"],
        &["dlq", "retry", "nope", "--key", "k"],
        &["dlq", "skip", "nope", "--id", "1", "--reason", "r"],
        &["dlq", "purge", "nope", "--because", "r"],
        &["dlq", "list", "--projection", "nope"],
        &["dlq", "log", "--projection", "nope"],
        &["audit", "log", "--projection", "nope"],
    ];
    for args in commands {
        // Refused before any connection: no services needed, nothing touched.
        let output =
            Command::new(BIN).args(args).env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none").output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert_eq!(String::from_utf8_lossy(&output.stderr), UNKNOWN_PROJECTION, "{args:?}");
    }
}

#[test]
fn loadgen_refuses_a_domain_the_built_in_registry_lacks() {
    let output = Command::new(BIN).args(["loadgen", "--domain", "nope", "--ndjson"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "error: unknown domain `nope` (the built-in registry has: accounts, projects, activity, all)\n"
    );
}
