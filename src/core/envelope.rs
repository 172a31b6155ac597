//! The CloudEvents 1.0 envelope in JSON structured mode.
//!
//! Parsing checks every context attribute eventline relies on and reports the first problem with a
//! stable kind and the JSON pointer of the attribute, so callers can answer a user precisely.

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
    #[error("a batch must hold at least one event")]
    EmptyBatch,
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
    #[error("attribute `dataversion` must be a whole number of at least 1, found {0}")]
    InvalidDataVersion(String),
    #[error("datacontenttype `{0}` is not supported (expected application/json)")]
    UnsupportedContentType(String),
    #[error("extension attribute name `{0}` is not valid (1 to 20 lower-case letters or digits)")]
    InvalidExtensionName(String),
}

impl EnvelopeError {
    /// A stable, machine-readable name for the kind of problem.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "too_large",
            Self::NotJson(_) => "not_json",
            Self::NotObject(_) => "not_object",
            Self::NotArray(_) => "not_array",
            Self::EmptyBatch => "empty_batch",
            Self::MissingAttribute(_) => "missing_attribute",
            Self::EmptyAttribute(_) => "empty_attribute",
            Self::WrongType { .. } => "wrong_type",
            Self::UnsupportedSpecVersion(_) => "unsupported_specversion",
            Self::InvalidTime(_) => "invalid_time",
            Self::InvalidDataVersion(_) => "invalid_dataversion",
            Self::UnsupportedContentType(_) => "unsupported_datacontenttype",
            Self::InvalidExtensionName(_) => "invalid_extension_name",
        }
    }

    /// The JSON pointer of the offending attribute; empty when the whole event is at fault.
    pub fn pointer(&self) -> String {
        match self {
            Self::TooLarge { .. } | Self::NotJson(_) | Self::NotObject(_) | Self::NotArray(_) | Self::EmptyBatch => {
                String::new()
            }
            Self::MissingAttribute(a) | Self::EmptyAttribute(a) => format!("/{a}"),
            Self::WrongType { attribute, .. } | Self::InvalidExtensionName(attribute) => {
                format!("/{attribute}")
            }
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
        let value: Value = serde_json::from_slice(bytes).map_err(|e| EnvelopeError::NotJson(e.to_string()))?;
        Self::from_value(value)
    }

    /// Checks and takes apart an already parsed JSON value.
    pub fn from_value(value: Value) -> Result<Self, EnvelopeError> {
        let mut object = match value {
            Value::Object(object) => object,
            other => return Err(EnvelopeError::NotObject(json_type(&other))),
        };

        let specversion = required_string(&mut object, "specversion")?;
        if specversion != SPEC_VERSION {
            return Err(EnvelopeError::UnsupportedSpecVersion(specversion));
        }
        let id = required_string(&mut object, "id")?;
        let source = required_string(&mut object, "source")?;
        let event_type = required_string(&mut object, "type")?;
        let subject = optional_string(&mut object, "subject")?;
        let time = optional_string(&mut object, "time")?
            .map(|raw| {
                DateTime::parse_from_rfc3339(&raw)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|_| EnvelopeError::InvalidTime(raw))
            })
            .transpose()?;
        let datacontenttype = optional_string(&mut object, "datacontenttype")?;
        if let Some(content_type) = &datacontenttype {
            let essence = content_type.split(';').next().unwrap_or_default().trim();
            if !essence.eq_ignore_ascii_case("application/json") {
                return Err(EnvelopeError::UnsupportedContentType(content_type.clone()));
            }
        }
        let dataschema = optional_string(&mut object, "dataschema")?;
        let dataversion = match object.remove("dataversion") {
            None => 1,
            Some(Value::Number(n)) => match n.as_u64() {
                Some(v @ 1..=0xFFFF_FFFF) => v as u32,
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
        let data = object.remove("data");
        if object.contains_key("data_base64") {
            return Err(EnvelopeError::UnsupportedContentType("binary data (data_base64)".into()));
        }

        let mut extensions = BTreeMap::new();
        for (name, value) in object {
            let valid_name = !name.is_empty()
                && name.len() <= 20
                && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
            if !valid_name {
                return Err(EnvelopeError::InvalidExtensionName(name));
            }
            if !matches!(value, Value::String(_) | Value::Number(_) | Value::Bool(_)) {
                return Err(EnvelopeError::WrongType {
                    attribute: name,
                    expected: "a string, number or boolean",
                    found: json_type(&value),
                });
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
pub fn parse_batch(bytes: &[u8]) -> Result<Vec<Value>, EnvelopeError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| EnvelopeError::NotJson(e.to_string()))?;
    match value {
        Value::Array(events) if events.is_empty() => Err(EnvelopeError::EmptyBatch),
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
        Some(Value::String(s)) => Ok(Some(s)),
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
                "attribute `dataversion` must be a whole number of at least 1, found 0",
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
                "datacontenttype `text/plain` is not supported (expected application/json)",
            ),
            (
                with(|o| {
                    o.insert("Bad-Name".into(), "x".into());
                }),
                "invalid_extension_name",
                "/Bad-Name",
                "extension attribute name `Bad-Name` is not valid (1 to 20 lower-case letters or digits)",
            ),
            (
                with(|o| {
                    o.insert("region".into(), json!({"a": 1}));
                }),
                "wrong_type",
                "/region",
                "attribute `region` must be a string, number or boolean, found an object",
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
    fn datacontenttype_with_parameters_is_json() {
        assert!(with(|o| {
            o.insert("datacontenttype".into(), "application/json; charset=utf-8".into());
        })
        .is_ok());
    }
}
