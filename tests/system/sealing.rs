//! Personal data sealed at the way in (a key-encryption key configured): the owner's name never
//! reaches Kafka or PostgreSQL in clear, a caller with the `personal` scope reads it, and once its
//! subject's key is erased it reads as null while every other value stays exact, and personal data
//! about that subject is refused.

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
    assert_eq!(stdout(&erased), "erased subject acc-1: its personal data is unreadable everywhere within 5 s\n");
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
        "dpo|ticket 42|{\"subject\": \"acc-1\", \"requested_by\": \"the account holder\"}|{\"key_destroyed\": true}\n\
         dpo|ticket 42|{\"subject\": \"acc-1\", \"requested_by\": \"the account holder\"}|{\"key_destroyed\": false}"
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
