//! What a validated event is, and every way an event can fail validation.

use serde_json::Value;

use crate::envelope::{json_type, CloudEvent, EnvelopeError};

/// Why an event was refused: a stable [`kind`](ContractError::kind), the JSON
/// [`pointer`](ContractError::pointer) of the offending part, and a sentence (`Display`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContractError {
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    #[error("unknown event type `{0}`")]
    UnknownType(String),
    #[error("`{event_type}` has no data version {version} (known: {known})")]
    UnknownDataVersion { event_type: String, version: u32, known: String },
    #[error("missing required attribute `subject` (the `{key_field}` of the entity)")]
    MissingSubject { key_field: String },
    #[error("missing `data`")]
    MissingData,
    #[error("missing required field `{}`", dotted(.pointer))]
    MissingField { pointer: String },
    #[error("field `{}` must be {expected}, found {found}", dotted(.pointer))]
    WrongType { pointer: String, expected: String, found: String },
    #[error("field `{}` {reason}", dotted(.pointer))]
    InvalidValue { pointer: String, reason: String },
    #[error("field `{}` is not part of {event_type} v{version}", dotted(.pointer))]
    UnknownField { pointer: String, event_type: String, version: u32 },
    #[error("subject `{subject}` differs from `data.{key_field}` `{key}`")]
    SubjectMismatch { subject: String, key_field: String, key: String },
}

impl ContractError {
    /// A stable, machine-readable name for the kind of problem.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Envelope(e) => e.kind(),
            Self::UnknownType(_) => "unknown_type",
            Self::UnknownDataVersion { .. } => "unknown_dataversion",
            Self::MissingSubject { .. } => "missing_attribute",
            Self::MissingData => "missing_data",
            Self::MissingField { .. } => "missing_field",
            Self::WrongType { .. } => "wrong_type",
            Self::InvalidValue { .. } => "invalid_value",
            Self::UnknownField { .. } => "unknown_field",
            Self::SubjectMismatch { .. } => "subject_mismatch",
        }
    }

    /// The JSON pointer of the offending part of the event; empty when it is the whole event.
    pub fn pointer(&self) -> String {
        match self {
            Self::Envelope(e) => e.pointer(),
            Self::UnknownType(_) => "/type".into(),
            Self::UnknownDataVersion { .. } => "/dataversion".into(),
            Self::MissingSubject { .. } | Self::SubjectMismatch { .. } => "/subject".into(),
            Self::MissingData => "/data".into(),
            Self::MissingField { pointer }
            | Self::WrongType { pointer, .. }
            | Self::InvalidValue { pointer, .. }
            | Self::UnknownField { pointer, .. } => pointer.clone(),
        }
    }
}

/// `/data/amount_minor` as people read it: `data.amount_minor`.
fn dotted(pointer: &str) -> String {
    pointer
        .trim_start_matches('/')
        .split('/')
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect::<Vec<_>>()
        .join(".")
}

/// How a JSON value is named in an error: numbers and short strings by value, others by type.
pub(crate) fn describe(value: &Value) -> String {
    match value {
        Value::Number(n) => n.to_string(),
        Value::String(s) if s.chars().count() <= 40 => format!("`{s}`"),
        other => json_type(other).to_string(),
    }
}

/// An event that passed every check: its type and version are registered, its data matches that
/// version's schema, and its `subject` is the entity key. It carries the envelope as published and
/// its data upcast to the type's current version, as validated JSON: typed payloads belong to the
/// projections that read them. Only the registry builds one.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedEvent {
    pub(crate) envelope: CloudEvent,
    pub(crate) topic: String,
    pub(crate) data: Value,
    pub(crate) current_version: u32,
}

impl ValidatedEvent {
    /// The envelope as it was published (its `data` at its own version).
    pub fn envelope(&self) -> &CloudEvent {
        &self.envelope
    }

    /// Catalog topic (before any namespace prefix).
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The entity id: the `subject`, and the Kafka record key.
    pub fn key(&self) -> &str {
        self.envelope.subject.as_deref().expect("the registry requires a subject")
    }

    /// The data at the type's current version, valid under its schema: what projections see.
    pub fn data(&self) -> &Value {
        &self.data
    }

    /// Sets the W3C trace context the event travels with, unless it carries its own. Not part of
    /// what was validated: it says where the event came from, not what it is.
    pub fn adopt_traceparent(&mut self, traceparent: &str) {
        if self.envelope.traceparent.is_none() {
            self.envelope.traceparent = Some(traceparent.to_string());
        }
    }

    /// The current version of this event's type (the version of [`data`](Self::data)).
    pub fn current_version(&self) -> u32 {
        self.current_version
    }
}
