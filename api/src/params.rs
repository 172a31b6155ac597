//! Query-string parameters: parsed and bounded here, so every bad value is a 400
//! `invalid-parameter` naming the parameter, and only typed values reach the store.

use std::collections::HashMap;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::NaiveDate;
use eventline_core::token::ConsistencyToken;
use eventline_http::Problem;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Page size when `limit` is not given.
pub const DEFAULT_LIMIT: i64 = 100;
/// Largest page.
pub const MAX_LIMIT: i64 = 1000;
/// How long a query waits for a consistency token when `wait_ms` is not given.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(5);
/// Longest wait a query may ask for.
pub const MAX_WAIT_MS: u64 = 30_000;
/// Longest text parameter (ids, owners, features), in characters as JSON Schema's `maxLength`
/// counts them; longer ones cannot name anything.
pub const MAX_TEXT: usize = 256;

/// The parameters of one request, checked against the names an endpoint accepts.
#[derive(Debug)]
pub struct Params {
    values: HashMap<String, String>,
}

impl Params {
    /// Parses `query`; unknown and repeated names are refused so typos do not pass silently.
    pub fn parse(query: Option<&str>, accepted: &[&str]) -> Result<Self, Problem> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.unwrap_or(""))
            .map_err(|_| Problem::invalid_parameter("the query string is not valid URL encoding"))?;
        let mut values = HashMap::new();
        for (name, value) in pairs {
            if !accepted.contains(&name.as_str()) {
                let takes = if accepted.is_empty() { "no parameters".to_string() } else { accepted.join(", ") };
                return Err(Problem::invalid_parameter(format!(
                    "unknown parameter `{name}`; this endpoint takes {takes}"
                )));
            }
            if values.insert(name.clone(), value).is_some() {
                return Err(Problem::invalid_parameter(format!("parameter `{name}` is given more than once")));
            }
        }
        Ok(Self { values })
    }

    /// A text parameter, if given (empty is refused: it would match nothing).
    pub fn text(&self, name: &str) -> Result<Option<&str>, Problem> {
        match self.values.get(name) {
            None => Ok(None),
            Some(value) if value.is_empty() => Err(Problem::invalid_parameter(format!("`{name}` is empty"))),
            Some(value) if value.chars().count() > MAX_TEXT => {
                Err(Problem::invalid_parameter(format!("`{name}` is longer than {MAX_TEXT} characters")))
            }
            Some(value) => Ok(Some(value)),
        }
    }

    /// `limit`: 1 to [`MAX_LIMIT`], default [`DEFAULT_LIMIT`].
    pub fn limit(&self) -> Result<i64, Problem> {
        let Some(raw) = self.values.get("limit") else { return Ok(DEFAULT_LIMIT) };
        match raw.parse::<i64>() {
            Ok(limit) if (1..=MAX_LIMIT).contains(&limit) => Ok(limit),
            _ => Err(Problem::invalid_parameter(format!(
                "`limit` must be a whole number from 1 to {MAX_LIMIT}, not `{raw}`"
            ))),
        }
    }

    /// A required `YYYY-MM-DD` date.
    pub fn date(&self, name: &str) -> Result<NaiveDate, Problem> {
        let raw = self
            .values
            .get(name)
            .ok_or_else(|| Problem::invalid_parameter(format!("`{name}` is required (YYYY-MM-DD)")))?;
        NaiveDate::parse_from_str(raw, "%Y-%m-%d")
            .ok()
            .filter(|_| raw.len() == 10)
            .ok_or_else(|| Problem::invalid_parameter(format!("`{name}` must be a date as YYYY-MM-DD, not `{raw}`")))
    }

    /// The required `from` and `to` dates, `from` not after `to`.
    pub fn date_range(&self) -> Result<(NaiveDate, NaiveDate), Problem> {
        let (from, to) = (self.date("from")?, self.date("to")?);
        if from > to {
            return Err(Problem::invalid_parameter(format!("`from` ({from}) is after `to` ({to})")));
        }
        Ok((from, to))
    }

    /// The position after which a page starts, from an opaque `cursor` this endpoint issued.
    pub fn cursor<K: DeserializeOwned>(&self, endpoint: &str) -> Result<Option<K>, Problem> {
        let Some(raw) = self.values.get("cursor") else { return Ok(None) };
        decode_cursor(endpoint, raw).map(Some).ok_or_else(|| {
            Problem::invalid_parameter("`cursor` is not a cursor this endpoint issued; start again without one")
        })
    }

    /// `consistency_token` and `wait_ms`.
    pub fn consistency(&self) -> Result<Consistency, Problem> {
        let token = match self.values.get("consistency_token") {
            None => None,
            Some(raw) => Some(
                ConsistencyToken::decode(raw)
                    .map_err(|_| Problem::invalid_parameter("`consistency_token` is not a token the gateway issued"))?,
            ),
        };
        let wait = match self.values.get("wait_ms") {
            None => DEFAULT_WAIT,
            Some(raw) => match raw.parse::<u64>() {
                Ok(ms) if ms <= MAX_WAIT_MS => Duration::from_millis(ms),
                _ => {
                    return Err(Problem::invalid_parameter(format!(
                        "`wait_ms` must be a whole number of milliseconds from 0 to {MAX_WAIT_MS}, not `{raw}`"
                    )))
                }
            },
        };
        Ok(Consistency { token, wait })
    }
}

/// What a query must wait for before answering.
#[derive(Debug, Clone)]
pub struct Consistency {
    pub token: Option<ConsistencyToken>,
    pub wait: Duration,
}

#[derive(Serialize, Deserialize)]
struct CursorWire<K> {
    /// The endpoint that issued it: a cursor from one list is refused by another.
    e: String,
    /// The last key of the previous page.
    k: K,
}

/// The opaque cursor that continues after `key`.
pub fn encode_cursor<K: Serialize>(endpoint: &str, key: K) -> String {
    let wire = CursorWire { e: endpoint.to_string(), k: key };
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&wire).expect("a cursor serializes"))
}

fn decode_cursor<K: DeserializeOwned>(endpoint: &str, raw: &str) -> Option<K> {
    let bytes = URL_SAFE_NO_PAD.decode(raw).ok()?;
    let wire: CursorWire<K> = serde_json::from_slice(&bytes).ok()?;
    (wire.e == endpoint).then_some(wire.k)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(query: &str) -> Params {
        Params::parse(Some(query), &["limit", "cursor", "from", "to", "owner", "consistency_token", "wait_ms"]).unwrap()
    }

    proptest::proptest! {
        /// Any key a page ends on comes back from its cursor, only on the endpoint that issued it.
        #[test]
        fn any_cursor_round_trips_on_its_endpoint_only(
            endpoint in "[a-z_]{1,12}",
            key in ("\\PC{0,24}", proptest::prelude::any::<i64>()),
        ) {
            let cursor = encode_cursor(&endpoint, &key);
            proptest::prop_assert_eq!(decode_cursor::<(String, i64)>(&endpoint, &cursor), Some(key));
            proptest::prop_assert_eq!(decode_cursor::<(String, i64)>(&format!("{endpoint}x"), &cursor), None);
        }

        /// Whatever a client sends as a cursor is refused or read, never a panic.
        #[test]
        fn no_string_makes_cursor_decoding_panic(raw in "\\PC{0,64}") {
            let _ = decode_cursor::<(String, i64)>("accounts", &raw);
        }
    }

    #[test]
    fn cursors_round_trip_and_belong_to_their_endpoint() {
        let cursor = encode_cursor("accounts", "acc-17");
        let parsed: Option<String> = params(&format!("cursor={cursor}")).cursor("accounts").unwrap();
        assert_eq!(parsed.as_deref(), Some("acc-17"));
        let elsewhere = params(&format!("cursor={cursor}")).cursor::<String>("projects").unwrap_err();
        assert_eq!(elsewhere.slug, "invalid-parameter");
    }

    #[test]
    fn limits_and_waits_are_bounded() {
        assert_eq!(params("").limit().unwrap(), DEFAULT_LIMIT);
        assert_eq!(params("limit=1000").limit().unwrap(), 1000);
        for bad in ["0", "1001", "-1", "ten", "99999999999999999999"] {
            let problem = params(&format!("limit={bad}")).limit().unwrap_err();
            assert_eq!(problem.detail, format!("`limit` must be a whole number from 1 to 1000, not `{bad}`"));
        }
        assert_eq!(params("wait_ms=0").consistency().unwrap().wait, Duration::ZERO);
        assert!(params("wait_ms=30001").consistency().is_err());
    }

    #[test]
    fn dates_are_strict() {
        assert_eq!(params("from=2026-02-28").date("from").unwrap(), NaiveDate::from_ymd_opt(2026, 2, 28).unwrap());
        for bad in ["2026-02-30", "2026-2-3", "20260203", "2026-02-03T00:00:00Z", "+2026-02-03"] {
            assert!(params(&format!("from={bad}")).date("from").is_err(), "{bad}");
        }
        assert_eq!(
            params("from=2026-03-02&to=2026-03-01").date_range().unwrap_err().detail,
            "`from` (2026-03-02) is after `to` (2026-03-01)"
        );
    }

    #[test]
    fn unknown_and_repeated_parameters_are_refused() {
        let accepted = ["limit"];
        assert_eq!(
            Params::parse(Some("limt=5"), &accepted).unwrap_err().detail,
            "unknown parameter `limt`; this endpoint takes limit"
        );
        assert_eq!(
            Params::parse(Some("limit=5&limit=6"), &accepted).unwrap_err().detail,
            "parameter `limit` is given more than once"
        );
    }
}
