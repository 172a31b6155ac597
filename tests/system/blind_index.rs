//! Sealed owners found by equality through their blind index (issue 16): the digests are kept
//! with the keys (never in Kafka), the owner filter of the query API and the generic table reads'
//! filters on a personal column find accounts by them, and
//! erasing a subject deletes its digests in the transaction that destroys its key.

use base64::Engine;
use eventline_store::subject_keys::BlindIndexEntry;
use serde_json::{json, Value};

use crate::helpers::{stderr, stdout, wait_until, Services, TestEnv};

const KEK: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fn opened(account: &str, owner: &str) -> Value {
    json!({"specversion": "1.0", "id": format!("o-{account}"), "source": "/bank", "type": "accounts.AccountOpened",
           "subject": account, "data": {"account_id": account, "owner": owner, "currency": "EUR"}})
}

fn ids(page: &Value) -> Vec<&str> {
    page["items"].as_array().unwrap().iter().map(|a| a["account_id"].as_str().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn sealed_owners_are_found_through_their_blind_index_until_erased() {
    let env = TestEnv::with_app(Services::from_env(), &[("EVENTLINE_KEY_ENCRYPTION_KEY", KEK)]).await;
    let up = env.spawn_http("up", &["up"], &[]).await;
    let (_, writer) = env.create_key("writer", &["*"]);
    let (_, personal) = env.create_key_with_scopes("support", &[], &["read:*", "personal"]);
    let (_, reader) = env.create_key_with_scopes("reader", &[], &["read:*"]);
    let id = uuid::Uuid::new_v4().simple().to_string();
    let (shared, other) = (format!("Shared{id}"), format!("Other{id}"));
    let batch = json!([opened("acc-a", &shared), opened("acc-b", &shared), opened("acc-c", &other)]);
    let accepted = up
        .post(
            &[("authorization", &format!("Bearer {writer}")), ("content-type", "application/cloudevents-batch+json")],
            batch.to_string(),
        )
        .await;
    assert_eq!(accepted.status(), 202);
    wait_until("the accounts to be projected", || async { env.psql("SELECT count(*) FROM account_balances") == "3" })
        .await;
    assert_eq!(env.psql("SELECT count(*) FROM account_balances WHERE owner LIKE 'elc1.%'"), "3");

    let find = |owner: String, query: &'static str| {
        let (up, personal) = (&up, &personal);
        async move {
            let answer = up.get_as(&format!("/v1/accounts?owner={owner}{query}"), Some(personal)).await;
            assert_eq!(answer.status(), 200);
            answer.json::<Value>().await.unwrap()
        }
    };
    let both = find(shared.clone(), "").await;
    assert_eq!(ids(&both), ["acc-a", "acc-b"]);
    assert_eq!(both["items"][0]["owner"], shared.as_str());
    assert_eq!(ids(&find(other.clone(), "").await), ["acc-c"]);
    assert_eq!(ids(&find(format!("shared{id}"), "").await), Vec::<&str>::new(), "exact, case included");
    // Page by page.
    let first = find(shared.clone(), "&limit=1").await;
    assert_eq!(ids(&first), ["acc-a"]);
    let cursor = first["next_cursor"].as_str().unwrap().to_string();
    let cursor = Box::leak(format!("&limit=1&cursor={cursor}").into_boxed_str());
    assert_eq!(ids(&find(shared.clone(), cursor).await), ["acc-b"]);
    // The generic table reads find them the same way, owners opened.
    let table = |owner: String| {
        let (up, personal) = (&up, &personal);
        async move {
            let answer = up.get_as(&format!("/v1/tables/account_balances?owner={owner}"), Some(personal)).await;
            assert_eq!(answer.status(), 200);
            let page = answer.json::<Value>().await.unwrap();
            let rows = page["items"].as_array().unwrap().clone();
            rows.iter()
                .map(|r| format!("{} {}", r["account_id"].as_str().unwrap(), r["owner"].as_str().unwrap()))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(table(shared.clone()).await, [format!("acc-a {shared}"), format!("acc-b {shared}")]);
    assert_eq!(table(format!("Nobody{id}")).await, Vec::<String>::new());
    // Without the personal scope, the filter is refused (which accounts it finds tells whose).
    let refused = up.get_as(&format!("/v1/accounts?owner={other}"), Some(&reader)).await;
    assert_eq!(refused.status(), 403);

    // The digests are in the key store, one per account, and in no Kafka record.
    assert_eq!(
        env.psql(
            "SELECT string_agg(subject || ':' || index_name, ',' ORDER BY subject) FROM eventline_keys.blind_index"
        ),
        "acc-a:account-owner,acc-b:account-owner,acc-c:account-owner"
    );
    let digests = env.psql("SELECT string_agg(encode(digest, 'hex'), ',') FROM eventline_keys.blind_index");
    let records = String::from_utf8_lossy(&crate::personal_data::raw_records(&env).await).into_owned();
    for hex in digests.split(',') {
        let bytes: Vec<u8> =
            (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
        let base64url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes);
        let base64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
        for form in [hex, &base64url, &base64] {
            assert!(!records.contains(form), "a digest is in Kafka ({form})");
            assert!(!records.is_empty());
        }
    }

    // Erased: its digest goes with its key, at once; the other owner's account is still found.
    let erased = env.run(&["erase", "--subject", "acc-a", "--reason", "r", "--requested-by", "the person"]);
    assert!(erased.status.success(), "{}", stderr(&erased));
    assert_eq!(
        stdout(&erased),
        "erased subject acc-a: its personal data is unreadable everywhere within 5 s; 1 blind-index entry deleted\n"
    );
    assert_eq!(ids(&find(shared.clone(), "").await), ["acc-b"]);
    assert_eq!(table(shared.clone()).await, [format!("acc-b {shared}")]);
    assert_eq!(env.psql("SELECT count(*) FROM eventline_keys.blind_index WHERE subject = 'acc-a'"), "0");
    let again = env.run(&["erase", "--subject", "acc-a", "--reason", "r", "--requested-by", "the person"]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(stdout(&again), "subject acc-a was already erased (or had no personal data): it stays fenced\n");
    assert_eq!(
        env.psql("SELECT outcome::text FROM eventline_audit WHERE action = 'subject.erase' ORDER BY id LIMIT 1"),
        r#"{"key_destroyed": true, "blind_index_entries_deleted": 1}"#
    );

    // An entry for an erased subject (a process that sealed before it heard of the erasure) is
    // not kept.
    env.store
        .keep_blind_index(&[
            BlindIndexEntry { index_name: "account-owner".into(), digest: vec![1; 32], subject: "acc-a".into() },
            BlindIndexEntry { index_name: "account-owner".into(), digest: vec![1; 32], subject: "acc-b".into() },
        ])
        .await
        .unwrap();
    assert_eq!(
        env.psql("SELECT string_agg(subject, ',' ORDER BY subject) FROM eventline_keys.blind_index WHERE digest = '\\x0101010101010101010101010101010101010101010101010101010101010101'"),
        "acc-b"
    );
    up.process.terminate();
}
