//! Reading events to publish: NDJSON (one structured event per line) or a batch (one JSON array,
//! `application/cloudevents-batch+json`), always validated as a whole before anything is
//! published: one bad event and nothing goes out.

use std::fmt;

use eventline_core::contract::{ContractError, ValidatedEvent};
use eventline_core::envelope::EnvelopeError;
use eventline_core::registry::{BatchError, Registry};

/// Where in the input a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// 1-based line of NDJSON input.
    Line(usize),
    /// 0-based index of an event in a batch.
    Index(usize),
    /// The input as a whole (e.g. a batch that is not a JSON array).
    Whole,
}

/// One refused event (or the whole input), with what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputError {
    pub location: Location,
    pub error: ContractError,
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.location {
            Location::Line(line) => write!(f, "line {line}: ")?,
            Location::Index(index) => write!(f, "event {index}: ")?,
            Location::Whole => {}
        }
        write!(f, "{} [{}", self.error, self.error.kind())?;
        match self.error.pointer() {
            pointer if pointer.is_empty() => write!(f, "]"),
            pointer => write!(f, " at {pointer}]"),
        }
    }
}

/// Validates NDJSON or batch input (a batch starts with `[`). Returns the events in input order,
/// or every problem found, in which case none of the input may be published.
pub fn read_events(input: &[u8], registry: &Registry) -> Result<Vec<ValidatedEvent>, Vec<InputError>> {
    let is_batch = input.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
    if is_batch {
        return registry.validate_batch(input).map_err(|error| match error {
            BatchError::Body(error) => vec![InputError { location: Location::Whole, error: error.into() }],
            BatchError::Events(errors) => errors
                .into_iter()
                .map(|(index, error)| InputError { location: Location::Index(index), error })
                .collect(),
        });
    }
    let mut events = Vec::new();
    let mut errors = Vec::new();
    for (index, line) in input.split(|b| *b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let checked = std::str::from_utf8(line)
            .map_err(|e| ContractError::from(EnvelopeError::NotJson(format!("not UTF-8: {e}"))))
            .and_then(|text| registry.validate_slice(text.as_bytes()));
        match checked {
            Ok(event) => events.push(event),
            Err(error) => errors.push(InputError { location: Location::Line(index + 1), error }),
        }
    }
    if errors.is_empty() {
        Ok(events)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> Registry {
        Registry::from_dir(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas")).unwrap()
    }

    const GOOD: &str = r#"{"specversion":"1.0","id":"1","source":"/t","type":"accounts.AccountOpened","subject":"a","data":{"account_id":"a","owner":"o","currency":"EUR"}}"#;

    #[test]
    fn one_bad_line_rejects_the_input_and_each_bad_line_is_named() {
        let input = format!(
            "{GOOD}\n\n{{not json\n{}\n",
            r#"{"specversion":"1.0","id":"3","source":"/t","type":"accounts.Unknown","subject":"a","data":{}}"#
        );
        let errors = read_events(input.as_bytes(), &registry()).unwrap_err();
        let printed: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            printed,
            [
                "line 3: not valid JSON: key must be a string at line 1 column 2 [not_json]",
                "line 4: unknown event type `accounts.Unknown` [unknown_type at /type]",
            ]
        );
    }

    #[test]
    fn a_batch_names_its_bad_events_by_index() {
        let bad = GOOD.replace(r#""owner":"o","#, "");
        let input = format!("  [{GOOD}, {bad}, {GOOD}]");
        let errors = read_events(input.as_bytes(), &registry()).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(
            errors[0].to_string(),
            "event 1: missing required field `data.owner` [missing_field at /data/owner]"
        );
        // An empty batch is valid CloudEvents and holds nothing.
        assert!(read_events(b"[]", &registry()).unwrap().is_empty());
    }

    #[test]
    fn good_input_yields_its_events_in_order() {
        let lines = format!("{GOOD}\n{}\n", GOOD.replace(r#""id":"1""#, r#""id":"2""#));
        let ids = |events: Vec<ValidatedEvent>| events.iter().map(|e| e.envelope().id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(read_events(lines.as_bytes(), &registry()).unwrap()), ["1", "2"]);
        let batch = format!("[{GOOD},{}]", GOOD.replace(r#""id":"1""#, r#""id":"2""#));
        assert_eq!(ids(read_events(batch.as_bytes(), &registry()).unwrap()), ["1", "2"]);
    }
}
