//! Reading CloudEvents from newline-delimited JSON, all checked before any is published.

use std::fmt;
use std::io::BufRead;

use eventline_core::catalog::Catalog;
use eventline_core::contract::{self, ContractError, ValidatedEvent};

/// A rejected line: its 1-based number and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    pub line: usize,
    pub error: ContractError,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {} [{}", self.line, self.error, self.error.kind())?;
        match self.error.pointer() {
            pointer if pointer.is_empty() => write!(f, "]"),
            pointer => write!(f, " at {pointer}]"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read input: {0}")]
    Io(#[from] std::io::Error),
    #[error("{} invalid line(s); nothing was published", .0.len())]
    Invalid(Vec<LineError>),
}

/// Reads every line (blank ones skipped) and validates it. Returns the events in input order, or
/// every line's error when any line is invalid, so that a bad file publishes nothing.
pub fn read_events(input: impl BufRead, catalog: &Catalog) -> Result<Vec<ValidatedEvent>, ReadError> {
    let mut events = Vec::new();
    let mut errors = Vec::new();
    for (index, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        match contract::validate_slice(catalog, line.as_bytes()) {
            Ok(event) => events.push(event),
            Err(error) => errors.push(LineError { line: index + 1, error }),
        }
    }
    if errors.is_empty() {
        Ok(events)
    } else {
        Err(ReadError::Invalid(errors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_bad_line_rejects_the_file_and_names_each_bad_line() {
        let input = concat!(
            r#"{"specversion":"1.0","id":"1","source":"/t","type":"accounts.AccountOpened","data":{"account_id":"a","owner":"o","currency":"EUR"}}"#,
            "\n\n",
            "{not json\n",
            r#"{"specversion":"1.0","id":"3","source":"/t","type":"accounts.Unknown","data":{}}"#,
            "\n",
        );
        let Err(ReadError::Invalid(errors)) = read_events(input.as_bytes(), Catalog::builtin()) else {
            panic!("expected invalid lines");
        };
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
    fn a_good_file_yields_its_events_in_order() {
        let input = (1..=3)
            .map(|i| {
                format!(
                    r#"{{"specversion":"1.0","id":"{i}","source":"/t","type":"accounts.FundsDeposited","data":{{"account_id":"a","amount_minor":{i},"currency":"EUR"}}}}"#
                )
            })
            .collect::<Vec<_>>()
            .join("\n");
        let events = read_events(input.as_bytes(), Catalog::builtin()).unwrap();
        let ids: Vec<&str> = events.iter().map(|e| e.envelope().id.as_str()).collect();
        assert_eq!(ids, ["1", "2", "3"]);
    }
}
