//! The CloudEvents 1.0 envelope in the JSON event format (structured mode and batches).
//!
//! Parsing applies the core specification's and the JSON format's rules (attribute types and
//! their constraints, `null` as unset, extension names and values, `data` versus `data_base64`)
//! and reports the first problem with a stable kind and the JSON pointer of the attribute, so
//! callers can answer a user precisely. The protocol bindings (Kafka records, HTTP binary mode)
//! are in [`crate::binding`].

use std::borrow::Cow;
use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};

/// The only CloudEvents version eventline speaks.
pub const SPEC_VERSION: &str = "1.0";

/// Largest structured event accepted, in bytes. Kafka's default message limit is 1 MiB; staying
/// well below it leaves room for headers and batching.
pub const MAX_EVENT_BYTES: usize = 512 * 1024;

/// Why an envelope was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("event is {size} bytes, more than the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("not valid JSON: {0}")]
    NotJson(String),
    #[error("event must be a JSON object, found {0}")]
    NotObject(&'static str),
    #[error("a batch must be a JSON array of events, found {0}")]
    NotArray(&'static str),
    #[error("missing required attribute `{0}`")]
    MissingAttribute(&'static str),
    #[error("attribute `{0}` must not be empty")]
    EmptyAttribute(&'static str),
    #[error("attribute `{attribute}` must be {expected}, found {found}")]
    WrongType { attribute: String, expected: &'static str, found: &'static str },
    #[error("specversion `{0}` is not supported (expected \"1.0\")")]
    UnsupportedSpecVersion(String),
    #[error("attribute `time` is not an RFC 3339 timestamp: `{0}`")]
    InvalidTime(String),
    #[error("attribute `dataversion` must be a whole number from 1 to 2147483647, found {0}")]
    InvalidDataVersion(String),
    #[error("datacontenttype `{0}` is not supported (expected JSON: application/json or a */*+json type)")]
    UnsupportedContentType(String),
    #[error("extension attribute name `{0}` is not valid (lower-case letters a-z and digits 0-9 only)")]
    InvalidExtensionName(String),
    #[error("attribute `{0}` holds a control character or a Unicode noncharacter")]
    InvalidCharacter(String),
    #[error("attribute `{attribute}` must be {expected} (RFC 3986), found `{found}`")]
    InvalidUri { attribute: &'static str, expected: &'static str, found: String },
    #[error("attribute `{attribute}` must be an integer from -2147483648 to 2147483647, found {found}")]
    InvalidInteger { attribute: String, found: String },
    #[error("`data` and `data_base64` cannot both be present")]
    DataAndDataBase64,
    #[error("attribute `data_base64` is not valid Base64: {0}")]
    InvalidBase64(String),
    #[error("data is not valid JSON: {0}")]
    DataNotJson(String),
    #[error("event format `{0}` is not supported (expected application/cloudevents+json)")]
    UnsupportedFormat(String),
    #[error("header `{header}` {reason}")]
    InvalidHeader { header: String, reason: String },
    #[error("record has no value")]
    NoValue,
}

impl EnvelopeError {
    /// A stable, machine-readable name for the kind of problem.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "too_large",
            Self::NotJson(_) => "not_json",
            Self::NotObject(_) => "not_object",
            Self::NotArray(_) => "not_array",
            Self::MissingAttribute(_) => "missing_attribute",
            Self::EmptyAttribute(_) => "empty_attribute",
            Self::WrongType { .. } => "wrong_type",
            Self::UnsupportedSpecVersion(_) => "unsupported_specversion",
            Self::InvalidTime(_) => "invalid_time",
            Self::InvalidDataVersion(_) => "invalid_dataversion",
            Self::UnsupportedContentType(_) => "unsupported_datacontenttype",
            Self::InvalidExtensionName(_) => "invalid_extension_name",
            Self::InvalidCharacter(_) => "invalid_character",
            Self::InvalidUri { .. } => "invalid_uri",
            Self::InvalidInteger { .. } => "invalid_integer",
            Self::DataAndDataBase64 => "data_and_data_base64",
            Self::InvalidBase64(_) => "invalid_base64",
            Self::DataNotJson(_) => "data_not_json",
            Self::UnsupportedFormat(_) => "unsupported_format",
            Self::InvalidHeader { .. } => "invalid_header",
            Self::NoValue => "no_value",
        }
    }

    /// The JSON pointer of the offending attribute; empty when the whole event is at fault.
    pub fn pointer(&self) -> String {
        match self {
            Self::TooLarge { .. }
            | Self::NotJson(_)
            | Self::NotObject(_)
            | Self::NotArray(_)
            | Self::UnsupportedFormat(_)
            | Self::InvalidHeader { .. }
            | Self::NoValue => String::new(),
            Self::MissingAttribute(a) | Self::EmptyAttribute(a) | Self::InvalidUri { attribute: a, .. } => {
                format!("/{a}")
            }
            Self::WrongType { attribute, .. }
            | Self::InvalidExtensionName(attribute)
            | Self::InvalidCharacter(attribute)
            | Self::InvalidInteger { attribute, .. } => format!("/{attribute}"),
            Self::DataAndDataBase64 | Self::InvalidBase64(_) => "/data_base64".into(),
            Self::DataNotJson(_) => "/data".into(),
            Self::UnsupportedSpecVersion(_) => "/specversion".into(),
            Self::InvalidTime(_) => "/time".into(),
            Self::InvalidDataVersion(_) => "/dataversion".into(),
            Self::UnsupportedContentType(_) => "/datacontenttype".into(),
        }
    }
}

/// A CloudEvent whose context attributes are well-formed. Its `data` is not yet checked against
/// any contract: that is the domain's job.
#[derive(Debug, Clone, PartialEq)]
pub struct CloudEvent {
    pub id: String,
    pub source: String,
    pub event_type: String,
    /// The entity the event is about; eventline's partitioning key.
    pub subject: Option<String>,
    pub time: Option<DateTime<Utc>>,
    pub datacontenttype: Option<String>,
    pub dataschema: Option<String>,
    /// Schema version of `data` (extension attribute), 1 when absent.
    pub dataversion: u32,
    /// W3C trace context (distributed tracing extension), carried through to Kafka headers.
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
    pub data: Option<Value>,
    /// Other extension attributes, kept as given.
    pub extensions: BTreeMap<String, Value>,
}

impl CloudEvent {
    /// Parses one structured-mode event from its JSON bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        if bytes.len() > MAX_EVENT_BYTES {
            return Err(EnvelopeError::TooLarge { size: bytes.len(), limit: MAX_EVENT_BYTES });
        }
        if let Some(event) = PlainEvent::read(bytes) {
            return Ok(event);
        }
        let value: Value = serde_json::from_slice(bytes).map_err(|e| EnvelopeError::NotJson(e.to_string()))?;
        Self::from_value(value)
    }

    /// Checks and takes apart an already parsed JSON value.
    pub fn from_value(value: Value) -> Result<Self, EnvelopeError> {
        let mut object = match value {
            Value::Object(object) => object,
            other => return Err(EnvelopeError::NotObject(json_type(&other))),
        };
        // JSON format 2.2: a `null` attribute is unset. (`data: null` is an explicit null
        // payload, not an attribute.)
        object.retain(|name, value| name == "data" || !value.is_null());

        let specversion = required_string(&mut object, "specversion")?;
        if specversion != SPEC_VERSION {
            return Err(EnvelopeError::UnsupportedSpecVersion(specversion));
        }
        let id = required_string(&mut object, "id")?;
        let source = required_string(&mut object, "source")?;
        if fluent_uri::UriRef::parse(source.as_str()).is_err() {
            return Err(EnvelopeError::InvalidUri { attribute: "source", expected: "a URI-reference", found: source });
        }
        let event_type = required_string(&mut object, "type")?;
        let subject = optional_string(&mut object, "subject")?;
        if subject.as_deref() == Some("") {
            return Err(EnvelopeError::EmptyAttribute("subject"));
        }
        let time = optional_string(&mut object, "time")?
            .map(|raw| {
                DateTime::parse_from_rfc3339(&raw)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|_| EnvelopeError::InvalidTime(raw))
            })
            .transpose()?;
        let datacontenttype = optional_string(&mut object, "datacontenttype")?;
        if let Some(content_type) = &datacontenttype {
            if !is_json_media_type(content_type) {
                return Err(EnvelopeError::UnsupportedContentType(content_type.clone()));
            }
        }
        let dataschema = optional_string(&mut object, "dataschema")?;
        if let Some(schema) = &dataschema {
            if fluent_uri::Uri::parse(schema.as_str()).is_err() {
                return Err(EnvelopeError::InvalidUri {
                    attribute: "dataschema",
                    expected: "an absolute URI",
                    found: schema.clone(),
                });
            }
        }
        let dataversion = match object.remove("dataversion") {
            None => 1,
            Some(Value::Number(n)) => match n.as_u64() {
                Some(v @ 1..=0x7FFF_FFFF) => v as u32,
                _ => return Err(EnvelopeError::InvalidDataVersion(n.to_string())),
            },
            Some(other) => {
                return Err(EnvelopeError::WrongType {
                    attribute: "dataversion".into(),
                    expected: "an integer",
                    found: json_type(&other),
                })
            }
        };
        let traceparent = optional_string(&mut object, "traceparent")?;
        let tracestate = optional_string(&mut object, "tracestate")?;
        let data = match (object.remove("data"), object.remove("data_base64")) {
            (Some(_), Some(_)) => return Err(EnvelopeError::DataAndDataBase64),
            (data, None) => data,
            // Binary data (JSON format 3.1.2): eventline reads JSON, so it must declare JSON.
            (None, Some(Value::String(encoded))) => {
                use base64::Engine;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(encoded.trim())
                    .map_err(|e| EnvelopeError::InvalidBase64(e.to_string()))?;
                Some(serde_json::from_slice(&bytes).map_err(|e| EnvelopeError::DataNotJson(e.to_string()))?)
            }
            (None, Some(other)) => {
                return Err(EnvelopeError::WrongType {
                    attribute: "data_base64".into(),
                    expected: "a string",
                    found: json_type(&other),
                })
            }
        };

        let mut extensions = BTreeMap::new();
        for (name, value) in object {
            let valid_name = !name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
            if !valid_name {
                return Err(EnvelopeError::InvalidExtensionName(name));
            }
            match &value {
                Value::String(text) => check_characters(&name, text)?,
                Value::Bool(_) => {}
                // JSON format 2.2: an Integer is a JSON number with an integer component only.
                Value::Number(n) => {
                    if n.as_i64().is_none_or(|i| i32::try_from(i).is_err()) {
                        return Err(EnvelopeError::InvalidInteger { attribute: name, found: n.to_string() });
                    }
                }
                other => {
                    return Err(EnvelopeError::WrongType {
                        attribute: name,
                        expected: "a string, integer or boolean",
                        found: json_type(other),
                    })
                }
            }
            extensions.insert(name, value);
        }

        Ok(Self {
            id,
            source,
            event_type,
            subject,
            time,
            datacontenttype,
            dataschema,
            dataversion,
            traceparent,
            tracestate,
            data,
            extensions,
        })
    }

    /// The structured-mode JSON form, as stored in Kafka record values.
    pub fn to_value(&self) -> Value {
        let mut object = Map::new();
        object.insert("specversion".into(), SPEC_VERSION.into());
        object.insert("id".into(), self.id.clone().into());
        object.insert("source".into(), self.source.clone().into());
        object.insert("type".into(), self.event_type.clone().into());
        let optional = [
            ("subject", self.subject.clone()),
            ("time", self.time.map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true))),
            ("datacontenttype", self.datacontenttype.clone()),
            ("dataschema", self.dataschema.clone()),
            ("traceparent", self.traceparent.clone()),
            ("tracestate", self.tracestate.clone()),
        ];
        for (name, value) in optional {
            if let Some(value) = value {
                object.insert(name.into(), value.into());
            }
        }
        object.insert("dataversion".into(), self.dataversion.into());
        for (name, value) in &self.extensions {
            object.insert(name.clone(), value.clone());
        }
        if let Some(data) = &self.data {
            object.insert("data".into(), data.clone());
        }
        Value::Object(object)
    }

    /// The structured-mode JSON bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.to_value()).expect("a JSON value always serializes")
    }
}

/// Splits a batch-mode body (`application/cloudevents-batch+json`, a JSON array of structured
/// events) into its events, each checked for size; their envelopes are checked one by one later.
/// A batch may be empty (JSON format 4.3).
pub fn parse_batch(bytes: &[u8]) -> Result<Vec<Value>, EnvelopeError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| EnvelopeError::NotJson(e.to_string()))?;
    match value {
        Value::Array(events) => Ok(events),
        other => Err(EnvelopeError::NotArray(json_type(&other))),
    }
}

/// Fails with [`EnvelopeError::TooLarge`] when an event, serialized, exceeds the limit.
pub fn check_size(event: &Value) -> Result<(), EnvelopeError> {
    let size = serde_json::to_vec(event).map_or(usize::MAX, |bytes| bytes.len());
    if size > MAX_EVENT_BYTES {
        return Err(EnvelopeError::TooLarge { size, limit: MAX_EVENT_BYTES });
    }
    Ok(())
}

/// The JSON type of a value, as people say it.
pub fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Whether a media type declares JSON content: `*/json` or `*/*+json`, parameters aside (JSON
/// format 3.1.1).
pub fn is_json_media_type(media_type: &str) -> bool {
    // What nearly every event says, answered without taking it apart.
    if media_type == "application/json" {
        return true;
    }
    let essence = media_type.split(';').next().unwrap_or_default().trim();
    let Some((kind, subtype)) = essence.split_once('/') else { return false };
    let token = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_graphic() && !"()<>@,;:\\\"/[]?=".contains(c));
    let ends_with = |suffix: &str| {
        subtype
            .len()
            .checked_sub(suffix.len())
            .and_then(|at| subtype.get(at..))
            .is_some_and(|end| end.eq_ignore_ascii_case(suffix))
    };
    token(kind) && token(subtype) && (subtype.eq_ignore_ascii_case("json") || ends_with("+json"))
}

/// Core specification, type system: a String holds no control characters (U+0000-U+001F,
/// U+007F-U+009F) and no noncharacters.
fn check_characters(attribute: &str, text: &str) -> Result<(), EnvelopeError> {
    let forbidden = |c: char| c.is_control() || ('\u{FDD0}'..='\u{FDEF}').contains(&c) || (c as u32 & 0xFFFE) == 0xFFFE;
    if text.chars().any(forbidden) {
        return Err(EnvelopeError::InvalidCharacter(attribute.to_string()));
    }
    Ok(())
}

/// An event with only the attributes this module knows, each of the type it must have, read
/// straight into its fields: no intermediate map of its attributes, strings borrowed from the
/// bytes where they hold no escapes. Anything else (an extension attribute, `data_base64`, a
/// missing or null `data`, a repeated name, a wrong type, a value [`CloudEvent::from_value`]
/// refuses) makes [`PlainEvent::read`] answer `None`, and the general path reads the event and
/// words its error: this path only ever accepts what that one accepts, with the same result.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PlainEvent<'a> {
    #[serde(borrow)]
    specversion: Cow<'a, str>,
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    source: Cow<'a, str>,
    #[serde(rename = "type", borrow)]
    event_type: Cow<'a, str>,
    #[serde(default, borrow)]
    subject: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    time: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    datacontenttype: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    dataschema: Option<Cow<'a, str>>,
    #[serde(default)]
    dataversion: Option<u32>,
    #[serde(default, borrow)]
    traceparent: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    tracestate: Option<Cow<'a, str>>,
    #[serde(default)]
    data: Value,
}

impl PlainEvent<'_> {
    fn read(bytes: &[u8]) -> Option<CloudEvent> {
        let event: PlainEvent<'_> = serde_json::from_slice(bytes).ok()?;
        let fine = |name: &str, text: &str| check_characters(name, text).is_ok();
        let fine_optional = |name: &str, text: &Option<Cow<'_, str>>| text.as_deref().is_none_or(|t| fine(name, t));
        let well_formed = event.specversion == SPEC_VERSION
            && [("id", &event.id), ("source", &event.source), ("type", &event.event_type)]
                .iter()
                .all(|(name, text)| !text.is_empty() && fine(name, text))
            && fluent_uri::UriRef::parse(event.source.as_ref()).is_ok()
            && event.subject.as_deref() != Some("")
            && fine_optional("subject", &event.subject)
            && fine_optional("time", &event.time)
            && fine_optional("datacontenttype", &event.datacontenttype)
            && event.datacontenttype.as_deref().is_none_or(is_json_media_type)
            && fine_optional("dataschema", &event.dataschema)
            && event.dataschema.as_deref().is_none_or(|schema| fluent_uri::Uri::parse(schema).is_ok())
            && event.dataversion.is_none_or(|version| (1..=0x7FFF_FFFF).contains(&version))
            && fine_optional("traceparent", &event.traceparent)
            && fine_optional("tracestate", &event.tracestate)
            && !event.data.is_null();
        if !well_formed {
            return None;
        }
        let time = match event.time.as_deref() {
            Some(raw) => Some(DateTime::parse_from_rfc3339(raw).ok()?.with_timezone(&Utc)),
            None => None,
        };
        let owned = |text: Option<Cow<'_, str>>| text.map(Cow::into_owned);
        Some(CloudEvent {
            id: event.id.into_owned(),
            source: event.source.into_owned(),
            event_type: event.event_type.into_owned(),
            subject: owned(event.subject),
            time,
            datacontenttype: owned(event.datacontenttype),
            dataschema: owned(event.dataschema),
            dataversion: event.dataversion.unwrap_or(1),
            traceparent: owned(event.traceparent),
            tracestate: owned(event.tracestate),
            data: Some(event.data),
            extensions: BTreeMap::new(),
        })
    }
}

fn required_string(object: &mut Map<String, Value>, name: &'static str) -> Result<String, EnvelopeError> {
    match optional_string(object, name)? {
        None => Err(EnvelopeError::MissingAttribute(name)),
        Some(s) if s.is_empty() => Err(EnvelopeError::EmptyAttribute(name)),
        Some(s) => Ok(s),
    }
}

fn optional_string(object: &mut Map<String, Value>, name: &'static str) -> Result<Option<String>, EnvelopeError> {
    match object.remove(name) {
        None => Ok(None),
        Some(Value::String(s)) => {
            check_characters(name, &s)?;
            Ok(Some(s))
        }
        Some(other) => {
            Err(EnvelopeError::WrongType { attribute: name.into(), expected: "a string", found: json_type(&other) })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn valid() -> Value {
        json!({
            "specversion": "1.0",
            "id": "evt-1",
            "source": "/core-banking",
            "type": "accounts.AccountOpened",
            "subject": "acc-1",
            "time": "2026-11-28T10:00:00+01:00",
            "datacontenttype": "application/json",
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "region": "eu",
            "data": {"account_id": "acc-1", "owner": "Ada", "currency": "EUR"}
        })
    }

    /// The plain path reads what it can and the general path gives the same answer for it, for
    /// events it takes and events it leaves to the general path alike.
    #[test]
    fn the_plain_path_reads_an_event_exactly_as_the_general_one() {
        let plain = json!({
            "specversion": "1.0", "id": "evt-é-1", "source": "/core-banking", "type": "accounts.AccountOpened",
            "subject": "acc-1", "time": "2026-11-28T10:00:00.123456+01:00", "datacontenttype": "application/json; charset=utf-8",
            "dataschema": "https://example.com/s.json", "dataversion": 2, "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "tracestate": "a=b", "data": {"account_id": "acc-1", "nested": [1, 2.5, null, {"k": "v"}]}
        });
        let minimal = json!({"specversion": "1.0", "id": "e", "source": "s", "type": "t", "data": 0});
        let nulls = json!({"specversion": "1.0", "id": "e", "source": "s", "type": "t", "subject": null, "time": null, "dataversion": null, "data": {}});
        let escaped = r#"{"specversion":"1.0","id":"caf\u00e9","source":"s","type":"t","subject":"a\"b","data":"x"}"#;
        for taken in [plain.to_string(), minimal.to_string(), nulls.to_string(), escaped.to_string()] {
            let read = PlainEvent::read(taken.as_bytes());
            assert!(read.is_some(), "the plain path takes {taken}");
            assert_eq!(
                read.unwrap(),
                CloudEvent::from_value(serde_json::from_str(&taken).unwrap()).unwrap(),
                "{taken}"
            );
        }
        let edit = |change: &dyn Fn(&mut Map<String, Value>)| {
            let mut event = plain.clone();
            change(event.as_object_mut().unwrap());
            event.to_string()
        };
        let left_to_the_general_path = [
            edit(&|e| drop(e.insert("region".into(), json!("eu")))),
            edit(&|e| drop(e.remove("data"))),
            edit(&|e| drop(e.insert("data".into(), Value::Null))),
            edit(&|e| {
                e.remove("data");
                e.insert("data_base64".into(), json!("eyJhIjoxfQ=="));
            }),
            edit(&|e| drop(e.insert("specversion".into(), json!("0.3")))),
            edit(&|e| drop(e.insert("id".into(), json!("")))),
            edit(&|e| drop(e.insert("id".into(), json!(7)))),
            edit(&|e| drop(e.insert("subject".into(), json!("")))),
            edit(&|e| drop(e.insert("subject".into(), json!("a\u{7}b")))),
            edit(&|e| drop(e.insert("source".into(), json!("not a uri")))),
            edit(&|e| drop(e.insert("time".into(), json!("yesterday")))),
            edit(&|e| drop(e.insert("datacontenttype".into(), json!("text/plain")))),
            edit(&|e| drop(e.insert("dataschema".into(), json!("relative/path")))),
            edit(&|e| drop(e.insert("dataversion".into(), json!(0)))),
            edit(&|e| drop(e.insert("dataversion".into(), json!(2_147_483_648u64)))),
            edit(&|e| drop(e.insert("dataversion".into(), json!(2.0)))),
            edit(&|e| drop(e.insert("dataversion".into(), json!("2")))),
            edit(&|e| drop(e.remove("type"))),
            r#"{"specversion":"1.0","id":"a","id":"b","source":"s","type":"t","data":1}"#.to_string(),
            "[1, 2]".to_string(),
            "{not json".to_string(),
        ];
        for left in left_to_the_general_path {
            assert!(PlainEvent::read(left.as_bytes()).is_none(), "the plain path leaves {left}");
            let general = serde_json::from_str::<Value>(&left)
                .map_err(|e| EnvelopeError::NotJson(e.to_string()))
                .and_then(CloudEvent::from_value);
            assert_eq!(format!("{:?}", CloudEvent::from_slice(left.as_bytes())), format!("{general:?}"), "{left}");
        }
    }

    fn with(mutate: impl FnOnce(&mut Map<String, Value>)) -> Result<CloudEvent, EnvelopeError> {
        let mut value = valid();
        mutate(value.as_object_mut().unwrap());
        CloudEvent::from_value(value)
    }

    #[test]
    fn a_valid_event_round_trips() {
        let event = CloudEvent::from_value(valid()).unwrap();
        assert_eq!(event.id, "evt-1");
        assert_eq!(event.subject.as_deref(), Some("acc-1"));
        assert_eq!(event.dataversion, 1);
        assert_eq!(event.time.unwrap().to_rfc3339(), "2026-11-28T09:00:00+00:00");
        assert_eq!(event.extensions["region"], "eu");
        let again = CloudEvent::from_slice(&event.to_bytes()).unwrap();
        assert_eq!(again, event);
    }

    #[test]
    fn each_bad_envelope_gets_its_kind_and_pointer() {
        let cases: Vec<(Result<CloudEvent, EnvelopeError>, &str, &str, &str)> = vec![
            (
                CloudEvent::from_slice(b"{nope"),
                "not_json",
                "",
                "not valid JSON: key must be a string at line 1 column 2",
            ),
            (CloudEvent::from_slice(b"[1]"), "not_object", "", "event must be a JSON object, found an array"),
            (
                with(|o| {
                    o.remove("id");
                }),
                "missing_attribute",
                "/id",
                "missing required attribute `id`",
            ),
            (
                with(|o| {
                    o.insert("id".into(), "".into());
                }),
                "empty_attribute",
                "/id",
                "attribute `id` must not be empty",
            ),
            (
                with(|o| {
                    o.remove("source");
                }),
                "missing_attribute",
                "/source",
                "missing required attribute `source`",
            ),
            (
                with(|o| {
                    o.remove("type");
                }),
                "missing_attribute",
                "/type",
                "missing required attribute `type`",
            ),
            (
                with(|o| {
                    o.remove("specversion");
                }),
                "missing_attribute",
                "/specversion",
                "missing required attribute `specversion`",
            ),
            (
                with(|o| {
                    o.insert("specversion".into(), "0.3".into());
                }),
                "unsupported_specversion",
                "/specversion",
                "specversion `0.3` is not supported (expected \"1.0\")",
            ),
            (
                with(|o| {
                    o.insert("id".into(), json!(7));
                }),
                "wrong_type",
                "/id",
                "attribute `id` must be a string, found a number",
            ),
            (
                with(|o| {
                    o.insert("time".into(), "yesterday".into());
                }),
                "invalid_time",
                "/time",
                "attribute `time` is not an RFC 3339 timestamp: `yesterday`",
            ),
            (
                with(|o| {
                    o.insert("dataversion".into(), json!(0));
                }),
                "invalid_dataversion",
                "/dataversion",
                "attribute `dataversion` must be a whole number from 1 to 2147483647, found 0",
            ),
            (
                with(|o| {
                    o.insert("dataversion".into(), json!("2"));
                }),
                "wrong_type",
                "/dataversion",
                "attribute `dataversion` must be an integer, found a string",
            ),
            (
                with(|o| {
                    o.insert("datacontenttype".into(), "text/plain".into());
                }),
                "unsupported_datacontenttype",
                "/datacontenttype",
                "datacontenttype `text/plain` is not supported (expected JSON: application/json or a */*+json type)",
            ),
            (
                with(|o| {
                    o.insert("Bad-Name".into(), "x".into());
                }),
                "invalid_extension_name",
                "/Bad-Name",
                "extension attribute name `Bad-Name` is not valid (lower-case letters a-z and digits 0-9 only)",
            ),
            (
                with(|o| {
                    o.insert("region".into(), json!({"a": 1}));
                }),
                "wrong_type",
                "/region",
                "attribute `region` must be a string, integer or boolean, found an object",
            ),
            (
                with(|o| {
                    o.insert("region".into(), json!(2.5));
                }),
                "invalid_integer",
                "/region",
                "attribute `region` must be an integer from -2147483648 to 2147483647, found 2.5",
            ),
            (
                with(|o| {
                    o.insert("region".into(), json!(2_147_483_648_i64));
                }),
                "invalid_integer",
                "/region",
                "attribute `region` must be an integer from -2147483648 to 2147483647, found 2147483648",
            ),
            (
                with(|o| {
                    o.insert("dataversion".into(), json!(2_147_483_648_i64));
                }),
                "invalid_dataversion",
                "/dataversion",
                "attribute `dataversion` must be a whole number from 1 to 2147483647, found 2147483648",
            ),
            (
                with(|o| {
                    o.insert("id".into(), json!(null));
                }),
                "missing_attribute",
                "/id",
                "missing required attribute `id`",
            ),
            (
                with(|o| {
                    o.insert("subject".into(), "".into());
                }),
                "empty_attribute",
                "/subject",
                "attribute `subject` must not be empty",
            ),
            (
                with(|o| {
                    o.insert("source".into(), "not a uri".into());
                }),
                "invalid_uri",
                "/source",
                "attribute `source` must be a URI-reference (RFC 3986), found `not a uri`",
            ),
            (
                with(|o| {
                    o.insert("dataschema".into(), "/relative/schema.json".into());
                }),
                "invalid_uri",
                "/dataschema",
                "attribute `dataschema` must be an absolute URI (RFC 3986), found `/relative/schema.json`",
            ),
            (
                with(|o| {
                    o.insert("type".into(), "accounts.\u{7}Opened".into());
                }),
                "invalid_character",
                "/type",
                "attribute `type` holds a control character or a Unicode noncharacter",
            ),
            (
                with(|o| {
                    o.insert("region".into(), "eu\u{FFFF}".into());
                }),
                "invalid_character",
                "/region",
                "attribute `region` holds a control character or a Unicode noncharacter",
            ),
            (
                with(|o| {
                    o.insert("data_base64".into(), "e30=".into());
                }),
                "data_and_data_base64",
                "/data_base64",
                "`data` and `data_base64` cannot both be present",
            ),
            (
                with(|o| {
                    o.remove("data");
                    o.insert("data_base64".into(), "not base64!".into());
                }),
                "invalid_base64",
                "/data_base64",
                "attribute `data_base64` is not valid Base64: Invalid symbol 32, offset 3.",
            ),
            (
                with(|o| {
                    o.remove("data");
                    o.insert("data_base64".into(), "e29vcHM=".into());
                }),
                "data_not_json",
                "/data",
                "data is not valid JSON: key must be a string at line 1 column 2",
            ),
            (
                with(|o| {
                    o.remove("data");
                    o.insert("data_base64".into(), json!(7));
                }),
                "wrong_type",
                "/data_base64",
                "attribute `data_base64` must be a string, found a number",
            ),
        ];
        for (result, kind, pointer, message) in cases {
            let err = result.expect_err(message);
            assert_eq!((err.kind(), err.pointer().as_str(), err.to_string().as_str()), (kind, pointer, message));
        }
    }

    #[test]
    fn oversized_events_are_refused_before_parsing() {
        let big = vec![b' '; MAX_EVENT_BYTES + 1];
        let err = CloudEvent::from_slice(&big).unwrap_err();
        assert_eq!(err.kind(), "too_large");
        assert_eq!(
            err.to_string(),
            format!("event is {} bytes, more than the limit of {} bytes", MAX_EVENT_BYTES + 1, MAX_EVENT_BYTES)
        );
    }

    #[test]
    fn every_json_media_type_is_json_content() {
        for content_type in ["application/json; charset=utf-8", "text/json", "application/vnd.bank.deposit+json"] {
            let event = with(|o| {
                o.insert("datacontenttype".into(), content_type.into());
            });
            assert!(event.is_ok(), "{content_type}: {event:?}");
        }
        for not_json in ["application/jsonx", "json", "application/", "application/xml"] {
            assert!(!is_json_media_type(not_json), "{not_json}");
        }
    }

    #[test]
    fn null_attributes_are_unset_and_null_data_is_a_payload() {
        let event = with(|o| {
            o.insert("subject".into(), json!(null));
            o.insert("time".into(), json!(null));
            o.insert("unsetextension".into(), json!(null));
            o.insert("data".into(), json!(null));
        })
        .unwrap();
        assert_eq!((event.subject, event.time), (None, None));
        assert!(!event.extensions.contains_key("unsetextension"));
        assert_eq!(event.data, Some(Value::Null));
    }

    #[test]
    fn json_data_in_base64_is_read_as_data() {
        let event = with(|o| {
            o.remove("data");
            // {"account_id":"acc-1"}
            o.insert("data_base64".into(), "eyJhY2NvdW50X2lkIjoiYWNjLTEifQ==".into());
        })
        .unwrap();
        assert_eq!(event.data, Some(json!({"account_id": "acc-1"})));
    }

    #[test]
    fn extension_values_and_names_follow_the_type_system() {
        let event = with(|o| {
            o.insert("comexampleothervalue".into(), json!(5));
            o.insert("negative".into(), json!(-2_147_483_648_i64));
            o.insert("flag".into(), json!(true));
            // Longer than 20 characters is discouraged, not forbidden.
            o.insert("averyverylongextensionname".into(), "x".into());
        })
        .unwrap();
        assert_eq!(event.extensions["comexampleothervalue"], 5);
        assert_eq!(event.extensions["negative"], -2_147_483_648_i64);
        assert_eq!(event.extensions["flag"], true);
        assert!(event.extensions.contains_key("averyverylongextensionname"));
    }

    #[test]
    fn an_empty_batch_is_a_batch() {
        assert_eq!(parse_batch(b"[]").unwrap(), Vec::<Value>::new());
    }
}
