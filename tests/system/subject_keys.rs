//! The key store of data subjects on the real PostgreSQL: a subject's first key is kept once
//! whoever makes it, an erasure destroys it and fences the subject for good, and what was sealed
//! under it no longer opens.

use eventline_core::cipher::{self, CipherError, DataKey, FieldContext, KeyEncryptionKey};
use eventline_store::subject_keys::{KeyRing, SubjectKey};
use serde_json::json;

use crate::helpers::{wait_until, TestEnv};

/// One subject's key as the store keeps it, `wrapped` kept when it has none.
async fn key_or_insert(store: &eventline_store::Store, subject: &str, wrapped: &str) -> SubjectKey {
    let made = [(subject.to_string(), wrapped.to_string())];
    store.subject_keys_or_insert(&made).await.unwrap().remove(subject).expect("every subject named has a key")
}

fn kek() -> KeyEncryptionKey {
    KeyEncryptionKey::from_base64("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_subjects_key_is_made_once_and_never_again_after_erasure() {
    let env = TestEnv::new().await;
    let store = &env.store;
    let context =
        FieldContext { event_id: "e-1", event_type: "accounts.AccountOpened", pointer: "/owner", subject: "acc-1" };

    // The first key kept is the subject's key, whoever made it.
    let key = DataKey::generate();
    let wrapped = key.wrap(&kek(), "acc-1");
    assert_eq!(key_or_insert(store, "acc-1", &wrapped).await, SubjectKey::Active { wrapped: wrapped.clone() });
    let other = DataKey::generate().wrap(&kek(), "acc-1");
    assert_eq!(key_or_insert(store, "acc-1", &other).await, SubjectKey::Active { wrapped: wrapped.clone() });
    let racing: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let mine = DataKey::generate().wrap(&kek(), "acc-2");
                key_or_insert(&store, "acc-2", &mine).await
            })
        })
        .collect();
    let mut kept = Vec::new();
    for task in racing {
        kept.push(task.await.unwrap());
    }
    assert!(kept.windows(2).all(|pair| pair[0] == pair[1]), "{kept:?}");

    // What was sealed opens with the stored key.
    let sealed = cipher::seal(&key, &context, &json!("Ada Lovelace"));
    let SubjectKey::Active { wrapped: stored } = &store.subject_keys(&["acc-1".into()]).await.unwrap()["acc-1"] else {
        panic!("acc-1 has a key")
    };
    let stored_key = DataKey::unwrap(&kek(), "acc-1", stored).unwrap();
    assert_eq!(cipher::open(&stored_key, &context, &sealed), Ok(json!("Ada Lovelace")));

    // Erased: the key is gone from the store, the subject is fenced, erasing again says so.
    assert!(store.erase_subject_key("acc-1", "test", "a test", "the subject").await.unwrap().key_destroyed);
    assert!(!store.erase_subject_key("acc-1", "test", "a test", "the subject").await.unwrap().key_destroyed);
    assert_eq!(
        env.psql(
            "SELECT count(*) FROM eventline_keys.subject_keys WHERE wrapped_key = '{wrapped}'"
                .replace("{wrapped}", &wrapped)
                .as_str()
        ),
        "0"
    );
    let fenced = key_or_insert(store, "acc-1", &DataKey::generate().wrap(&kek(), "acc-1")).await;
    assert!(matches!(fenced, SubjectKey::Erased { .. }), "{fenced:?}");
    // A subject never seen is fenced by its erasure too.
    assert!(!store.erase_subject_key("acc-9", "test", "a test", "the subject").await.unwrap().key_destroyed);
    let fenced = key_or_insert(store, "acc-9", &DataKey::generate().wrap(&kek(), "acc-9")).await;
    assert!(matches!(fenced, SubjectKey::Erased { .. }), "{fenced:?}");
    let keys = store.subject_keys(&["acc-1".into(), "acc-2".into(), "acc-3".into()]).await.unwrap();
    assert!(matches!(keys["acc-1"], SubjectKey::Erased { .. }));
    assert!(matches!(keys["acc-2"], SubjectKey::Active { .. }));
    assert!(!keys.contains_key("acc-3"));
    // Without its key, nothing sealed for the subject opens: another key made up does not.
    assert_eq!(cipher::open(&DataKey::generate(), &context, &sealed), Err(CipherError::DoesNotOpen));
    // A key row cannot hold a key and an erasure at once.
    let output = std::process::Command::new("psql")
        .args([
            env.database_url.expose(),
            "-XAtq",
            "-c",
            "UPDATE eventline_keys.subject_keys SET wrapped_key = 'ekw1.x' WHERE subject = 'acc-1'",
        ])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&output.stderr).contains("subject_keys_erased_have_no_key"), "{output:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn processes_read_keys_through_a_ring_that_obeys_an_erasure_within_its_lifetime() {
    let env = TestEnv::new().await;
    let lifetime = std::time::Duration::from_millis(300);
    let gateway = KeyRing::with_lifetime(env.store.clone(), kek(), lifetime);
    let api = KeyRing::with_lifetime(env.store.clone(), kek(), lifetime);
    let context =
        FieldContext { event_id: "e-1", event_type: "accounts.AccountOpened", pointer: "/owner", subject: "acc-1" };

    // Nothing sealed for a subject yet: nothing to open with.
    assert!(api.key_for_opening("acc-1").await.unwrap().is_none());
    // The first sealing makes the key; the other process opens with it once its lifetime passed.
    let key = gateway.key_for_sealing("acc-1").await.unwrap().expect("a subject not erased has a key");
    let sealed = cipher::seal(&key, &context, &json!("Ada Lovelace"));
    tokio::time::sleep(lifetime).await;
    let opening = api.key_for_opening("acc-1").await.unwrap().expect("the key made for sealing");
    assert_eq!(cipher::open(&opening, &context, &sealed), Ok(json!("Ada Lovelace")));

    // Erased: within the lifetime both processes stop using the key.
    assert!(env.store.erase_subject_key("acc-1", "test", "a test", "the subject").await.unwrap().key_destroyed);
    tokio::time::sleep(lifetime).await;
    assert!(gateway.key_for_sealing("acc-1").await.unwrap().is_none(), "no key is made for an erased subject");
    assert!(api.key_for_opening("acc-1").await.unwrap().is_none());

    // Many subjects at once, two processes racing: one key each, the same for both; none for
    // the erased one.
    let subjects: Vec<String> = (0..50).map(|i| format!("bulk-{i}")).chain(["acc-1".to_string()]).collect();
    let subjects: Vec<&str> = subjects.iter().map(String::as_str).collect();
    let other = KeyRing::with_lifetime(env.store.clone(), kek(), lifetime);
    let (first, second) = tokio::join!(gateway.keys_for_sealing(&subjects), other.keys_for_sealing(&subjects));
    let (first, second) = (first.unwrap(), second.unwrap());
    assert!(first[50].is_none() && second[50].is_none(), "no key for the erased acc-1");
    // The one stored, too: a key made here and kept is used as made, not opened again.
    let reader = KeyRing::with_lifetime(env.store.clone(), kek(), lifetime);
    for (place, subject) in subjects[..50].iter().enumerate() {
        let sealed = cipher::seal(first[place].as_ref().unwrap(), &context, &json!(subject));
        assert_eq!(cipher::open(second[place].as_ref().unwrap(), &context, &sealed), Ok(json!(subject)));
        let stored = reader.key_for_opening(subject).await.unwrap().unwrap();
        assert_eq!(cipher::open(&stored, &context, &sealed), Ok(json!(subject)));
    }
    // A subject named twice in a batch, once in hand and once not: its one key in both places.
    let repeated = ["bulk-0", "fresh-1", "fresh-1", "bulk-0"];
    let keys = gateway.keys_for_sealing(&repeated).await.unwrap();
    let sealed = cipher::seal(keys[1].as_ref().unwrap(), &context, &json!("x"));
    assert_eq!(cipher::open(keys[2].as_ref().unwrap(), &context, &sealed), Ok(json!("x")));
    let sealed = cipher::seal(keys[0].as_ref().unwrap(), &context, &json!("y"));
    assert_eq!(cipher::open(keys[3].as_ref().unwrap(), &context, &sealed), Ok(json!("y")));
    assert_eq!(env.psql("SELECT count(*) FROM eventline_keys.subject_keys WHERE subject = 'fresh-1'"), "1");
    assert_eq!(env.psql("SELECT count(*) FROM eventline_keys.subject_keys WHERE subject LIKE 'bulk-%'"), "50");

    // Another key-encryption key cannot open the stored keys, and says whose.
    let other = KeyEncryptionKey::from_base64("BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=").unwrap();
    gateway.key_for_sealing("acc-2").await.unwrap();
    let error = KeyRing::new(env.store.clone(), other).key_for_opening("acc-2").await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "the key-encryption key does not open the data key of subject `acc-2`: the sealed value does not open with this key for this event, field and subject"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_erasure_is_announced_to_every_key_ring_which_drops_the_key_at_once() {
    let env = TestEnv::new().await;
    // Keys trusted for an hour: only the announcement can make the rings let go sooner.
    let hour = std::time::Duration::from_secs(3600);
    let gateway = KeyRing::with_lifetime(env.store.clone(), kek(), hour);
    let api = KeyRing::with_lifetime(env.store.clone(), kek(), hour);
    assert!(gateway.key_for_sealing("acc-1").await.unwrap().is_some());
    assert!(gateway.key_for_sealing("acc-2").await.unwrap().is_some());
    assert!(api.key_for_opening("acc-1").await.unwrap().is_some());
    // The rings listen from a task of their own; give them a moment to start.
    wait_until("the key rings to listen for erasures", || async {
        env.psql("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query ILIKE 'LISTEN %'")
            == "2"
    })
    .await;

    assert!(env.store.erase_subject_key("acc-1", "test", "a test", "the subject").await.unwrap().key_destroyed);
    wait_until("both rings to drop the erased key", || async {
        api.key_for_opening("acc-1").await.unwrap().is_none()
            && gateway.key_for_sealing("acc-1").await.unwrap().is_none()
    })
    .await;
    // The others stay in hand.
    assert!(gateway.key_for_sealing("acc-2").await.unwrap().is_some());
}
