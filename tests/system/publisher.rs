//! The publisher library for Rust services: the same validation as every other way in.

use std::collections::HashMap;
use std::sync::Arc;

use eventline_core::config::Settings;
use eventline_core::envelope::CloudEvent;
use eventline_producers::publisher::{PublishError, Publisher};
use serde_json::json;

use crate::helpers::TestEnv;

fn event(id: &str, amount: i64) -> CloudEvent {
    CloudEvent::from_value(json!({"specversion": "1.0", "id": id, "source": "/lib", "type": "accounts.FundsDeposited",
        "subject": "a1", "dataversion": 2, "data": {"account_id": "a1", "amount_minor": amount, "currency": "EUR", "channel": "online"}}))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_library_validates_then_publishes_and_reports_positions() {
    let env = TestEnv::new().await;
    let vars = HashMap::from([
        ("EVENTLINE_KAFKA_BROKERS".to_string(), env.kafka.bootstrap_servers()),
        ("EVENTLINE_NAMESPACE".to_string(), env.id.clone()),
    ]);
    let settings = Settings::load_from(None, &vars).unwrap();
    let publisher = Publisher::connect(&settings, Arc::new(eventline_reference::registry().unwrap())).await.unwrap();

    let refused = publisher.publish_events(vec![event("l1", 5), event("l2", -5), event("l3", 5)]).await;
    match refused {
        Err(PublishError::Invalid { index, error }) => {
            assert_eq!((index, error.pointer().as_str()), (1, "/data/amount_minor"));
        }
        other => panic!("expected the second event to be refused, got {other:?}"),
    }
    assert_eq!(env.end_offsets("accounts.events").await.iter().sum::<i64>(), 0, "nothing of the batch went out");

    let first = publisher.publish_event(event("l4", 5)).await.unwrap();
    let batch = publisher.publish_events(vec![event("l5", 1), event("l6", 2)]).await.unwrap();
    assert_eq!(first.topic, env.topic("accounts.events"));
    assert_eq!(
        batch.iter().map(|p| p.offset).collect::<Vec<_>>(),
        [first.offset + 1, first.offset + 2],
        "same key, same partition, in order"
    );
    let ends = env.end_offsets("accounts.events").await;
    assert_eq!(ends[first.partition as usize], first.offset + 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_library_seals_personal_data_when_given_a_sealer() {
    use eventline_core::cipher::KeyEncryptionKey;
    use eventline_producers::sealing::{SealError, Sealer};
    use eventline_store::subject_keys::KeyRing;

    let env = TestEnv::new().await;
    let vars = HashMap::from([
        ("EVENTLINE_KAFKA_BROKERS".to_string(), env.kafka.bootstrap_servers()),
        ("EVENTLINE_NAMESPACE".to_string(), env.id.clone()),
    ]);
    let settings = Settings::load_from(None, &vars).unwrap();
    let registry = Arc::new(eventline_reference::registry().unwrap());
    let kek = KeyEncryptionKey::from_base64("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").unwrap();
    let publisher = Publisher::connect(&settings, registry.clone())
        .await
        .unwrap()
        .sealing(Sealer::new(registry, KeyRing::new(env.store.clone(), kek)));
    let canary = "Ada Canary-lib";
    let opened = |id: &str| {
        CloudEvent::from_value(
            json!({"specversion": "1.0", "id": id, "source": "/lib", "type": "accounts.AccountOpened",
            "subject": "a1", "data": {"account_id": "a1", "owner": canary, "currency": "EUR"}}),
        )
        .unwrap()
    };
    publisher.publish_event(opened("s1")).await.unwrap();
    let tail = env.run(&["tail", "accounts.events", "--from", "start", "--no-follow", "--format", "ndjson"]);
    let records = String::from_utf8_lossy(&tail.stdout).to_string();
    assert!(records.contains("\"owner\":\"elc2.") && !records.contains(canary), "{records}");

    assert!(env.store.erase_subject_key("a1", "test", "a test", "the subject").await.unwrap().key_destroyed);
    // A fresh publisher: this one trusts the key it read for up to 5 s.
    let refused = Publisher::connect(&settings, Arc::new(eventline_reference::registry().unwrap()))
        .await
        .unwrap()
        .sealing(Sealer::new(
            Arc::new(eventline_reference::registry().unwrap()),
            KeyRing::new(
                env.store.clone(),
                KeyEncryptionKey::from_base64("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").unwrap(),
            ),
        ))
        .publish_events(vec![event("s2", 5), opened("s3")])
        .await;
    match refused {
        Err(PublishError::Sealing(SealError::Erased { index, subject })) => {
            assert_eq!((index, subject.as_str()), (1, "a1"))
        }
        other => panic!("expected the erased subject's event to be refused, got {other:?}"),
    }
    assert_eq!(
        env.end_offsets("accounts.events").await.iter().sum::<i64>(),
        1,
        "nothing of the refused batch went out"
    );
}
