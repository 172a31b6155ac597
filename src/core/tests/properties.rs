//! Properties of the parsers that take outside input, over generated inputs (proptest; its
//! failures are kept in `proptest-regressions/` and replayed first on every run):
//! - an envelope reads the same through the fast path and the general one, in structured mode
//!   and in Kafka binary mode, and no input makes it panic;
//! - contract validation with upcasting accepts exactly the deposits its schemas describe, and
//!   a v1 deposit always becomes the v2 one with an unknown channel;
//! - a consistency token survives its round trip, and no string makes decoding panic.

use eventline_core::binding::from_kafka_record;
use eventline_core::envelope::CloudEvent;
use eventline_core::registry::Registry;
use eventline_core::token::ConsistencyToken;
use proptest::prelude::*;
use serde_json::{json, Map, Value};

/// Any JSON value, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("JSON has no NaN or infinity", |f| f.is_finite()).prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-z_]{1,6}", inner, 0..4)
                .prop_map(|map| Value::Object(map.into_iter().collect::<Map<String, Value>>())),
        ]
    })
}

/// A value for a context attribute: mostly plausible, sometimes wrong in type or form.
fn attribute(plausible: &'static [&'static str]) -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        3 => prop::sample::select(plausible).prop_map(|s| Some(Value::from(s))),
        1 => Just(None),
        1 => Just(Some(Value::Null)),
        1 => "\\PC{0,10}".prop_map(|s| Some(Value::from(s))),
        1 => any::<i32>().prop_map(|n| Some(Value::from(n))),
    ]
}

/// A structured-mode event whose attributes and data vary around a valid one.
fn event() -> impl Strategy<Value = Value> {
    (
        (
            attribute(&["1.0", "0.3"]),
            attribute(&["evt-1", "e", "caf\u{e9}"]),
            attribute(&["/bank", "https://example.com/x", "urn:a:b"]),
            attribute(&["accounts.FundsDeposited", "t"]),
            attribute(&["acc-1", "a\"b"]),
        ),
        (
            attribute(&["2026-11-28T10:00:00Z", "2026-11-28T10:00:00.123+01:00", "yesterday"]),
            attribute(&["application/json", "application/json; charset=utf-8", "text/plain"]),
            prop_oneof![Just(None), (0i64..4).prop_map(|n| Some(Value::from(n))), Just(Some(json!("2")))],
            prop::option::of(any_json()),
            prop::option::of("\\PC{0,8}"),
        ),
    )
        .prop_map(|((spec, id, source, kind, subject), (time, content_type, version, data, extension))| {
            let mut event = Map::new();
            for (name, value) in [
                ("specversion", spec),
                ("id", id),
                ("source", source),
                ("type", kind),
                ("subject", subject),
                ("time", time),
                ("datacontenttype", content_type),
                ("dataversion", version),
                ("data", data),
                ("region", extension.map(Value::from)),
            ] {
                if let Some(value) = value {
                    event.insert(name.to_string(), value);
                }
            }
            Value::Object(event)
        })
}

/// A valid structured-mode event: every required attribute, optional ones present or not, any
/// data, all attributes text but an Integer `dataversion`.
fn valid_event() -> impl Strategy<Value = Value> {
    let optional = |values: &'static [&'static str]| prop::option::of(prop::sample::select(values));
    (
        "[a-zA-Z0-9-]{1,12}",
        prop::sample::select(&["/bank", "https://example.com/x", "urn:a:b"][..]),
        prop::sample::select(&["accounts.FundsDeposited", "t"][..]),
        optional(&["acc-1", "a\"b", "caf\u{e9}"]),
        optional(&["2026-11-28T10:00:00Z", "2026-11-28T10:00:00.123+01:00"]),
        optional(&["application/json", "application/json; charset=utf-8"]),
        prop::option::of(1i64..5),
        any_json(),
        optional(&["eu", "us"]),
    )
        .prop_map(|(id, source, kind, subject, time, content_type, version, data, region)| {
            let mut event = json!({"specversion": "1.0", "id": id, "source": source, "type": kind, "data": data});
            for (name, value) in [
                ("subject", subject.map(Value::from)),
                ("time", time.map(Value::from)),
                ("datacontenttype", content_type.map(Value::from)),
                ("dataversion", version.map(Value::from)),
                ("region", region.map(Value::from)),
            ] {
                if let Some(value) = value {
                    event[name] = value;
                }
            }
            event
        })
}

/// A Kafka record's headers, as the binding reads them.
type Headers = Vec<(String, Vec<u8>)>;

/// The Kafka binary-mode record of a structured event whose attributes are all text (an
/// Integer `dataversion` aside), as another producer would write it.
fn binary_record(event: &Value) -> Option<(Headers, Option<Vec<u8>>)> {
    let mut headers = Vec::new();
    let mut value = None;
    for (name, attribute) in event.as_object()? {
        match (name.as_str(), attribute) {
            ("data", data) => value = Some(serde_json::to_vec(data).unwrap()),
            ("datacontenttype", Value::String(text)) => {
                headers.push(("content-type".into(), text.clone().into_bytes()))
            }
            ("dataversion", Value::Number(n)) => headers.push(("ce_dataversion".into(), n.to_string().into_bytes())),
            (_, Value::String(text)) => headers.push((format!("ce_{name}"), text.clone().into_bytes())),
            _ => return None,
        }
    }
    headers.iter().any(|(name, _)| name == "ce_specversion").then_some((headers, value))
}

fn registry() -> &'static Registry {
    static REGISTRY: std::sync::OnceLock<Registry> = std::sync::OnceLock::new();
    REGISTRY.get_or_init(|| {
        Registry::from_dir(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas"))
            .expect("the shipped registry loads")
    })
}

proptest! {
    #[test]
    fn the_fast_path_reads_every_event_as_the_general_path_does(event in event()) {
        let bytes = serde_json::to_vec(&event).unwrap();
        prop_assert_eq!(CloudEvent::from_slice(&bytes), CloudEvent::from_value(event));
    }

    #[test]
    fn a_binary_record_reads_as_its_structured_event(event in valid_event()) {
        let structured = CloudEvent::from_value(event.clone());
        prop_assert!(structured.is_ok(), "{:?}", structured);
        let (headers, value) = binary_record(&event).expect("every attribute is text or an Integer");
        prop_assert_eq!(from_kafka_record(&headers, value.as_deref()), structured);
    }

    #[test]
    fn no_bytes_make_the_envelope_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = CloudEvent::from_slice(&bytes);
        let _ = from_kafka_record(&[("ce_specversion".into(), b"1.0".to_vec())], Some(&bytes));
    }

    #[test]
    fn a_deposit_validates_exactly_when_its_schema_says_so(
        amount in prop_oneof![any::<i64>(), 1i64..1_000_000],
        currency in prop_oneof!["[A-Z]{3}", "\\PC{0,4}"],
        account in prop_oneof!["[a-z0-9-]{1,12}", Just(String::new())],
        v1 in any::<bool>(),
    ) {
        let mut data = json!({"account_id": account, "amount_minor": amount, "currency": currency});
        if !v1 {
            data["channel"] = json!("online");
        }
        let event = json!({
            "specversion": "1.0", "id": "evt-p", "source": "/bank", "type": "accounts.FundsDeposited",
            "subject": account, "dataversion": if v1 { 1 } else { 2 }, "data": data,
        });
        let valid = amount > 0
            && amount <= 9_007_199_254_740_991
            && currency.len() == 3
            && currency.chars().all(|c| c.is_ascii_uppercase())
            && !account.is_empty();
        let validated = registry().validate_slice(event.to_string().as_bytes());
        prop_assert_eq!(validated.is_ok(), valid, "{:?}", validated.as_ref().err());
        if let Ok(validated) = validated {
            prop_assert_eq!(validated.current_version(), 2);
            let channel = if v1 { "unknown" } else { "online" };
            prop_assert_eq!(
                validated.data(),
                &json!({"account_id": account, "amount_minor": amount, "currency": currency, "channel": channel})
            );
        }
    }

    #[test]
    fn a_token_round_trips(positions in prop::collection::vec(("[a-z.]{1,12}", 0i32..64, 0i64..i64::MAX), 0..8)) {
        let mut token = ConsistencyToken::default();
        for (topic, partition, offset) in &positions {
            token.cover(topic, *partition, *offset);
        }
        prop_assert_eq!(ConsistencyToken::decode(&token.encode()), Ok(token));
    }

    #[test]
    fn no_string_makes_token_decoding_panic(text in "\\PC{0,64}") {
        if let Ok(token) = ConsistencyToken::decode(&text) {
            prop_assert_eq!(ConsistencyToken::decode(&token.encode()), Ok(token));
        }
    }
}
