//! Personal data sealed at the way in (a key-encryption key configured): the owner's name never
//! reaches Kafka or PostgreSQL in clear, a caller with the `personal` scope reads it, and once its
//! subject's key is erased it reads as null while every other value stays exact, and personal data
//! about that subject is refused.

use std::sync::Arc;

use eventline_core::cipher::KeyEncryptionKey;
use eventline_core::envelope::CloudEvent;
use eventline_producers::outbox::{OutboxWriteError, OutboxWriter};
use eventline_producers::sealing::{SealError, Sealer};
use eventline_store::sqlx;
use eventline_store::subject_keys::KeyRing;
use serde_json::{json, Value};

use crate::helpers::{stderr, stdout, wait_until, Services, TestEnv};

const KEK: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fn opened(id: &str, account: &str, owner: &str) -> Value {
    json!({"specversion": "1.0", "id": id, "source": "/bank", "type": "accounts.AccountOpened",
           "subject": account, "data": {"account_id": account, "owner": owner, "currency": "EUR"}})
}

fn deposit(id: &str, account: &str) -> Value {
    json!({"specversion": "1.0", "id": id, "source": "/bank", "type": "accounts.FundsDeposited", "subject": account,
           "dataversion": 2, "data": {"account_id": account, "amount_minor": 500, "currency": "EUR", "channel": "card"}})
}

#[tokio::test(flavor = "multi_thread")]
async fn personal_fields_are_sealed_at_the_way_in_and_opened_only_for_the_personal_scope() {
    let env = TestEnv::with_app(Services::from_env(), &[("EVENTLINE_KEY_ENCRYPTION_KEY", KEK)]).await;
    let up = env.spawn_http("up", &["up"], &[]).await;
    let (_, writer) = env.create_key("writer", &["accounts.*"]);
    let (_, personal) = env.create_key_with_scopes("support", &[], &["read:account_balances", "personal"]);
    let post = |event: Value| {
        let writer = writer.clone();
        let up = &up;
        async move {
            up.post(
                &[("authorization", &format!("Bearer {writer}")), ("content-type", "application/cloudevents+json")],
                event.to_string(),
            )
            .await
        }
    };
    let (gateway_canary, cli_canary) = ("Ada Canary-g7", "Grace Canary-c3");

    // Through the gateway and through `eventline publish`.
    assert_eq!(post(opened("o-1", "acc-1", gateway_canary)).await.status(), 202);
    assert_eq!(post(deposit("d-1", "acc-1")).await.status(), 202);
    let published = env.run_with_stdin(&["publish"], format!("{}\n", opened("o-2", "acc-2", cli_canary)).as_bytes());
    assert!(published.status.success(), "{}", stderr(&published));
    wait_until("both accounts to be applied", || async { env.balances().await.len() == 2 }).await;

    // Neither Kafka nor PostgreSQL holds the names in clear.
    let records = env.run(&["tail", "accounts.events", "--from", "start", "--no-follow", "--format", "ndjson"]);
    let records = stdout(&records);
    assert_eq!(records.lines().count(), 3, "{records}");
    let dump = std::process::Command::new("pg_dump").args(["--data-only", env.database_url.expose()]).output().unwrap();
    assert!(dump.status.success(), "{}", stderr(&dump));
    let dump = stdout(&dump);
    for canary in [gateway_canary, cli_canary] {
        assert!(!records.contains(canary) && !dump.contains(canary), "{canary} is stored in clear");
        assert!(!up.process.log().contains(canary), "{canary} is in the log");
    }
    assert_eq!(env.psql("SELECT count(*) FROM account_balances WHERE owner LIKE 'elc1.%'"), "2");

    // A sealed owner copied into another account's event (written around eventline) is set aside
    // as a dead letter, never applied as that account's owner.
    let stolen = records
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .find_map(|record| record["data"]["owner"].as_str().map(str::to_string))
        .expect("an opened account's record");
    let mut forged = opened("o-9", "acc-3", "x");
    forged["data"]["owner"] = json!(stolen);
    crate::kafka_binding::produce(
        &env,
        "acc-3",
        forged.to_string().as_bytes(),
        &[("content-type", "application/cloudevents+json")],
    )
    .await;
    wait_until("the forged event to be passed", || async { env.applied_through("account_balances").await == 4 }).await;
    let dead = env.store.dead_letters("account_balances").await.unwrap();
    let reasons: Vec<(&str, &str)> =
        dead.iter().map(|d| (d.record_key.as_deref().unwrap_or_default(), d.reason.as_str())).collect();
    assert_eq!(
        reasons,
        [("acc-3", "field `data.owner` holds a value sealed for another event, field or subject (at /data/owner)")]
    );
    assert_eq!(env.balances().await.len(), 2);

    // The personal scope reads them; without it they are null; everything else is exact.
    let read = |path: &str, token: Option<String>| {
        let up = &up;
        let path = path.to_string();
        async move { up.get_as(&path, token.as_deref()).await.json::<Value>().await.unwrap() }
    };
    assert_eq!(read("/v1/accounts/acc-1", Some(personal.clone())).await["owner"], gateway_canary);
    assert_eq!(read("/v1/tables/account_balances/acc-2", Some(personal.clone())).await["owner"], cli_canary);
    let without = up.get("/v1/accounts/acc-1").await.json::<Value>().await.unwrap();
    assert_eq!((without["owner"].clone(), without["balance_minor"].clone()), (Value::Null, json!(500)));

    // Erased: the name is gone for good (null), the balance is not; personal data about the
    // subject is refused, the rest of its events are not.
    let erase = [
        "erase",
        "--subject",
        "acc-1",
        "--reason",
        "ticket 42",
        "--requested-by",
        "the account holder",
        "--actor",
        "dpo",
    ];
    let erased = env.run(&erase);
    assert!(erased.status.success(), "{}", stderr(&erased));
    assert_eq!(
        stdout(&erased),
        "erased subject acc-1: its personal data is unreadable everywhere within 5 s; 1 blind-index entry deleted\n"
    );
    // Each part is required, and none may be empty.
    let missing = env.run(&["erase", "--subject", "acc-1", "--requested-by", "x"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        stderr(&missing).contains("the following required arguments were not provided:\n  --reason <REASON>"),
        "{}",
        stderr(&missing)
    );
    let empty = env.run(&["erase", "--subject", "", "--reason", "r", "--requested-by", "x"]);
    assert_eq!(empty.status.code(), Some(2));
    assert!(
        stderr(&empty).contains("a value is required for '--subject <SUBJECT>' but none was supplied"),
        "{}",
        stderr(&empty)
    );
    let again = env.run(&erase);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(stdout(&again), "subject acc-1 was already erased (or had no personal data): it stays fenced\n");
    assert_eq!(
        env.psql("SELECT actor || '|' || reason || '|' || target::text || '|' || outcome::text FROM eventline_audit WHERE action = 'subject.erase' ORDER BY id"),
        "dpo|ticket 42|{\"subject\": \"acc-1\", \"requested_by\": \"the account holder\"}|{\"key_destroyed\": true, \"blind_index_entries_deleted\": 1}\n\
         dpo|ticket 42|{\"subject\": \"acc-1\", \"requested_by\": \"the account holder\"}|{\"key_destroyed\": false, \"blind_index_entries_deleted\": 0}"
    );
    assert!(env.run(&["audit", "verify"]).status.success());
    wait_until("the API to drop the erased key", || async {
        read("/v1/accounts/acc-1", Some(personal.clone())).await["owner"].is_null()
    })
    .await;
    assert_eq!(read("/v1/accounts/acc-1", Some(personal.clone())).await["balance_minor"], 500);
    assert_eq!(read("/v1/accounts/acc-2", Some(personal.clone())).await["owner"], cli_canary);
    let refused = post(opened("o-3", "acc-1", "Ada Again")).await;
    assert_eq!(refused.status(), 409);
    let problem: Value = refused.json().await.unwrap();
    assert_eq!(problem["type"], "https://eventline.dev/problems/subject-erased");
    assert_eq!(
        problem["detail"],
        "event 0: its data subject `acc-1` was erased; personal data about it is refused; nothing was published"
    );
    assert_eq!(post(deposit("d-2", "acc-1")).await.status(), 202);
    let refused = env.run_with_stdin(&["publish"], format!("{}\n", opened("o-4", "acc-1", "Ada Again")).as_bytes());
    assert_eq!(refused.status.code(), Some(65), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("its data subject `acc-1` was erased"), "{}", stderr(&refused));
}

/// The outbox relay seals like the gateway: rows an upstream service wrote in clear reach Kafka
/// and the projection sealed, the rows kept after publishing hold the sealed event, and a row
/// with personal data about an erased subject is refused, its key's later rows waiting behind it.
#[tokio::test(flavor = "multi_thread")]
async fn the_outbox_relay_seals_personal_data_and_refuses_it_for_an_erased_subject() {
    let env = TestEnv::with_app(Services::from_env(), &[("EVENTLINE_KEY_ENCRYPTION_KEY", KEK)]).await;
    let up = env.spawn_http("up", &["up"], &[]).await;
    let outbox_db = env.database_url.expose().to_string();
    let relay =
        env.spawn("relay", &["outbox-relay", "--install"], &[("EVENTLINE_OUTBOX_DATABASE_URL", outbox_db.as_str())]);
    wait_until("the relay to start", || async { relay.log().contains("Outbox relay started.") }).await;
    let (_, personal) = env.create_key_with_scopes("support", &[], &["read:account_balances", "personal"]);
    let erased = env.run(&["erase", "--subject", "acc-2", "--reason", "r", "--requested-by", "x"]);
    assert!(erased.status.success(), "{}", stderr(&erased));
    let (canary, refused_canary) = ("Ada Outbox-Canary-q8", "Erased Outbox-Canary-z1");

    let rows = [
        opened("o-1", "acc-1", canary),
        deposit("d-1", "acc-1"),
        opened("o-2", "acc-2", refused_canary),
        deposit("d-2", "acc-2"),
    ];
    let values: Vec<String> = rows.iter().map(|row| format!("('{row}')")).collect();
    env.psql(&format!("INSERT INTO eventline_outbox (event) VALUES {}", values.join(", ")));

    // A Rust service's writer seals before the row is written; the relay sends it as it is.
    let registry = Arc::new(eventline_reference::registry().unwrap());
    let writer = || {
        let kek = KeyEncryptionKey::from_base64(KEK).unwrap();
        OutboxWriter::new(registry.clone()).sealing(Sealer::new(registry.clone(), KeyRing::new(env.store.clone(), kek)))
    };
    let event = |value: Value| CloudEvent::from_value(value).unwrap();
    let written_canary = "Grace Written-Canary-w4";
    let mut tx = env.store.pool().begin().await.unwrap();
    writer().write(&mut tx, vec![event(opened("o-3", "acc-3", written_canary))]).await.unwrap();
    let in_transaction: String =
        sqlx::query_scalar("SELECT event->'data'->>'owner' FROM eventline_outbox WHERE event->>'id' = 'o-3'")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
    assert!(in_transaction.starts_with("elc2."), "{in_transaction}");
    tx.commit().await.unwrap();
    let mut tx = env.store.pool().begin().await.unwrap();
    match writer()
        .write(&mut tx, vec![deposit("d-3", "acc-3"), opened("o-4", "acc-2", "x")].into_iter().map(event).collect())
        .await
    {
        Err(OutboxWriteError::Sealing(SealError::Erased { index, subject })) => {
            assert_eq!((index, subject.as_str()), (1, "acc-2"))
        }
        other => panic!("expected the erased subject's event to be refused, got {other:?}"),
    }
    let mut bad = opened("o-5", "acc-3", "x");
    bad["data"]["currency"] = json!(7);
    match writer().write(&mut tx, vec![event(bad)]).await {
        Err(error @ OutboxWriteError::Invalid { index: 0, .. }) => {
            assert_eq!(error.to_string(), "event 0: field `data.currency` must be a string, found 7")
        }
        other => panic!("expected the invalid event to be refused, got {other:?}"),
    }
    drop(tx);
    wait_until("acc-1 and acc-3 to be applied", || async {
        env.balances().await.iter().map(|(account, balance, _)| (account.clone(), *balance)).collect::<Vec<_>>()
            == [("acc-1".to_string(), 500), ("acc-3".to_string(), 0)]
    })
    .await;

    assert_eq!(
        env.psql("SELECT event->>'id' || '|' || (published_at IS NOT NULL)::text || '|' || coalesce(last_error, '') FROM eventline_outbox ORDER BY id"),
        "o-1|true|\n\
         d-1|true|\n\
         o-2|false|its data subject `acc-2` was erased; personal data about it is refused: take the personal data out of the row, or delete it [subject-erased]\n\
         d-2|false|\n\
         o-3|true|"
    );
    assert_eq!(env.psql("SELECT count(*) FROM eventline_outbox WHERE event->'data'->>'owner' LIKE 'elc2.%'"), "2");
    let records = env.run(&["tail", "accounts.events", "--from", "start", "--no-follow", "--format", "ndjson"]);
    let records = stdout(&records);
    assert_eq!(records.lines().count(), 3, "{records}");
    let dump = std::process::Command::new("pg_dump").args(["--data-only", env.database_url.expose()]).output().unwrap();
    let dump = stdout(&dump);
    for canary in [canary, written_canary] {
        assert!(!records.contains(canary) && !dump.contains(canary) && !relay.log().contains(canary), "{canary}");
    }
    // The refused row is the upstream service's to fix; eventline copied it nowhere.
    assert_eq!(dump.matches(refused_canary).count(), 1, "only in the refused outbox row");
    assert!(!records.contains(refused_canary) && !relay.log().contains(refused_canary));

    let read = up.get_as("/v1/accounts/acc-1", Some(&personal)).await.json::<Value>().await.unwrap();
    assert_eq!((read["owner"].clone(), read["balance_minor"].clone()), (json!(canary), json!(500)));
    let read = up.get_as("/v1/accounts/acc-3", Some(&personal)).await.json::<Value>().await.unwrap();
    assert_eq!(read["owner"], written_canary);
}

/// Two declarative projections of the same sealed page views (the SQL of each stores the session
/// id as it receives it): one that declares the column personal receives the form that names what
/// the value is bound to (the API opens it), one that declares no personal column receives the
/// shorter form the event carries. Both refuse a sealed value moved to another subject's event.
#[tokio::test(flavor = "multi_thread")]
async fn a_projection_keeping_no_personal_data_is_handed_sealed_fields_as_carried() {
    let root = std::env::temp_dir().join(format!("eventline-sealed-forms-{}", rand::random::<u32>()));
    for (name, personal) in [("kept_sessions", true), ("seen_sessions", false)] {
        let folder = root.join(name);
        std::fs::create_dir_all(folder.join("migrations")).unwrap();
        let personal = if personal { format!("personal_columns = [\"{name}.session_id\"]\n") } else { String::new() };
        let manifest = format!(
            "name = \"{name}\"\nversion = 1\ntopics = [\"activity.events\"]\ntables = [\"{name}\"]\n{personal}\
             subject_columns = [\"{name}.user_id\"]\nignores = [\"activity.FeatureUsed\"]\n\n\
             [handles]\n\"activity.PageViewed\" = [1]\n"
        );
        std::fs::write(folder.join("projection.toml"), manifest).unwrap();
        std::fs::write(
            folder.join("migrations/1_sessions.sql"),
            format!("CREATE TABLE {name} (user_id text PRIMARY KEY, session_id text);"),
        )
        .unwrap();
        std::fs::write(
            folder.join("apply.sql"),
            format!(
                "CREATE FUNCTION apply(batch jsonb) RETURNS TABLE(ord int, reason text) LANGUAGE sql AS $$
    INSERT INTO {name} (user_id, session_id)
    SELECT e->'data'->>'user_id', e->'data'->>'session_id' FROM jsonb_array_elements(batch) AS e
    ON CONFLICT (user_id) DO UPDATE SET session_id = excluded.session_id;
    SELECT NULL::int, NULL::text WHERE false;
$$;"
            ),
        )
        .unwrap();
    }
    let env = TestEnv::with_app(
        Services::from_env(),
        &[("EVENTLINE_PROJECTIONS_DIR", root.to_str().unwrap()), ("EVENTLINE_KEY_ENCRYPTION_KEY", KEK)],
    )
    .await;
    let viewed = |id: &str, user: &str, session: &str| {
        json!({"specversion": "1.0", "id": id, "source": "/web", "type": "activity.PageViewed", "subject": user,
               "data": {"user_id": user, "path": "/pricing", "session_id": session}})
    };
    let canary = "session-Canary-5e1";
    env.publish("views", &[viewed("v-1", "u-1", canary), viewed("v-2", "u-2", "session-2")]);
    let kept = env.spawn("kept", &["worker", "kept_sessions"], &[]);
    let seen = env.spawn("seen", &["worker", "seen_sessions"], &[]);
    let forms = |table: &str| {
        env.psql(&format!(
            "SELECT string_agg(user_id || ' ' || left(session_id, 5), ',' ORDER BY user_id) FROM {table}"
        ))
    };
    wait_until("both projections to apply both views", || async {
        forms("kept_sessions") == "u-1 elc1.,u-2 elc1." && forms("seen_sessions") == "u-1 elc2.,u-2 elc2."
    })
    .await;
    let dump = std::process::Command::new("pg_dump").args(["--data-only", env.database_url.expose()]).output().unwrap();
    assert!(!stdout(&dump).contains(canary), "the session id is stored in clear");

    // The short form is bound to its event as the long one is: moved into u-3's event, it is
    // refused by both.
    let stolen = env.psql("SELECT session_id FROM seen_sessions WHERE user_id = 'u-1'");
    let mut forged = viewed("v-9", "u-3", "x");
    forged["data"]["session_id"] = json!(stolen);
    crate::kafka_binding::produce_to(
        &env,
        "activity.events",
        "u-3",
        forged.to_string().as_bytes(),
        &[("content-type", "application/cloudevents+json")],
    )
    .await;
    for projection in ["kept_sessions", "seen_sessions"] {
        wait_until("the forged view to be passed", || async { env.applied_through(projection).await == 3 }).await;
        let dead = env.store.dead_letters(projection).await.unwrap();
        let reasons: Vec<(&str, &str)> =
            dead.iter().map(|d| (d.record_key.as_deref().unwrap_or_default(), d.reason.as_str())).collect();
        assert_eq!(
            reasons,
            [(
                "u-3",
                "field `data.session_id` holds a value sealed for another event, field or subject (at /data/session_id)"
            )],
            "{projection}"
        );
    }
    assert_eq!(env.psql("SELECT count(*) FROM seen_sessions"), "2");
    kept.terminate();
    seen.terminate();
    std::fs::remove_dir_all(root).unwrap();
}
