//! CloudEvents protocol bindings: how an event travels in a Kafka record or an HTTP request, and
//! how it is read back into a [`CloudEvent`].
//!
//! Two content modes (Kafka binding 1.3, HTTP binding 3):
//! - **structured**: the value or body is the event in the JSON format, the content type
//!   `application/cloudevents+json` (parameters such as `charset` allowed);
//! - **binary**: the value or body is the event's `data` alone, its media type in `content-type`,
//!   and every other attribute in its own header (`ce_<name>` on Kafka, `ce-<name>` on HTTP).
//!
//! eventline writes structured records; it reads both, since upstream systems that write
//! straight to Kafka with a CloudEvents SDK often use binary mode.

use serde_json::{Map, Value};

use crate::envelope::{is_json_media_type, CloudEvent, EnvelopeError, MAX_EVENT_BYTES};

/// The JSON event format's media type (structured mode).
pub const STRUCTURED_JSON: &str = "application/cloudevents+json";
/// The JSON batch format's media type (HTTP batched mode).
pub const BATCH_JSON: &str = "application/cloudevents-batch+json";
/// The prefix of attribute headers in Kafka binary mode.
pub const KAFKA_PREFIX: &str = "ce_";
/// The prefix of attribute headers in HTTP binary mode.
pub const HTTP_PREFIX: &str = "ce-";

/// How a message carries its event, decided by its content type (bindings: Kafka 3, HTTP 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentMode {
    /// The JSON event format in the value or body.
    Structured,
    /// A JSON array of events (HTTP only).
    Batch,
    /// `data` in the value or body, attributes in headers.
    Binary,
}

impl ContentMode {
    /// The mode a content type announces: a CloudEvents media type (`application/cloudevents…`,
    /// any case) means structured or batch mode, and only the JSON format is read; anything
    /// else (or none) means binary mode.
    pub fn of(content_type: Option<&str>) -> Result<Self, EnvelopeError> {
        let Some(content_type) = content_type else { return Ok(Self::Binary) };
        let essence = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
        if essence.starts_with("application/cloudevents-batch") {
            return match essence.as_str() {
                BATCH_JSON => Ok(Self::Batch),
                _ => Err(EnvelopeError::UnsupportedFormat(content_type.to_string())),
            };
        }
        if essence.starts_with("application/cloudevents") {
            return match essence.as_str() {
                STRUCTURED_JSON => Ok(Self::Structured),
                _ => Err(EnvelopeError::UnsupportedFormat(content_type.to_string())),
            };
        }
        Ok(Self::Binary)
    }
}

/// Reads the event a Kafka record carries. Structured mode when `content-type` is
/// `application/cloudevents+json`; binary mode when it is another media type or absent and a
/// `ce_specversion` header is there; a record with neither (no CloudEvents content type, no
/// attribute headers) is read as structured JSON, as eventline's own and many producers' records
/// without headers are.
pub fn from_kafka_record(headers: &[(String, Vec<u8>)], value: Option<&[u8]>) -> Result<CloudEvent, EnvelopeError> {
    let text = |name: &str, bytes: &[u8]| -> Result<String, EnvelopeError> {
        String::from_utf8(bytes.to_vec())
            .map_err(|_| EnvelopeError::InvalidHeader { header: name.to_string(), reason: "is not valid UTF-8".into() })
    };
    let content_type = match headers.iter().rev().find(|(name, _)| name.eq_ignore_ascii_case("content-type")) {
        Some((name, bytes)) => Some(text(name, bytes)?),
        None => None,
    };
    if let ContentMode::Batch = ContentMode::of(content_type.as_deref())? {
        return Err(EnvelopeError::UnsupportedFormat(content_type.unwrap_or_default()));
    }
    if !is_binary_record(headers) {
        return CloudEvent::from_slice(value.ok_or(EnvelopeError::NoValue)?);
    }
    let mut attributes = Vec::new();
    for (name, bytes) in headers {
        if let Some(attribute) = name.strip_prefix(KAFKA_PREFIX) {
            attributes.push((attribute.to_string(), text(name, bytes)?));
        }
    }
    from_binary(KAFKA_PREFIX, attributes, content_type.as_deref(), value)
}

/// A stored record's payload as a CloudEvent-shaped JSON value, and whether it was one already:
/// in structured mode the payload is the event; in binary mode it is the event's data, its type
/// and data version in the `ce_` headers (kept, as dead letters keep them, as a JSON object of
/// names to text).
pub fn stored_event(payload: Value, headers: &Value) -> (Value, bool) {
    if payload.get("specversion").is_some() {
        return (payload, true);
    }
    let version = headers["ce_dataversion"].as_str().and_then(|v| v.parse::<u64>().ok()).unwrap_or(1);
    (serde_json::json!({"type": headers["ce_type"], "dataversion": version, "data": payload}), false)
}

/// Whether a Kafka record is in binary content mode: its `content-type` is not a CloudEvents
/// media type and it has a `ce_specversion` header.
pub fn is_binary_record(headers: &[(String, Vec<u8>)]) -> bool {
    let cloudevents_type = headers.iter().any(|(name, value)| {
        name.eq_ignore_ascii_case("content-type")
            && value.len() >= 23
            && value[..23].eq_ignore_ascii_case(b"application/cloudevents")
    });
    !cloudevents_type && headers.iter().any(|(name, _)| name == "ce_specversion")
}

/// Builds an event from binary-mode parts: attributes from their headers (`prefix` stripped,
/// values already decoded to text), `datacontenttype` from the content type, and `data` from
/// the value or body, which eventline reads as JSON.
pub fn from_binary(
    prefix: &str,
    attributes: Vec<(String, String)>,
    content_type: Option<&str>,
    data: Option<&[u8]>,
) -> Result<CloudEvent, EnvelopeError> {
    let mut object = Map::new();
    for (name, text) in attributes {
        if name == "datacontenttype" {
            // The content type header carries it (HTTP binding 3.1.1, Kafka binding 3.2.1).
            return Err(EnvelopeError::InvalidHeader {
                header: format!("{prefix}datacontenttype"),
                reason: "must not be present in binary mode: the content type header carries datacontenttype".into(),
            });
        }
        // A header carries text; `dataversion` is an Integer attribute.
        let value = match name.as_str() {
            "dataversion" => text.parse::<i64>().map_or_else(|_| Value::from(text.clone()), Value::from),
            _ => Value::from(text),
        };
        object.insert(name, value);
    }
    if let Some(content_type) = content_type {
        object.insert("datacontenttype".into(), content_type.into());
    }
    if let Some(bytes) = data {
        if bytes.len() > MAX_EVENT_BYTES {
            return Err(EnvelopeError::TooLarge { size: bytes.len(), limit: MAX_EVENT_BYTES });
        }
        if let Some(content_type) = content_type.filter(|c| !is_json_media_type(c)) {
            return Err(EnvelopeError::UnsupportedContentType(content_type.to_string()));
        }
        let data: Value = serde_json::from_slice(bytes).map_err(|e| EnvelopeError::DataNotJson(e.to_string()))?;
        object.insert("data".into(), data);
    }
    CloudEvent::from_value(Value::Object(object))
}

/// Decodes an HTTP binary-mode header value (HTTP binding 3.1.3.2): a double-quoted string is
/// unquoted first, then one round of percent-decoding; bytes that are not UTF-8 are refused.
pub fn http_header_value(raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    let unquoted = match raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        Some(inner) => {
            let mut out = String::with_capacity(inner.len());
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                out.push(if c == '\\' { chars.next().ok_or("ends in a lone backslash")? } else { c });
            }
            out
        }
        None => raw.to_string(),
    };
    percent_encoding::percent_decode_str(&unquoted)
        .decode_utf8()
        .map(|text| text.into_owned())
        .map_err(|_| "is not valid UTF-8 once percent-decoded".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())).collect()
    }

    const BINARY: [(&str, &str); 5] = [
        ("ce_specversion", "1.0"),
        ("ce_id", "b-1"),
        ("ce_source", "/sdk"),
        ("ce_type", "accounts.AccountOpened"),
        ("ce_subject", "acc-1"),
    ];
    const DATA: &[u8] = br#"{"account_id":"acc-1","owner":"Ada","currency":"EUR"}"#;

    #[test]
    fn binary_mode_takes_attributes_from_headers_and_data_from_the_value() {
        let mut pairs = BINARY.to_vec();
        pairs.extend([
            ("content-type", "application/json; charset=utf-8"),
            ("ce_dataversion", "1"),
            ("ce_region", "eu"),
        ]);
        let event = from_kafka_record(&headers(&pairs), Some(DATA)).unwrap();
        assert_eq!(
            (event.id.as_str(), event.source.as_str(), event.subject.as_deref()),
            ("b-1", "/sdk", Some("acc-1"))
        );
        assert_eq!(event.datacontenttype.as_deref(), Some("application/json; charset=utf-8"));
        assert_eq!(event.dataversion, 1);
        assert_eq!(event.extensions["region"], "eu");
        assert_eq!(event.data.unwrap()["owner"], "Ada");
    }

    #[test]
    fn structured_mode_reads_the_value_whatever_the_charset_and_case() {
        let value = br#"{"specversion":"1.0","id":"s-1","source":"/t","type":"x.Y","data":{}}"#;
        for content_type in ["application/cloudevents+json", "Application/CloudEvents+JSON; charset=UTF-8"] {
            // Attribute headers beside a structured value are informational (Kafka binding 3.3.3).
            let pairs = [("content-type", content_type), ("ce_id", "other"), ("ce_specversion", "1.0")];
            assert_eq!(from_kafka_record(&headers(&pairs), Some(value)).unwrap().id, "s-1", "{content_type}");
        }
        // No content type and no attribute headers: structured JSON.
        assert_eq!(from_kafka_record(&[], Some(value)).unwrap().id, "s-1");
    }

    #[test]
    fn each_bad_record_gets_its_kind() {
        let binary_with = |extra: &[(&'static str, &'static str)]| {
            let mut pairs = BINARY.to_vec();
            pairs.extend_from_slice(extra);
            headers(&pairs)
        };
        let mut not_utf8 = binary_with(&[]);
        not_utf8.push(("ce_region".into(), vec![0xff, 0xfe]));
        type Headers = Vec<(String, Vec<u8>)>;
        let cases: Vec<(Headers, Option<&[u8]>, &str, &str)> = vec![
            (headers(&[("content-type", "application/cloudevents+avro")]), Some(DATA), "unsupported_format",
             "event format `application/cloudevents+avro` is not supported (expected application/cloudevents+json)"),
            (headers(&[("content-type", "application/cloudevents-batch+json")]), Some(DATA), "unsupported_format",
             "event format `application/cloudevents-batch+json` is not supported (expected application/cloudevents+json)"),
            (headers(&[("content-type", "application/cloudevents+json")]), None, "no_value", "record has no value"),
            (binary_with(&[("content-type", "text/plain")]), Some(b"hello"), "unsupported_datacontenttype",
             "datacontenttype `text/plain` is not supported (expected JSON: application/json or a */*+json type)"),
            (binary_with(&[("content-type", "application/json")]), Some(b"{oops"), "data_not_json",
             "data is not valid JSON: key must be a string at line 1 column 2"),
            (binary_with(&[("ce_datacontenttype", "application/json")]), Some(DATA), "invalid_header",
             "header `ce_datacontenttype` must not be present in binary mode: the content type header carries datacontenttype"),
            (not_utf8, Some(DATA), "invalid_header", "header `ce_region` is not valid UTF-8"),
            (binary_with(&[("ce_dataversion", "two")]), Some(DATA), "wrong_type",
             "attribute `dataversion` must be an integer, found a string"),
            (headers(&[("ce_specversion", "1.0"), ("ce_source", "/t"), ("ce_type", "x.Y")]), Some(DATA), "missing_attribute",
             "missing required attribute `id`"),
        ];
        for (headers, value, kind, message) in cases {
            let error = from_kafka_record(&headers, value).expect_err(message);
            assert_eq!((error.kind(), error.to_string().as_str()), (kind, message));
        }
    }

    #[test]
    fn a_binary_record_without_a_value_has_no_data() {
        let event = from_kafka_record(&headers(&BINARY), None).unwrap();
        assert_eq!(event.data, None);
    }

    #[test]
    fn content_modes_follow_the_content_type() {
        assert_eq!(ContentMode::of(None).unwrap(), ContentMode::Binary);
        assert_eq!(ContentMode::of(Some("application/json")).unwrap(), ContentMode::Binary);
        assert_eq!(ContentMode::of(Some("application/cloudevents+json")).unwrap(), ContentMode::Structured);
        assert_eq!(
            ContentMode::of(Some("application/cloudevents-batch+json; charset=utf-8")).unwrap(),
            ContentMode::Batch
        );
        assert_eq!(ContentMode::of(Some("application/cloudevents+xml")).unwrap_err().kind(), "unsupported_format");
    }

    #[test]
    fn http_header_values_are_unquoted_then_percent_decoded() {
        assert_eq!(http_header_value("Euro%20%E2%82%AC%20%F0%9F%98%80").unwrap(), "Euro € 😀");
        assert_eq!(http_header_value("plain").unwrap(), "plain");
        assert_eq!(http_header_value("%e2%82%ac").unwrap(), "€", "lower-case hex is accepted");
        assert_eq!(http_header_value(r#""a \"quoted\" value""#).unwrap(), r#"a "quoted" value"#);
        assert_eq!(http_header_value("%61%62").unwrap(), "ab", "needless encoding is accepted");
        // An overlong encoding of a space is not UTF-8 (HTTP binding 3.1.3.2).
        assert_eq!(http_header_value("%C0%A0").unwrap_err(), "is not valid UTF-8 once percent-decoded");
    }
}
