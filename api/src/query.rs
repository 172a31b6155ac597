//! What every query endpoint shares, for the API's own routes and an application's: refusals,
//! the documented consistency and paging parameters, and keyset pages.

use axum::extract::rejection::PathRejection;
use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use chrono::NaiveDate;
use eventline_http::Problem;
use serde::Serialize;
use utoipa::IntoParams;

use crate::params::encode_cursor;

/// A refused request: a problem, or a 425 with freshness headers.
pub struct Refused(Response);

impl From<Problem> for Refused {
    fn from(problem: Problem) -> Self {
        Self(problem.into_response())
    }
}

impl From<Response> for Refused {
    fn from(response: Response) -> Self {
        Self(response)
    }
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        self.0
    }
}

pub type Answer = Result<Response, Refused>;

/// Read-your-writes parameters, accepted by every query endpoint.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ConsistencyParams {
    /// The token from the gateway's 202 answer: the query waits until the projection has
    /// applied every position in it (positions on topics the projection does not read are
    /// ignored), then answers; 425 `not-yet-consistent` if `wait_ms` runs out first.
    #[param(min_length = 1, pattern = "^[A-Za-z0-9_-]+$")]
    consistency_token: Option<String>,
    /// Longest wait for the token, 0 to 30000 milliseconds; default 5000.
    #[param(maximum = 30000, minimum = 0)]
    wait_ms: Option<u64>,
}

/// Keyset pagination.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct PageParams {
    /// Page size, 1 to 1000; default 100.
    #[param(maximum = 1000, minimum = 1)]
    limit: Option<i64>,
    /// `next_cursor` of the previous page; opaque.
    #[param(min_length = 1, pattern = "^[A-Za-z0-9_-]+$")]
    cursor: Option<String>,
}

/// A date range, both ends included.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct DateRangeParams {
    /// First day (UTC), YYYY-MM-DD.
    from: NaiveDate,
    /// Last day (UTC), YYYY-MM-DD; not before `from`.
    to: NaiveDate,
}

pub const CONSISTENCY: [&str; 2] = ["consistency_token", "wait_ms"];
pub const PAGE: [&str; 2] = ["limit", "cursor"];

pub fn accepted(extra: &[&'static str]) -> Vec<&'static str> {
    accepted_with(extra)
}

/// The consistency parameters and `extra`.
pub fn accepted_with<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    CONSISTENCY.iter().copied().chain(extra.iter().copied()).collect()
}

pub fn path_parameter(path: Result<Path<String>, PathRejection>) -> Result<String, Problem> {
    path.map(|Path(id)| id).map_err(|_| Problem::invalid_parameter("the path is not valid UTF-8 once decoded"))
}

/// One page of a list, in key order.
pub fn page<T, K: Serialize>(
    mut items: Vec<T>,
    limit: i64,
    endpoint: &str,
    key: impl Fn(&T) -> K,
) -> (Vec<T>, Option<String>) {
    // The store was asked for one more row than the page holds: its presence means there is more.
    let more = items.len() as i64 > limit;
    items.truncate(limit as usize);
    let next = if more { items.last().map(|last| encode_cursor(endpoint, key(last))) } else { None };
    (items, next)
}
