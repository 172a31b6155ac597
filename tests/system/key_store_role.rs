//! The key store's own role (issue 16): once `eventline key-store isolate` has given it the keys,
//! the role projections run as cannot read a key and the key store's role cannot read a
//! projection, while sealing, opening and erasing go on through EVENTLINE_KEYS_DATABASE_URL.

use std::process::Command;

use serde_json::{json, Value};

use crate::helpers::{stderr, stdout, wait_until, Services, TestEnv};
use crate::private_services::PrivatePostgres;

const KEK: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// Runs SQL as the role of `url`: the rows, or the error PostgreSQL gave.
fn psql_as(url: &str, sql: &str) -> Result<String, String> {
    let output = Command::new("psql").args([url, "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql]).output().unwrap();
    match output.status.success() {
        true => Ok(stdout(&output).trim().to_string()),
        false => Err(stderr(&output).trim().to_string()),
    }
}

fn opened(id: &str, account: &str, owner: &str) -> Value {
    json!({"specversion": "1.0", "id": id, "source": "/bank", "type": "accounts.AccountOpened",
           "subject": account, "data": {"account_id": account, "owner": owner, "currency": "EUR"}})
}

#[tokio::test(flavor = "multi_thread")]
async fn the_key_store_has_a_role_of_its_own_that_reads_no_projection_and_that_no_projection_role_reads() {
    // A cluster of the test's own, its roles not superusers: `app` migrates and runs projections.
    let postgres = PrivatePostgres::start();
    postgres.sql("CREATE ROLE app LOGIN CREATEDB CREATEROLE");
    postgres.sql("CREATE ROLE keyring LOGIN");
    let server = format!("postgres://app@127.0.0.1:{}/postgres", postgres.port);
    let env =
        TestEnv::with_app(Services::with_database_server(&server), &[("EVENTLINE_KEY_ENCRYPTION_KEY", KEK)]).await;
    let app_url = env.database_url.expose().to_string();
    let keys_url = app_url.replace("postgres://app@", "postgres://keyring@");
    let as_keys = [("EVENTLINE_KEYS_DATABASE_URL", keys_url.as_str())];

    // Roles it cannot be given to, each refused by name before anything changes.
    for (role, error) in [
        ("nobody", "role \"nobody\" does not exist: create it first (CREATE ROLE nobody LOGIN PASSWORD '…')"),
        ("app", "role \"app\" is the role running this: the key store's role must be another one"),
        ("postgres", "role \"postgres\" is a superuser: it could read the projections"),
    ] {
        let refused = env.run(&["key-store", "isolate", "--role", role]);
        assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
        assert_eq!(stderr(&refused), format!("error: {error}\n"));
    }
    let empty = env.run(&["key-store", "isolate", "--role", ""]);
    assert_eq!(empty.status.code(), Some(2));
    assert!(
        stderr(&empty).contains("a value is required for '--role <ROLE>' but none was supplied"),
        "{}",
        stderr(&empty)
    );
    assert_eq!(psql_as(&app_url, "SELECT count(*) FROM eventline_keys.subject_keys").as_deref(), Ok("0"));

    let isolated = env.run(&["key-store", "isolate", "--role", "keyring", "--actor", "dba"]);
    assert!(isolated.status.success(), "{}", stderr(&isolated));
    assert_eq!(
        stdout(&isolated),
        "the key store is role keyring's now: set EVENTLINE_KEYS_DATABASE_URL to connect as keyring wherever \
         personal data is sealed, opened or erased\n"
    );
    let again = env.run(&["key-store", "isolate", "--role", "keyring", "--actor", "dba"]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(stdout(&again), "the key store was role keyring's already\n");
    // The hand-over left `app` no way in, not even through membership of the key store's role.
    assert_eq!(
        psql_as(&app_url, "SELECT count(*) FROM eventline_keys.subject_keys"),
        Err("ERROR:  permission denied for schema eventline_keys\nLINE 1: SELECT count(*) FROM eventline_keys.subject_keys\n                             ^".to_string())
    );
    assert_eq!(psql_as(&app_url, "SELECT pg_has_role('app', 'keyring', 'MEMBER')").as_deref(), Ok("f"));
    assert_eq!(
        psql_as(&app_url, "SELECT count(*) FROM eventline_keys.blind_index"),
        Err("ERROR:  permission denied for schema eventline_keys\nLINE 1: SELECT count(*) FROM eventline_keys.blind_index\n                             ^".to_string())
    );
    assert_eq!(
        env.psql("SELECT string_agg(tablename || ':' || tableowner, ',' ORDER BY tablename) FROM pg_tables WHERE schemaname = 'eventline_keys'"),
        "blind_index:keyring,subject_keys:keyring"
    );

    // Sealing as the projections' role is refused, clearly, and nothing is published.
    let line = format!("{}\n", opened("o-0", "acc-0", "Nobody"));
    let refused = env.run_with_stdin(&["publish"], line.as_bytes());
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("permission denied for schema eventline_keys"), "{}", stderr(&refused));

    // As the key store's role: sealed on the way in, opened for a personal read, erased.
    let up = env.spawn_http("up", &["up"], &as_keys).await;
    let (_, writer) = env.create_key("writer", &["accounts.*"]);
    let (_, personal) = env.create_key_with_scopes("support", &[], &["read:account_balances", "personal"]);
    let canary = "Ada Keyring-Canary-k2";
    let accepted = up
        .post(
            &[("authorization", &format!("Bearer {writer}")), ("content-type", "application/cloudevents+json")],
            opened("o-1", "acc-1", canary).to_string(),
        )
        .await;
    assert_eq!(accepted.status(), 202);
    wait_until("the account to be applied", || async { env.balances().await.len() == 1 }).await;
    assert!(env.psql("SELECT owner FROM account_balances").starts_with("elc1."));
    let read = up.get_as("/v1/accounts/acc-1", Some(&personal)).await.json::<Value>().await.unwrap();
    assert_eq!(read["owner"], canary);

    let erase = ["erase", "--subject", "acc-1", "--reason", "r", "--requested-by", "the holder", "--actor", "dpo"];
    let erased = env.command(&erase).envs(as_keys).output().unwrap();
    assert!(erased.status.success(), "{}", stderr(&erased));
    assert_eq!(
        stdout(&erased),
        "erased subject acc-1: its personal data is unreadable everywhere within 5 s; 1 blind-index entry deleted\n"
    );
    assert_eq!(
        env.psql("SELECT actor || '|' || action || '|' || outcome::text FROM eventline_audit WHERE action IN ('key_store.isolate', 'subject.erase') ORDER BY id"),
        "dba|key_store.isolate|{\"given\": true}\ndba|key_store.isolate|{\"given\": false}\ndpo|subject.erase|{\"key_destroyed\": true, \"blind_index_entries_deleted\": 1}"
    );
    let verified = env.run(&["audit", "verify"]);
    assert!(verified.status.success(), "{}", stderr(&verified));

    // The key store's role reads its keys, and no projection.
    assert_eq!(psql_as(&keys_url, "SELECT count(*) FROM eventline_keys.subject_keys").as_deref(), Ok("1"));
    assert_eq!(
        psql_as(&keys_url, "SELECT count(*) FROM account_balances"),
        Err("ERROR:  permission denied for table account_balances".to_string())
    );
    assert_eq!(
        psql_as(&keys_url, "SELECT count(*) FROM eventline_audit WHERE actor = 'dpo'"),
        Err("ERROR:  permission denied for table eventline_audit".to_string())
    );
}
