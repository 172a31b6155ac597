//! The bad-input corpus: each case is an event (or batch) sent to the shipped registry, with the
//! exact error kind, JSON pointer and sentence it must get. Then the good paths: each reference
//! type validates, and a v1 deposit is upcast to v2.

use eventline_core::contract::ContractError;
use eventline_core::envelope::MAX_EVENT_BYTES;
use eventline_core::registry::{BatchError, Registry};
use serde_json::{json, Value};

fn registry() -> Registry {
    Registry::from_dir(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas"))
        .expect("the shipped registry loads")
}

fn deposit() -> Value {
    json!({
        "specversion": "1.0", "id": "evt-1", "source": "/bank", "type": "accounts.FundsDeposited",
        "subject": "acc-1", "dataversion": 2,
        "data": {"account_id": "acc-1", "amount_minor": 1250, "currency": "EUR", "channel": "online"}
    })
}

fn with(mutate: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut event = deposit();
    mutate(&mut event);
    event.to_string().into_bytes()
}

fn remove(path: &'static str) -> Vec<u8> {
    with(|e| {
        let (parent, name) = path.rsplit_once('/').unwrap();
        e.pointer_mut(parent).unwrap().as_object_mut().unwrap().remove(name);
    })
}

fn set(path: &'static str, value: Value) -> Vec<u8> {
    with(|e| *e.pointer_mut(path).unwrap() = value)
}

fn insert(parent: &'static str, name: &str, value: Value) -> Vec<u8> {
    with(|e| {
        e.pointer_mut(parent).unwrap().as_object_mut().unwrap().insert(name.into(), value);
    })
}

#[test]
fn every_bad_event_gets_its_kind_pointer_and_sentence() {
    let oversized = set("/data/account_id", json!("x".repeat(MAX_EVENT_BYTES)));
    let oversized_size = oversized.len();
    let cases: Vec<(&str, Vec<u8>, &str, &str, String)> = vec![
        (
            "not JSON",
            b"{\"id\": ".to_vec(),
            "not_json",
            "",
            "not valid JSON: EOF while parsing a value at line 1 column 7".into(),
        ),
        ("not an object", b"[]".to_vec(), "not_object", "", "event must be a JSON object, found an array".into()),
        ("a string", b"\"hello\"".to_vec(), "not_object", "", "event must be a JSON object, found a string".into()),
        ("missing id", remove("/id"), "missing_attribute", "/id", "missing required attribute `id`".into()),
        ("empty id", set("/id", json!("")), "empty_attribute", "/id", "attribute `id` must not be empty".into()),
        (
            "id not a string",
            set("/id", json!(42)),
            "wrong_type",
            "/id",
            "attribute `id` must be a string, found a number".into(),
        ),
        (
            "missing source",
            remove("/source"),
            "missing_attribute",
            "/source",
            "missing required attribute `source`".into(),
        ),
        (
            "empty source",
            set("/source", json!("")),
            "empty_attribute",
            "/source",
            "attribute `source` must not be empty".into(),
        ),
        ("missing type", remove("/type"), "missing_attribute", "/type", "missing required attribute `type`".into()),
        (
            "empty type",
            set("/type", json!("")),
            "empty_attribute",
            "/type",
            "attribute `type` must not be empty".into(),
        ),
        (
            "missing specversion",
            remove("/specversion"),
            "missing_attribute",
            "/specversion",
            "missing required attribute `specversion`".into(),
        ),
        (
            "specversion 0.3",
            set("/specversion", json!("0.3")),
            "unsupported_specversion",
            "/specversion",
            "specversion `0.3` is not supported (expected \"1.0\")".into(),
        ),
        (
            "specversion as number",
            set("/specversion", json!(1.0)),
            "wrong_type",
            "/specversion",
            "attribute `specversion` must be a string, found a number".into(),
        ),
        (
            "unknown type",
            set("/type", json!("accounts.FundsStolen")),
            "unknown_type",
            "/type",
            "unknown event type `accounts.FundsStolen`".into(),
        ),
        (
            "unknown dataversion",
            set("/dataversion", json!(7)),
            "unknown_dataversion",
            "/dataversion",
            "`accounts.FundsDeposited` has no data version 7 (known: 1, 2)".into(),
        ),
        (
            "dataversion 0",
            set("/dataversion", json!(0)),
            "invalid_dataversion",
            "/dataversion",
            "attribute `dataversion` must be a whole number from 1 to 2147483647, found 0".into(),
        ),
        (
            "dataversion as string",
            set("/dataversion", json!("2")),
            "wrong_type",
            "/dataversion",
            "attribute `dataversion` must be an integer, found a string".into(),
        ),
        (
            "missing subject",
            remove("/subject"),
            "missing_attribute",
            "/subject",
            "missing required attribute `subject` (the `account_id` of the entity)".into(),
        ),
        (
            "subject differs from key",
            set("/subject", json!("acc-2")),
            "subject_mismatch",
            "/subject",
            "subject `acc-2` differs from `data.account_id` `acc-1`".into(),
        ),
        (
            "invalid time",
            insert("", "time", json!("28/11/2026")),
            "invalid_time",
            "/time",
            "attribute `time` is not an RFC 3339 timestamp: `28/11/2026`".into(),
        ),
        (
            "time as number",
            insert("", "time", json!(1764320000)),
            "wrong_type",
            "/time",
            "attribute `time` must be a string, found a number".into(),
        ),
        (
            "non-JSON content type",
            insert("", "datacontenttype", json!("application/xml")),
            "unsupported_datacontenttype",
            "/datacontenttype",
            "datacontenttype `application/xml` is not supported (expected JSON: application/json or a */*+json type)"
                .into(),
        ),
        (
            "bad extension name",
            insert("", "Region", json!("eu")),
            "invalid_extension_name",
            "/Region",
            "extension attribute name `Region` is not valid (lower-case letters a-z and digits 0-9 only)".into(),
        ),
        ("data missing", remove("/data"), "missing_data", "/data", "missing `data`".into()),
        (
            "data not an object",
            set("/data", json!([1, 2])),
            "wrong_type",
            "/data",
            "field `data` must be an object, found an array".into(),
        ),
        (
            "missing amount_minor",
            remove("/data/amount_minor"),
            "missing_field",
            "/data/amount_minor",
            "missing required field `data.amount_minor`".into(),
        ),
        (
            "missing key field",
            remove("/data/account_id"),
            "missing_field",
            "/data/account_id",
            "missing required field `data.account_id`".into(),
        ),
        (
            "missing v2 field channel",
            remove("/data/channel"),
            "missing_field",
            "/data/channel",
            "missing required field `data.channel`".into(),
        ),
        (
            "extra field",
            insert("/data", "memo", json!("rent")),
            "unknown_field",
            "/data/memo",
            "field `data.memo` is not part of accounts.FundsDeposited v2".into(),
        ),
        (
            "negative amount",
            set("/data/amount_minor", json!(-5)),
            "invalid_value",
            "/data/amount_minor",
            "field `data.amount_minor` must be greater than 0, found -5".into(),
        ),
        (
            "zero amount",
            set("/data/amount_minor", json!(0)),
            "invalid_value",
            "/data/amount_minor",
            "field `data.amount_minor` must be greater than 0, found 0".into(),
        ),
        (
            "fractional amount",
            set("/data/amount_minor", json!(12.5)),
            "wrong_type",
            "/data/amount_minor",
            "field `data.amount_minor` must be an integer, found 12.5".into(),
        ),
        (
            "amount as string",
            set("/data/amount_minor", json!("1250")),
            "wrong_type",
            "/data/amount_minor",
            "field `data.amount_minor` must be an integer, found `1250`".into(),
        ),
        (
            "amount too large",
            set("/data/amount_minor", json!(9_007_199_254_740_992_u64)),
            "invalid_value",
            "/data/amount_minor",
            "field `data.amount_minor` must be at most 9007199254740991, found 9007199254740992".into(),
        ),
        (
            "lower-case currency",
            set("/data/currency", json!("eur")),
            "invalid_value",
            "/data/currency",
            "field `data.currency` must match ^[A-Z]{3}$, found `eur`".into(),
        ),
        (
            "currency as null",
            set("/data/currency", Value::Null),
            "wrong_type",
            "/data/currency",
            "field `data.currency` must be a string, found null".into(),
        ),
        (
            "unknown channel",
            set("/data/channel", json!("pigeon")),
            "invalid_value",
            "/data/channel",
            "field `data.channel` must be one of branch, card, transfer, online, unknown, found `pigeon`".into(),
        ),
        (
            "empty account id",
            with(|e| {
                e["data"]["account_id"] = json!("");
            }),
            "invalid_value",
            "/data/account_id",
            "field `data.account_id` must not be empty".into(),
        ),
        (
            "oversized event",
            oversized,
            "too_large",
            "",
            format!("event is {oversized_size} bytes, more than the limit of {MAX_EVENT_BYTES} bytes"),
        ),
    ];
    assert!(cases.len() >= 30);
    let registry = registry();
    for (name, bytes, kind, pointer, message) in cases {
        let error = registry.validate_slice(&bytes).expect_err(name);
        assert_eq!(
            (error.kind(), error.pointer().as_str(), error.to_string()),
            (kind, pointer, message),
            "case: {name}"
        );
    }
}

#[test]
fn a_v1_field_of_another_type_names_its_version() {
    let withdrawal = json!({
        "specversion": "1.0", "id": "w", "source": "/bank", "type": "accounts.FundsWithdrawn", "subject": "a",
        "data": {"account_id": "a", "amount_minor": 5, "currency": "EUR", "channel": "card"}
    });
    let error = registry().validate_slice(withdrawal.to_string().as_bytes()).unwrap_err();
    assert_eq!(error.to_string(), "field `data.channel` is not part of accounts.FundsWithdrawn v1");
}

#[test]
fn a_personal_field_is_refused_without_its_value() {
    let opened = |owner: Value, session: Value| {
        let events = [
            json!({"specversion": "1.0", "id": "o", "source": "/bank", "type": "accounts.AccountOpened",
                   "subject": "a", "data": {"account_id": "a", "owner": owner, "currency": "EUR"}}),
            json!({"specversion": "1.0", "id": "v", "source": "/web", "type": "activity.PageViewed",
                   "subject": "u", "data": {"user_id": "u", "path": "/", "session_id": session}}),
        ];
        events.map(|event| registry().validate_slice(event.to_string().as_bytes()).unwrap_err().to_string())
    };
    let canary = "Ada Lovelace 1815";
    let long = format!("{canary} {}", "x".repeat(300));
    assert_eq!(
        opened(json!(long), json!(long)),
        [
            "field `data.owner` must be at most 256 characters long",
            "field `data.session_id` must be at most 256 characters long",
        ]
    );
    assert_eq!(
        opened(json!(1815), json!(1815)),
        [
            "field `data.owner` must be a string, found a number (personal, not shown)",
            "field `data.session_id` must be a string, found a number (personal, not shown)"
        ]
    );
    // A field that is not personal is still named by its value.
    let error = registry().validate_slice(&set("/data/currency", json!("eur"))).unwrap_err();
    assert_eq!(error.to_string(), "field `data.currency` must match ^[A-Z]{3}$, found `eur`");
}

#[test]
fn a_stored_event_may_hold_its_personal_fields_sealed() {
    let opened = |owner: Value, currency: &str| {
        json!({"specversion": "1.0", "id": "o", "source": "/bank", "type": "accounts.AccountOpened",
               "subject": "a", "data": {"account_id": "a", "owner": owner, "currency": currency}})
        .to_string()
    };
    let registry = registry();
    let context = eventline_core::cipher::FieldContext {
        event_id: "o",
        event_type: "accounts.AccountOpened",
        pointer: "/owner",
        subject: "a",
    };
    let key = eventline_core::cipher::DataKey::generate();
    let sealed = eventline_core::cipher::seal(&key, &context, &json!("x".repeat(400)));
    // Read back from Kafka: a sealed owner is taken, whatever its length; so is a clear one.
    // Projections get it in the form that names what it was sealed for, the same ciphertext.
    let stored = registry.validate_record(&[], Some(opened(json!(sealed), "EUR").as_bytes())).unwrap();
    let named = eventline_core::cipher::name(&sealed, &context).unwrap();
    assert!(named.starts_with("elc1.") && sealed.starts_with("elc2."));
    assert_eq!(stored.data()["owner"], json!(named));
    assert_eq!(eventline_core::cipher::open(&key, &context, &named), Ok(json!("x".repeat(400))));
    // Written to be published later, it stays as it is.
    let unpublished = registry.validate_unpublished_slice(opened(json!(sealed), "EUR").as_bytes()).unwrap();
    assert_eq!(unpublished.data()["owner"], json!(sealed));
    assert!(registry.validate_record(&[], Some(opened(json!("Ada"), "EUR").as_bytes())).is_ok());
    // Only a personal field may be sealed, and only in the sealed form.
    let error = registry.validate_record(&[], Some(opened(json!("Ada"), "elc1.AAAA").as_bytes())).unwrap_err();
    assert_eq!(error.to_string(), "field `data.currency` must match ^[A-Z]{3}$, found `elc1.AAAA`");
    let error = registry.validate_record(&[], Some(opened(json!(["Ada"]), "EUR").as_bytes())).unwrap_err();
    assert_eq!(
        error.to_string(),
        "field `data.owner` breaks the schema's `anyOf` rule (the value is personal, not shown)"
    );
    // Published: personal fields come in clear and are held to their schema.
    let error = registry.validate_slice(opened(json!(sealed), "EUR").as_bytes()).unwrap_err();
    assert_eq!(error.to_string(), "field `data.owner` must be at most 256 characters long");
}

#[test]
fn sealing_hides_each_personal_field_under_its_subjects_key_and_nothing_else() {
    use eventline_core::cipher::{self, DataKey, FieldContext};
    let registry = registry();
    let canary = "Ada Canary-4f2";
    let opened = json!({"specversion": "1.0", "id": "o-1", "source": "/bank", "type": "accounts.AccountOpened",
                        "subject": "acc-1", "data": {"account_id": "acc-1", "owner": canary, "currency": "EUR"}});
    let event = registry.validate_slice(opened.to_string().as_bytes()).unwrap();
    assert_eq!(registry.personal_subject(&event).as_deref(), Some("acc-1"));
    let key = DataKey::generate();
    let (sealed, indexed) = registry.seal_personal(event, "acc-1", &key);
    assert_eq!(
        indexed,
        vec![("account-owner".to_string(), json!(canary))],
        "the owner's clear value, for its blind index"
    );
    let bytes = sealed.envelope().to_bytes();
    assert!(!String::from_utf8_lossy(&bytes).contains("Canary"), "{}", String::from_utf8_lossy(&bytes));
    let owner = sealed.data()["owner"].as_str().unwrap();
    assert_eq!(sealed.envelope().data.as_ref().unwrap()["owner"], json!(owner));
    assert_eq!(sealed.data()["currency"], "EUR", "what is not personal stays as it was");
    let context =
        FieldContext { event_id: "o-1", event_type: "accounts.AccountOpened", pointer: "/owner", subject: "acc-1" };
    assert_eq!(cipher::open(&key, &context, owner), Ok(json!(canary)));
    // As stored, it is still a valid event.
    assert!(registry.validate_record(&[], Some(&bytes)).is_ok());
    // A sealed value copied into another event (or for another subject) is refused where it lands.
    let elsewhere = json!({"specversion": "1.0", "id": "o-2", "source": "/bank", "type": "accounts.AccountOpened",
                           "subject": "acc-2", "data": {"account_id": "acc-2", "owner": owner, "currency": "EUR"}});
    let error = registry.validate_record(&[], Some(elsewhere.to_string().as_bytes())).unwrap_err();
    assert_eq!(error.to_string(), "field `data.owner` holds a value sealed for another event, field or subject");
    let mut renamed = opened.clone();
    renamed["data"]["owner"] = json!(format!("elc1.{}", "A".repeat(20) + ".AAAA"));
    let error = registry.validate_record(&[], Some(renamed.to_string().as_bytes())).unwrap_err();
    assert_eq!(error.kind(), "invalid_value");
    // An event without personal data is left as it is.
    let deposit = registry.validate_slice(&with(|_| {})).unwrap();
    assert_eq!(registry.personal_subject(&deposit), None);
    assert_eq!(registry.seal_personal(deposit.clone(), "acc-1", &key), (deposit, Vec::new()));
}

#[test]
fn a_batch_with_one_bad_event_names_its_index_and_yields_none() {
    let good = deposit();
    let mut bad = deposit();
    bad["data"]["amount_minor"] = json!(-1);
    let batch = json!([good, good, bad, good]).to_string();
    let Err(BatchError::Events(errors)) = registry().validate_batch(batch.as_bytes()) else {
        panic!("the batch must be refused");
    };
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].0, 2);
    assert_eq!(errors[0].1.pointer(), "/data/amount_minor");
}

#[test]
fn batch_bodies_that_are_not_batches_are_refused() {
    let registry = registry();
    let body_error = |body: &str| match registry.validate_batch(body.as_bytes()) {
        Err(BatchError::Body(error)) => (error.kind(), error.to_string()),
        other => panic!("{body}: {other:?}"),
    };
    // An empty batch is a batch (CloudEvents JSON batch format 4.3): nothing in it, nothing wrong.
    assert!(registry.validate_batch(b"[]").unwrap().is_empty());
    assert_eq!(body_error("{}"), ("not_array", "a batch must be a JSON array of events, found an object".to_string()));
    assert_eq!(
        body_error("[1"),
        ("not_json", "not valid JSON: EOF while parsing a list at line 1 column 2".to_string())
    );
    let Err(BatchError::Events(errors)) = registry.validate_batch(b"[1]") else { panic!() };
    assert_eq!(errors[0], (0, ContractError::Envelope(eventline_core::envelope::EnvelopeError::NotObject("a number"))));
}

#[test]
fn a_good_batch_keeps_its_order() {
    let mut second = deposit();
    second["id"] = json!("evt-2");
    let events = registry().validate_batch(json!([deposit(), second]).to_string().as_bytes()).unwrap();
    let ids: Vec<&str> = events.iter().map(|e| e.envelope().id.as_str()).collect();
    assert_eq!(ids, ["evt-1", "evt-2"]);
}

#[test]
fn every_example_of_every_schema_validates_as_an_event() {
    let registry = registry();
    let mut checked = 0;
    for contract in registry.contracts() {
        for version in contract.versions.values() {
            for example in version.schema["examples"].as_array().unwrap() {
                let event = json!({
                    "specversion": "1.0", "id": "x", "source": "/examples", "type": contract.event_type,
                    "subject": example[&contract.key], "dataversion": version.version, "data": example
                });
                let validated = registry.validate_slice(event.to_string().as_bytes());
                assert!(validated.is_ok(), "{} v{}: {:?}", contract.event_type, version.version, validated.err());
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 12, "one example for each of the 12 schemas");
}

#[test]
fn a_v1_deposit_is_seen_as_v2_with_an_unknown_channel() {
    let v1 = json!({
        "specversion": "1.0", "id": "old", "source": "/bank", "type": "accounts.FundsDeposited", "subject": "acc-1",
        "data": {"account_id": "acc-1", "amount_minor": 700, "currency": "EUR"}
    });
    let event = registry().validate_slice(v1.to_string().as_bytes()).unwrap();
    assert_eq!(event.envelope().dataversion, 1, "published as it came");
    assert_eq!(event.envelope().data.as_ref().unwrap().get("channel"), None);
    assert_eq!(event.current_version(), 2);
    assert_eq!(
        event.data(),
        &json!({"account_id": "acc-1", "amount_minor": 700, "currency": "EUR", "channel": "unknown"})
    );
}
