//! The audit is a hash chain: `eventline audit verify` finds an entry edited, deleted or slipped
//! in, each done here as someone with the database's superuser would do it, and eventline's own
//! connections cannot change or remove an entry at all.

use std::process::{Command, Output};

use eventline_store::audit::NewAuditEntry;
use serde_json::{json, Value};

use crate::helpers::{stderr, stdout, TestEnv};

/// Runs SQL as the test's (superuser) role, with triggers off when `bypassing_triggers`, the way
/// someone rewriting the table would; returns the output whether it succeeded or not.
fn psql(env: &TestEnv, sql: &str, bypassing_triggers: bool) -> Output {
    let sql =
        if bypassing_triggers { format!("SET session_replication_role = replica; {sql}") } else { sql.to_string() };
    Command::new("psql")
        .args([env.database_url.expose(), "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", &sql])
        .output()
        .expect("psql runs")
}

pub(crate) fn tamper(env: &TestEnv, sql: &str) {
    let output = psql(env, sql, true);
    assert!(output.status.success(), "{sql}: {}", stderr(&output));
}

/// `audit verify`'s exit code and its one line (standard output when intact, standard error when not).
fn verify(env: &TestEnv) -> (Option<i32>, String) {
    let output = env.run(&["audit", "verify"]);
    let text = if output.status.success() { stdout(&output) } else { stderr(&output) };
    (output.status.code(), text.trim_end().to_string())
}

fn intact(entries: usize, head: &str) -> (Option<i32>, String) {
    (Some(0), format!("audit chain intact: {entries} entries, head {head}"))
}

fn broken(id: &str, reason: &str) -> (Option<i32>, String) {
    (Some(4), format!("error: the audit chain is broken at entry id {id}: {reason}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_finds_an_entry_edited_deleted_or_slipped_in() {
    let env = TestEnv::new().await;
    assert_eq!(verify(&env), intact(0, &"0".repeat(64)), "an empty chain starts at the zero hash");

    let mut ids = Vec::new();
    for n in 0..4 {
        let mut tx = env.store.begin().await.unwrap();
        let entry = NewAuditEntry {
            actor: "ops",
            action: "dlq.skip",
            projection: Some("account_balances"),
            target: json!({"id": n}),
            reason: Some("a duplicate from the old system"),
            outcome: json!({"skipped": n}),
        };
        ids.push(tx.audit(entry).await.unwrap().to_string());
        tx.commit().await.unwrap();
    }
    let (code, line) = verify(&env);
    assert_eq!(code, Some(0), "{line}");
    let head = line.strip_prefix("audit chain intact: 4 entries, head ").expect(&line).to_string();
    assert!(head.len() == 64 && head.chars().all(|c| c.is_ascii_hexdigit()), "{head}");
    let origins = env.psql("SELECT DISTINCT origin FROM eventline_audit");
    assert!(origins.starts_with("eventline from "), "entries name the client that wrote them: {origins}");

    // Not even eventline's own role changes or removes an entry.
    for sql in [
        "UPDATE eventline_audit SET reason = 'nothing to see'",
        "DELETE FROM eventline_audit",
        "TRUNCATE eventline_audit",
    ] {
        let refused = psql(&env, sql, false);
        assert!(!refused.status.success(), "{sql} was allowed");
        assert!(
            stderr(&refused).contains("eventline_audit is append-only: entries are never changed or removed"),
            "{sql}: {}",
            stderr(&refused)
        );
    }
    assert_eq!(verify(&env), intact(4, &head));

    // Edited.
    let (second, third, last) = (&ids[1], &ids[2], &ids[3]);
    tamper(&env, &format!("UPDATE eventline_audit SET reason = 'nothing to see' WHERE id = {second}"));
    assert_eq!(verify(&env), broken(second, "its contents changed after it was written"));
    tamper(&env, &format!("UPDATE eventline_audit SET reason = 'a duplicate from the old system' WHERE id = {second}"));
    assert_eq!(verify(&env), intact(4, &head), "restored as it was");

    // An edit that recomputes the entry's own hash still breaks the link from the next one.
    tamper(&env, &format!(
        "UPDATE eventline_audit SET actor = 'someone else',
             row_hash = eventline_audit_hash(prev_hash, seq, at, 'someone else', action, projection, target, reason, outcome, origin)
         WHERE id = {second}"
    ));
    assert_eq!(verify(&env), broken(third, "it does not link to the entry before it (one was changed or slipped in)"));
    tamper(&env, &format!(
        "UPDATE eventline_audit SET actor = 'ops',
             row_hash = eventline_audit_hash(prev_hash, seq, at, 'ops', action, projection, target, reason, outcome, origin)
         WHERE id = {second}"
    ));
    assert_eq!(verify(&env), intact(4, &head));

    // Deleted, in the middle and at the end.
    tamper(
        &env,
        &format!("CREATE TABLE audit_saved AS SELECT * FROM eventline_audit WHERE id IN ({second}, {third}, {last})"),
    );
    let restore = |id: &str| {
        format!("INSERT INTO eventline_audit OVERRIDING SYSTEM VALUE SELECT * FROM audit_saved WHERE id = {id}")
    };
    tamper(&env, &format!("DELETE FROM eventline_audit WHERE id = {second}"));
    assert_eq!(verify(&env), broken(third, "entry 2 before it is missing"));
    tamper(&env, &format!("DELETE FROM eventline_audit WHERE id = {third}"));
    assert_eq!(verify(&env), broken(last, "entries 2 to 3 before it are missing"));
    tamper(&env, &format!("{}; {}", restore(second), restore(third)));
    assert_eq!(verify(&env), intact(4, &head));
    tamper(&env, &format!("DELETE FROM eventline_audit WHERE id = {last}"));
    let removed_last =
        "error: the audit chain is broken: the chain ends at entry 3 but its head is entry 4: the last entries were removed";
    assert_eq!(verify(&env), (Some(4), removed_last.to_string()));
    tamper(&env, &restore(last));
    assert_eq!(verify(&env), intact(4, &head));

    // Slipped in: written by hand, then with the chain's own function for its hashes.
    let forged = env.psql(
        "INSERT INTO eventline_audit (actor, action, projection) VALUES ('ops', 'replay', 'account_balances') RETURNING id",
    );
    assert_eq!(verify(&env), broken(&forged, "it is not in the chain: written around eventline_audit_append"));
    tamper(&env, &format!("DELETE FROM eventline_audit WHERE id = {forged}"));
    env.psql(
        "INSERT INTO eventline_audit (at, actor, action, projection, origin, seq, prev_hash, row_hash)
         SELECT at, 'ops', 'replay', 'account_balances', origin, seq + 1, row_hash,
                eventline_audit_hash(row_hash, seq + 1, at, 'ops', 'replay', 'account_balances', '{}', NULL, '{}', origin)
         FROM eventline_audit ORDER BY seq DESC LIMIT 1",
    );
    let added = "error: the audit chain is broken: the chain ends at entry 5 but its head is entry 4: entries were added around eventline_audit_append";
    assert_eq!(verify(&env), (Some(4), added.to_string()));
    tamper(&env, "DELETE FROM eventline_audit WHERE seq = 5");

    // Restored, the chain goes on from where it was.
    assert_eq!(verify(&env), intact(4, &head));
    let mut tx = env.store.begin().await.unwrap();
    let entry = NewAuditEntry {
        actor: "ops",
        action: "replay",
        projection: Some("account_balances"),
        target: json!({}),
        reason: None,
        outcome: json!({}),
    };
    tx.audit(entry).await.unwrap();
    tx.commit().await.unwrap();
    let (code, line) = verify(&env);
    assert_eq!(code, Some(0), "{line}");
    assert!(line.starts_with("audit chain intact: 5 entries, head ") && !line.ends_with(&head), "{line}");
}

#[tokio::test(flavor = "multi_thread")]
async fn creating_and_revoking_an_api_key_are_in_the_chain() {
    let env = TestEnv::new().await;
    let created = env.run(&[
        "keys",
        "create",
        "--name",
        "billing",
        "--types",
        "accounts.*",
        "--scope",
        "read:account_balances",
        "--actor",
        "alice",
    ]);
    assert!(created.status.success(), "{}", stderr(&created));
    let key_id = stdout(&created).trim().strip_prefix("elk_").and_then(|r| r.split('_').next()).unwrap().to_string();
    let revoked = env.run(&["keys", "revoke", &key_id, "--actor", "bob"]);
    assert!(revoked.status.success(), "{}", stderr(&revoked));
    let again = env.run(&["keys", "revoke", &key_id, "--actor", "bob"]);
    assert_eq!(again.status.code(), Some(1), "{}", stderr(&again));

    let log = env.run(&["audit", "log"]);
    assert!(log.status.success(), "{}", stderr(&log));
    let entries: Vec<Value> = stdout(&log).lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    let summary: Vec<(&str, &str, &Value, &Value)> = entries
        .iter()
        .map(|e| (e["actor"].as_str().unwrap(), e["action"].as_str().unwrap(), &e["projection"], &e["target"]))
        .collect();
    assert_eq!(
        summary,
        [
            (
                "alice",
                "keys.create",
                &Value::Null,
                &json!({"key_id": key_id, "name": "billing", "types": ["accounts.*"], "scopes": ["read:account_balances"]})
            ),
            ("bob", "keys.revoke", &Value::Null, &json!({"key_id": key_id})),
        ],
        "in order; a refused revocation is not an action"
    );
    assert!(entries[1]["origin"].as_str().unwrap().starts_with("eventline keys revoke from "), "{}", entries[1]);
    assert!(entries.iter().all(|e| !e.to_string().contains("elk_")), "the audit never holds a key's secret");
    let (code, line) = verify(&env);
    assert_eq!(code, Some(0), "{line}");
    assert!(line.starts_with("audit chain intact: 2 entries, head "), "{line}");
}
