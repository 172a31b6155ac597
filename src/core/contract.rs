//! Checks an envelope against the catalog and its type's data contract, producing the one value
//! the rest of eventline trusts: a [`ValidatedEvent`].

use serde_json::{Map, Value};

use crate::catalog::Catalog;
use crate::domain::{AccountEvent, ActivityEvent, DomainEvent, ProjectEvent};
use crate::envelope::{json_type, CloudEvent, EnvelopeError};

/// Longest identifier or text field accepted in event data.
pub const MAX_TEXT_CHARS: usize = 256;

/// Why an event was refused. Each variant has a stable kind and the JSON pointer it concerns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContractError {
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    #[error("unknown event type `{0}`")]
    UnknownType(String),
    #[error("`{event_type}` has no data version {version} (known: {known})")]
    UnknownDataVersion { event_type: String, version: u32, known: String },
    #[error("missing `data`")]
    MissingData,
    #[error("`data` must be an object, found {0}")]
    DataNotObject(&'static str),
    #[error("missing required field `data.{0}`")]
    MissingField(String),
    #[error("field `data.{field}` must be {expected}, found {found}")]
    WrongFieldType { field: String, expected: &'static str, found: &'static str },
    #[error("field `data.{field}` {reason}")]
    InvalidField { field: String, reason: String },
    #[error("field `data.{0}` is not part of this event type")]
    UnknownField(String),
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
            Self::MissingData => "missing_data",
            Self::DataNotObject(_) => "wrong_type",
            Self::MissingField(_) => "missing_field",
            Self::WrongFieldType { .. } => "wrong_type",
            Self::InvalidField { .. } => "invalid_value",
            Self::UnknownField(_) => "unknown_field",
            Self::SubjectMismatch { .. } => "subject_mismatch",
        }
    }

    /// The JSON pointer of the offending part of the event.
    pub fn pointer(&self) -> String {
        match self {
            Self::Envelope(e) => e.pointer(),
            Self::UnknownType(_) => "/type".into(),
            Self::UnknownDataVersion { .. } => "/dataversion".into(),
            Self::MissingData | Self::DataNotObject(_) => "/data".into(),
            Self::MissingField(f) | Self::UnknownField(f) => format!("/data/{f}"),
            Self::WrongFieldType { field, .. } | Self::InvalidField { field, .. } => {
                format!("/data/{field}")
            }
            Self::SubjectMismatch { .. } => "/subject".into(),
        }
    }
}

/// An event that passed every check: its type is in the catalog, its data matches the contract,
/// and its `subject` is the entity key. Only [`validate`] builds one.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedEvent {
    envelope: CloudEvent,
    topic: String,
    payload: DomainEvent,
}

impl ValidatedEvent {
    /// The envelope, with `subject` filled from the key field when it was absent.
    pub fn envelope(&self) -> &CloudEvent {
        &self.envelope
    }

    /// Catalog topic (before any namespace prefix).
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The entity id: the Kafka record key.
    pub fn key(&self) -> &str {
        self.envelope.subject.as_deref().expect("validate always sets the subject")
    }

    pub fn payload(&self) -> &DomainEvent {
        &self.payload
    }

    pub fn into_parts(self) -> (CloudEvent, DomainEvent) {
        (self.envelope, self.payload)
    }
}

/// Parses and validates one structured-mode event.
pub fn validate_slice(catalog: &Catalog, bytes: &[u8]) -> Result<ValidatedEvent, ContractError> {
    validate(catalog, CloudEvent::from_slice(bytes)?)
}

/// Validates an envelope against the catalog and its type's data contract.
pub fn validate(catalog: &Catalog, mut envelope: CloudEvent) -> Result<ValidatedEvent, ContractError> {
    let (domain, entry) =
        catalog.lookup(&envelope.event_type).ok_or_else(|| ContractError::UnknownType(envelope.event_type.clone()))?;
    if !entry.versions.contains(&envelope.dataversion) {
        let known: Vec<String> = entry.versions.iter().map(u32::to_string).collect();
        return Err(ContractError::UnknownDataVersion {
            event_type: envelope.event_type.clone(),
            version: envelope.dataversion,
            known: known.join(", "),
        });
    }
    let data = match &envelope.data {
        None => return Err(ContractError::MissingData),
        Some(Value::Object(map)) => map,
        Some(other) => return Err(ContractError::DataNotObject(json_type(other))),
    };
    let payload = parse_payload(&envelope.event_type, data)?;

    let key = match data.get(&domain.key) {
        Some(Value::String(key)) => key.clone(),
        _ => return Err(ContractError::MissingField(domain.key.clone())),
    };
    match &envelope.subject {
        Some(subject) if *subject != key => {
            return Err(ContractError::SubjectMismatch { subject: subject.clone(), key_field: domain.key.clone(), key })
        }
        Some(_) => {}
        None => envelope.subject = Some(key),
    }
    Ok(ValidatedEvent { envelope, topic: domain.topic.clone(), payload })
}

fn parse_payload(event_type: &str, data: &Map<String, Value>) -> Result<DomainEvent, ContractError> {
    let mut d = Fields::new(data);
    let event = match event_type {
        "accounts.AccountOpened" => DomainEvent::Accounts(AccountEvent::Opened {
            account_id: d.text("account_id")?,
            owner: d.text("owner")?,
            currency: d.currency("currency")?,
        }),
        "accounts.FundsDeposited" => DomainEvent::Accounts(AccountEvent::Deposited {
            account_id: d.text("account_id")?,
            amount_minor: d.positive_amount("amount_minor")?,
            currency: d.currency("currency")?,
        }),
        "accounts.FundsWithdrawn" => DomainEvent::Accounts(AccountEvent::Withdrawn {
            account_id: d.text("account_id")?,
            amount_minor: d.positive_amount("amount_minor")?,
            currency: d.currency("currency")?,
        }),
        "accounts.AccountClosed" => DomainEvent::Accounts(AccountEvent::Closed { account_id: d.text("account_id")? }),
        "projects.ProjectCreated" => DomainEvent::Projects(ProjectEvent::ProjectCreated {
            project_id: d.text("project_id")?,
            name: d.text("name")?,
        }),
        "projects.TaskCreated" => DomainEvent::Projects(ProjectEvent::TaskCreated {
            project_id: d.text("project_id")?,
            task_id: d.text("task_id")?,
            title: d.text("title")?,
        }),
        "projects.TaskAssigned" => DomainEvent::Projects(ProjectEvent::TaskAssigned {
            project_id: d.text("project_id")?,
            task_id: d.text("task_id")?,
            assignee: d.text("assignee")?,
        }),
        "projects.TaskCompleted" => DomainEvent::Projects(ProjectEvent::TaskCompleted {
            project_id: d.text("project_id")?,
            task_id: d.text("task_id")?,
        }),
        "projects.TaskReopened" => DomainEvent::Projects(ProjectEvent::TaskReopened {
            project_id: d.text("project_id")?,
            task_id: d.text("task_id")?,
        }),
        "activity.PageViewed" => DomainEvent::Activity(ActivityEvent::PageViewed {
            user_id: d.text("user_id")?,
            path: d.text("path")?,
            session_id: d.text("session_id")?,
        }),
        "activity.FeatureUsed" => DomainEvent::Activity(ActivityEvent::FeatureUsed {
            user_id: d.text("user_id")?,
            feature: d.text("feature")?,
        }),
        // The catalog lists a type this build has no contract for: refuse rather than guess.
        other => return Err(ContractError::UnknownType(other.to_string())),
    };
    d.finish()?;
    Ok(event)
}

/// Reads typed fields out of `data`, remembering which were read so leftovers can be refused.
struct Fields<'a> {
    data: &'a Map<String, Value>,
    read: Vec<&'static str>,
}

impl<'a> Fields<'a> {
    fn new(data: &'a Map<String, Value>) -> Self {
        Self { data, read: Vec::new() }
    }

    fn get(&mut self, field: &'static str) -> Result<&'a Value, ContractError> {
        self.read.push(field);
        self.data.get(field).ok_or_else(|| ContractError::MissingField(field.into()))
    }

    fn text(&mut self, field: &'static str) -> Result<String, ContractError> {
        match self.get(field)? {
            Value::String(s) if s.trim().is_empty() => {
                Err(ContractError::InvalidField { field: field.into(), reason: "must not be empty".into() })
            }
            Value::String(s) if s.chars().count() > MAX_TEXT_CHARS => Err(ContractError::InvalidField {
                field: field.into(),
                reason: format!("is longer than {MAX_TEXT_CHARS} characters"),
            }),
            Value::String(s) => Ok(s.clone()),
            other => Err(ContractError::WrongFieldType {
                field: field.into(),
                expected: "a string",
                found: json_type(other),
            }),
        }
    }

    fn positive_amount(&mut self, field: &'static str) -> Result<i64, ContractError> {
        let value = self.get(field)?;
        let Value::Number(n) = value else {
            return Err(ContractError::WrongFieldType {
                field: field.into(),
                expected: "an integer",
                found: json_type(value),
            });
        };
        match n.as_i64() {
            Some(amount) if amount > 0 => Ok(amount),
            Some(_) => {
                Err(ContractError::InvalidField { field: field.into(), reason: "must be greater than 0".into() })
            }
            None if n.is_f64() => Err(ContractError::InvalidField {
                field: field.into(),
                reason: format!("must be a whole number of minor units, found {n}"),
            }),
            None => Err(ContractError::InvalidField { field: field.into(), reason: format!("is out of range: {n}") }),
        }
    }

    fn currency(&mut self, field: &'static str) -> Result<String, ContractError> {
        let code = self.text(field)?;
        if code.len() == 3 && code.chars().all(|c| c.is_ascii_uppercase()) {
            Ok(code)
        } else {
            Err(ContractError::InvalidField {
                field: field.into(),
                reason: format!("must be a three-letter ISO 4217 code like EUR, found `{code}`"),
            })
        }
    }

    fn finish(self) -> Result<(), ContractError> {
        match self.data.keys().find(|k| !self.read.contains(&k.as_str())) {
            Some(extra) => Err(ContractError::UnknownField(extra.clone())),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(event_type: &str, data: Value) -> Value {
        json!({"specversion": "1.0", "id": "e1", "source": "/test", "type": event_type, "data": data})
    }

    fn check(value: Value) -> Result<ValidatedEvent, ContractError> {
        validate_slice(Catalog::builtin(), value.to_string().as_bytes())
    }

    #[test]
    fn every_catalog_type_has_a_contract() {
        for domain in Catalog::builtin().domains() {
            for event_type in domain.types.keys() {
                let err = check(event(event_type, json!({}))).unwrap_err();
                assert_eq!(err.kind(), "missing_field", "{event_type} has no contract: {err}");
            }
        }
    }

    #[test]
    fn a_valid_deposit_is_typed_and_keyed() {
        let validated = check(event(
            "accounts.FundsDeposited",
            json!({"account_id": "a1", "amount_minor": 250, "currency": "EUR"}),
        ))
        .unwrap();
        assert_eq!(validated.topic(), "accounts.events");
        assert_eq!(validated.key(), "a1");
        assert_eq!(
            validated.payload(),
            &DomainEvent::Accounts(AccountEvent::Deposited {
                account_id: "a1".into(),
                amount_minor: 250,
                currency: "EUR".into()
            })
        );
    }

    #[test]
    fn bad_data_gets_its_kind_and_pointer() {
        let deposit = |data: Value| event("accounts.FundsDeposited", data);
        let cases: Vec<(Value, &str, &str, &str)> = vec![
            (event("accounts.Nope", json!({})), "unknown_type", "/type", "unknown event type `accounts.Nope`"),
            (
                {
                    let mut e = deposit(json!({}));
                    e["dataversion"] = json!(9);
                    e
                },
                "unknown_dataversion",
                "/dataversion",
                "`accounts.FundsDeposited` has no data version 9 (known: 1)",
            ),
            (
                json!({"specversion": "1.0", "id": "e", "source": "/s", "type": "accounts.AccountClosed"}),
                "missing_data",
                "/data",
                "missing `data`",
            ),
            (deposit(json!([1])), "wrong_type", "/data", "`data` must be an object, found an array"),
            (
                deposit(json!({"account_id": "a", "currency": "EUR"})),
                "missing_field",
                "/data/amount_minor",
                "missing required field `data.amount_minor`",
            ),
            (
                deposit(json!({"account_id": "a", "amount_minor": "5", "currency": "EUR"})),
                "wrong_type",
                "/data/amount_minor",
                "field `data.amount_minor` must be an integer, found a string",
            ),
            (
                deposit(json!({"account_id": "a", "amount_minor": -5, "currency": "EUR"})),
                "invalid_value",
                "/data/amount_minor",
                "field `data.amount_minor` must be greater than 0",
            ),
            (
                deposit(json!({"account_id": "a", "amount_minor": 0, "currency": "EUR"})),
                "invalid_value",
                "/data/amount_minor",
                "field `data.amount_minor` must be greater than 0",
            ),
            (
                deposit(json!({"account_id": "a", "amount_minor": 1.5, "currency": "EUR"})),
                "invalid_value",
                "/data/amount_minor",
                "field `data.amount_minor` must be a whole number of minor units, found 1.5",
            ),
            (
                deposit(json!({"account_id": "a", "amount_minor": 5, "currency": "euro"})),
                "invalid_value",
                "/data/currency",
                "field `data.currency` must be a three-letter ISO 4217 code like EUR, found `euro`",
            ),
            (
                deposit(json!({"account_id": "", "amount_minor": 5, "currency": "EUR"})),
                "invalid_value",
                "/data/account_id",
                "field `data.account_id` must not be empty",
            ),
            (
                deposit(json!({"account_id": 7, "amount_minor": 5, "currency": "EUR"})),
                "wrong_type",
                "/data/account_id",
                "field `data.account_id` must be a string, found a number",
            ),
            (
                deposit(json!({"account_id": "a", "amount_minor": 5, "currency": "EUR", "memo": "x"})),
                "unknown_field",
                "/data/memo",
                "field `data.memo` is not part of this event type",
            ),
            (
                {
                    let mut e = deposit(json!({"account_id": "a", "amount_minor": 5, "currency": "EUR"}));
                    e["subject"] = json!("b");
                    e
                },
                "subject_mismatch",
                "/subject",
                "subject `b` differs from `data.account_id` `a`",
            ),
        ];
        for (value, kind, pointer, message) in cases {
            let err = check(value).expect_err(message);
            assert_eq!((err.kind(), err.pointer().as_str(), err.to_string().as_str()), (kind, pointer, message));
        }
    }
}
