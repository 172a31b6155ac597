//! Every table a projection declares, readable over HTTP without code of its own: a page of rows
//! by equality filters on any of its columns in primary-key order (`GET /v1/tables/<table>`),
//! one row by its primary key (`GET /v1/tables/<table>/<key>`), both with the consistency token
//! and freshness headers of every query endpoint, and each described in `/openapi.json` from the
//! table's columns as the database has them.

use eventline_auth::Caller;
use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use eventline_http::Problem;
use eventline_store::availability::wait_out_unavailable;
use eventline_store::tables::TableShape;
use serde_json::Value;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItem};
use utoipa::openapi::schema::{KnownFormat, SchemaFormat, SchemaType};
use utoipa::openapi::{
    ArrayBuilder, ContentBuilder, ObjectBuilder, OpenApi, Ref, Required, ResponseBuilder, Schema, Type,
};
use utoipa::IntoParams;

use crate::params::Params;
use crate::query::{accepted_with, page, path_parameter, Answer, ConsistencyParams, PageParams, Refused, PAGE};
use crate::{store_failure, Api, Release};

/// A table served, with the projection whose positions its answers wait for.
struct Served {
    projection: String,
    shape: TableShape,
}

#[derive(Clone)]
struct Tables {
    api: Api,
    tables: Arc<HashMap<String, Served>>,
}

/// Reads the shape of every table the served projections declare; a table not created yet (its
/// projection not migrated) is left out with a warning. A database that is briefly unavailable
/// is waited out, so a blip at start-up does not leave a table unserved.
pub(crate) async fn load(api: &Api) -> Vec<(String, TableShape)> {
    let mut shapes = Vec::new();
    for (projection, table) in api.declared_tables() {
        let personal = api.personal_columns(&projection, &table);
        let reading =
            wait_out_unavailable("reading a table's shape", &api.0.shutdown, || api.store().table_shape(&table));
        match reading.await {
            // Stopping: nothing will be served.
            Ok(None) => break,
            // Served, its personal columns could not be withheld: fail closed.
            Ok(Some(Some(shape))) if personal.iter().any(|c| shape.column(c).is_none()) => tracing::error!(
                projection,
                table,
                ?personal,
                "A personal column the projection declares is not in the table; the table is not served."
            ),
            Ok(Some(Some(shape))) if !shape.primary_key.is_empty() => shapes.push((projection, shape)),
            Ok(Some(Some(_))) => tracing::warn!(projection, table, "Table has no primary key; not served over HTTP."),
            Ok(Some(None)) => {
                tracing::warn!(projection, table, "Table does not exist (run `eventline migrate`); not served.")
            }
            Err(error) => tracing::warn!(projection, table, %error, "Cannot read the table's shape; not served."),
        }
    }
    shapes
}

/// The routes serving `shapes`, and their OpenAPI paths added to `openapi`.
pub(crate) fn routes(api: Api, shapes: Vec<(String, TableShape)>, openapi: &mut OpenApi) -> Router {
    for (projection, shape) in &shapes {
        describe(shape, &api.personal_columns(projection, &shape.name), openapi);
    }
    let tables = shapes.into_iter().map(|(projection, shape)| (shape.name.clone(), Served { projection, shape }));
    Router::new()
        .route("/v1/tables/{table}", get(list))
        .route("/v1/tables/{table}/{*key}", get(one))
        .with_state(Tables { api, tables: Arc::new(tables.collect()) })
}

impl Tables {
    fn served(&self, table: &str) -> Result<&Served, Problem> {
        self.tables.get(table).ok_or_else(|| Problem::not_found(format!("no projection serves a table `{table}`")))
    }
}

/// A row's primary key as text, in key order: what a cursor carries.
fn key_of(shape: &TableShape, row: &Value) -> Vec<String> {
    shape
        .primary_key
        .iter()
        .map(|column| match &row[column] {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        })
        .collect()
}

/// `rows` as `caller` may see them: personal columns in clear once the read is audited, or null.
async fn release(api: &Api, caller: &Caller, served: &Served, mut rows: Vec<Value>) -> Result<Vec<Value>, Refused> {
    let keys: Vec<Value> = rows
        .iter()
        .map(|row| match key_of(&served.shape, row).as_slice() {
            [one] => Value::from(one.as_str()),
            parts => Value::from(parts.to_vec()),
        })
        .collect();
    match api.release_personal(caller, &served.projection, &served.shape.name, &keys).await? {
        Release::Clear(columns) => {
            for row in &mut rows {
                for column in &columns {
                    row[column] = api.open_personal(row[column].take()).await?;
                }
            }
        }
        Release::Withheld(columns) => {
            for row in &mut rows {
                for column in &columns {
                    row[column] = Value::Null;
                }
            }
        }
    }
    Ok(rows)
}

/// A value that does not fit its column's type is the caller's mistake, not the server's.
fn read_failure(error: eventline_store::Error) -> axum::response::Response {
    if error.is_data_error() {
        return Problem::invalid_parameter(format!(
            "a value does not fit its column's type: {}",
            error.database_message()
        ))
        .into_response();
    }
    store_failure(error)
}

async fn list(
    caller: Caller,
    State(tables): State<Tables>,
    table: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Answer {
    let table = path_parameter(table)?;
    let served = tables.served(&table)?;
    caller.require_read(&served.projection)?;
    let columns: Vec<&str> = served.shape.columns.iter().map(|c| c.name.as_str()).collect();
    let mut names = columns.clone();
    names.extend(PAGE);
    let params = Params::parse(query.as_deref(), &accepted_with(&names))?;
    let personal = tables.api.personal_columns(&served.projection, &table);
    let mut filters = Vec::new();
    // Personal columns holding sealed values: found through the blind indexes, then compared
    // again once opened (column, value asked for).
    let (mut sealed_for, mut compare) = (Vec::new(), Vec::new());
    for column in &columns {
        if let Some(value) = params.text(column)? {
            if personal.iter().any(|p| p == column) {
                // Which rows a filter finds tells what a personal column holds.
                caller.require_personal(&format!("filtering on the personal column `{column}`"))?;
                if let Some(subjects) = tables.api.subjects_in_blind_indexes(&Value::from(value)).await? {
                    sealed_for.push((column.to_string(), subjects));
                    compare.push((column.to_string(), value.to_string()));
                    continue;
                }
            }
            filters.push((column.to_string(), as_postgres_reads(&served.shape, column, value)));
        }
    }
    let limit = params.limit()?;
    let endpoint = format!("tables/{table}");
    let after: Option<Vec<String>> = params.cursor(&endpoint)?;
    if after.as_ref().is_some_and(|key| key.len() != served.shape.primary_key.len()) {
        return Err(Problem::invalid_parameter(
            "`cursor` is not a cursor this endpoint issued; start again without one",
        )
        .into());
    }
    let freshness = tables.api.freshness(&caller, &served.projection, &params.consistency()?).await?;
    let rows = match without_nul(&filters) {
        // Still asked, for no row, so PostgreSQL refuses the values that do not fit their column.
        Some(checked) => {
            tables.api.store().table_rows(&served.shape, &checked, &[], None, 0).await.map_err(read_failure)?;
            Vec::new()
        }
        None => tables
            .api
            .store()
            .table_rows(&served.shape, &filters, &sealed_for, after.as_deref(), limit + 1)
            .await
            .map_err(read_failure)?,
    };
    let (rows, next_cursor) = page(rows, limit, &endpoint, |row| key_of(&served.shape, row));
    let mut rows = release(&tables.api, &caller, served, rows).await?;
    // An index entry outlives a change of value: each opened value is compared again.
    rows.retain(|row| compare.iter().all(|(column, value)| as_text(&row[column]).as_deref() == Some(value.as_str())));
    let body = serde_json::json!({ "items": rows, "next_cursor": next_cursor });
    Ok((freshness.headers(), Json(body)).into_response())
}

async fn one(
    caller: Caller,
    State(tables): State<Tables>,
    path: Result<Path<(String, String)>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Answer {
    let (table, key) = path.map_err(|_| Problem::invalid_parameter("the path is not valid UTF-8 once decoded"))?.0;
    let served = tables.served(&table)?;
    caller.require_read(&served.projection)?;
    let params = Params::parse(query.as_deref(), &accepted_with(&[]))?;
    let parts: Vec<&str> = key.split('/').collect();
    let primary_key = &served.shape.primary_key;
    let personal = tables.api.personal_columns(&served.projection, &table);
    if let Some(column) = primary_key.iter().find(|c| personal.contains(c)) {
        caller.require_personal(&format!("looking rows up by the personal column `{column}`"))?;
    }
    if parts.len() != primary_key.len() {
        return Err(Problem::invalid_parameter(format!(
            "`{table}` is looked up by {} key part(s) ({}), not {}",
            primary_key.len(),
            primary_key.join(", "),
            parts.len()
        ))
        .into());
    }
    let filters: Vec<(String, String)> = primary_key
        .iter()
        .zip(&parts)
        .map(|(column, value)| (column.clone(), as_postgres_reads(&served.shape, column, value)))
        .collect();
    let freshness = tables.api.freshness(&caller, &served.projection, &params.consistency()?).await?;
    let rows = match without_nul(&filters) {
        Some(checked) => {
            tables.api.store().table_rows(&served.shape, &checked, &[], None, 0).await.map_err(read_failure)?;
            Vec::new()
        }
        None => tables.api.store().table_rows(&served.shape, &filters, &[], None, 1).await.map_err(read_failure)?,
    };
    let rows = release(&tables.api, &caller, served, rows).await?;
    let row = rows.into_iter().next().ok_or_else(|| Problem::not_found(format!("no row `{key}` in `{table}`")))?;
    Ok((freshness.headers(), Json(row)).into_response())
}

/// A filter value as PostgreSQL reads it for its column. Every RFC 3339 time is taken: PostgreSQL
/// refuses offsets beyond ±15:59 and the year 0, so a time is handed over in UTC, its year before
/// 1 written as BC. Other values go as they came.
fn as_postgres_reads(shape: &TableShape, column: &str, value: &str) -> String {
    let with_time_zone = shape.column(column).is_some_and(|c| c.data_type == "timestamp with time zone");
    let Some(time) = with_time_zone.then(|| chrono::DateTime::parse_from_rfc3339(value).ok()).flatten() else {
        return value.to_string();
    };
    let utc = time.with_timezone(&chrono::Utc);
    let rest = utc.format("-%m-%dT%H:%M:%S%.f+00:00");
    match chrono::Datelike::year(&utc) {
        year if year >= 1 => format!("{year:04}{rest}"),
        year => format!("{:04}{rest} BC", 1 - year),
    }
}

/// When a filter holds a NUL character, which no PostgreSQL value can hold (it refuses one in any
/// text), the filters match no row; they are returned with each NUL replaced by U+FFFD, a value
/// that still fails exactly the types the original fails, so they can be checked for nothing.
fn without_nul(filters: &[(String, String)]) -> Option<Vec<(String, String)>> {
    filters
        .iter()
        .any(|(_, value)| value.contains('\0'))
        .then(|| filters.iter().map(|(column, value)| (column.clone(), value.replace('\0', "\u{FFFD}"))).collect())
}

/// The largest magnitude a `numeric(precision, scale)` column stores once PostgreSQL rounds to
/// its scale; unconstrained `numeric` has none worth saying.
fn numeric_bound(data_type: &str) -> Option<f64> {
    let (precision, scale) = data_type.strip_prefix("numeric(")?.strip_suffix(')')?.split_once(',')?;
    let (precision, scale): (i32, i32) = (precision.trim().parse().ok()?, scale.trim().parse().ok()?);
    Some(10f64.powi(precision - scale) - 0.5 * 10f64.powi(-scale))
}

/// The JSON a column's values take in `to_jsonb`.
fn json_type(data_type: &str) -> Type {
    match data_type {
        "smallint" | "integer" | "bigint" => Type::Integer,
        "real" | "double precision" => Type::Number,
        t if t.starts_with("numeric") => Type::Number,
        "boolean" => Type::Boolean,
        "json" | "jsonb" => Type::Object,
        t if t.ends_with("[]") => Type::Array,
        _ => Type::String,
    }
}

/// The format of a column's JSON string, where JSON Schema names one.
fn string_format(data_type: &str) -> Option<SchemaFormat> {
    match data_type {
        "date" => Some(SchemaFormat::KnownFormat(KnownFormat::Date)),
        t if t.starts_with("timestamp") => Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)),
        "uuid" => Some(SchemaFormat::Custom("uuid".into())),
        _ => None,
    }
}

/// What a filter or key part on a column accepts: exactly the values PostgreSQL casts to the
/// column's type (an integer within its range, a date, a non-empty text), so a value the schema
/// allows is never refused as not fitting the column.
fn filter_schema(data_type: &str) -> ObjectBuilder {
    let range =
        |min: i64, max: i64| ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(min)).maximum(Some(max));
    match data_type {
        "smallint" => range(i16::MIN.into(), i16::MAX.into()),
        "integer" => range(i32::MIN.into(), i32::MAX.into()),
        "bigint" => range(i64::MIN, i64::MAX),
        "real" => ObjectBuilder::new().schema_type(Type::Number).minimum(Some(-3.4e38)).maximum(Some(3.4e38)),
        "double precision" => ObjectBuilder::new().schema_type(Type::Number),
        t if t.starts_with("numeric") => {
            let bound = numeric_bound(t);
            ObjectBuilder::new().schema_type(Type::Number).exclusive_minimum(bound.map(|b| -b)).exclusive_maximum(bound)
        }
        "boolean" => ObjectBuilder::new().schema_type(Type::Boolean),
        t => match string_format(t) {
            Some(format) => ObjectBuilder::new().schema_type(Type::String).format(Some(format)),
            // Text: an empty filter is refused as a likely mistake.
            None => ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(crate::params::MAX_TEXT)),
        },
    }
}

fn row_schema(shape: &TableShape, personal: &[String]) -> Schema {
    let mut row = ObjectBuilder::new().description(Some(format!("A row of `{}`", shape.name)));
    for column in &shape.columns {
        let json = json_type(&column.data_type);
        let format = if json == Type::String { string_format(&column.data_type) } else { None };
        let is_personal = personal.contains(&column.name);
        let description = if is_personal {
            format!(
                "{} ({}): personal data, null unless the caller holds the scope `personal`",
                column.name, column.data_type
            )
        } else {
            format!("{} ({})", column.name, column.data_type)
        };
        let nullable = column.nullable || is_personal;
        let property = ObjectBuilder::new()
            .schema_type(if nullable { SchemaType::from_iter([json, Type::Null]) } else { json.into() })
            .format(format)
            .description(Some(description));
        row = row.property(&column.name, property);
        if !column.nullable {
            row = row.required(&column.name);
        }
    }
    Schema::Object(row.build())
}

fn query_parameter(name: &str, description: String, schema: ObjectBuilder) -> utoipa::openapi::path::Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Query)
        .required(Required::False)
        .description(Some(description))
        .schema(Some(schema))
        .build()
}

fn problem_response(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/problem+json",
            ContentBuilder::new().schema(Some(Ref::from_schema_name("ProblemDocument"))).build(),
        )
        .build()
}

/// The consistency parameters every query endpoint takes, described once (`ConsistencyParams`).
fn consistency_parameters() -> Vec<utoipa::openapi::path::Parameter> {
    ConsistencyParams::into_params(|| None)
}

/// Adds the table's two paths to `openapi`.
fn describe(shape: &TableShape, personal: &[String], openapi: &mut OpenApi) {
    let table = &shape.name;
    let mut parameters: Vec<_> = shape
        .columns
        .iter()
        .map(|c| {
            query_parameter(&c.name, format!("Only rows whose `{}` equals this", c.name), filter_schema(&c.data_type))
        })
        .collect();
    parameters.extend(PageParams::into_params(|| None));
    parameters.extend(consistency_parameters());
    let page = ObjectBuilder::new()
        .property("items", ArrayBuilder::new().items(utoipa::openapi::RefOr::T(row_schema(shape, personal))))
        .required("items")
        .property(
            "next_cursor",
            ObjectBuilder::new()
                .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
                .description(Some("Pass as `cursor` for the next page; null on the last page")),
        );
    let list = OperationBuilder::new()
        .tag("tables")
        .operation_id(Some(format!("list_{table}")))
        .summary(Some(format!("Rows of `{table}` in primary-key order ({})", shape.primary_key.join(", "))))
        .parameters(Some(parameters))
        .response(
            "200",
            ResponseBuilder::new()
                .description("A page of rows")
                .content("application/json", ContentBuilder::new().schema(Some(page)).build()),
        )
        .response("400", problem_response("A bad parameter, or a value that does not fit its column"))
        .response("425", problem_response("The projection has not reached the consistency token within wait_ms"));
    openapi.paths.paths.insert(format!("/v1/tables/{table}"), PathItem::new(HttpMethod::Get, list));

    let key_path: Vec<String> = shape.primary_key.iter().map(|c| format!("{{{c}}}")).collect();
    let mut key_parameters: Vec<_> = shape
        .primary_key
        .iter()
        .map(|c| {
            let data_type = shape.column(c).map_or("text", |column| column.data_type.as_str());
            ParameterBuilder::new()
                .name(c)
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .schema(Some(filter_schema(data_type)))
                .build()
        })
        .collect();
    key_parameters.extend(consistency_parameters());
    let one = OperationBuilder::new()
        .tag("tables")
        .operation_id(Some(format!("get_{table}")))
        .summary(Some(format!("One row of `{table}` by its primary key")))
        .parameters(Some(key_parameters))
        .response(
            "200",
            ResponseBuilder::new()
                .description("The row")
                .content("application/json", ContentBuilder::new().schema(Some(row_schema(shape, personal))).build()),
        )
        .response("400", problem_response("A bad parameter, or a value that does not fit its column"))
        .response("404", problem_response("No such row (yet)"))
        .response("425", problem_response("The projection has not reached the consistency token within wait_ms"));
    openapi
        .paths
        .paths
        .insert(format!("/v1/tables/{table}/{}", key_path.join("/")), PathItem::new(HttpMethod::Get, one));
}

/// A column's value as a filter on it is written: text as it is, anything else as JSON.
fn as_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(text) => Some(text.clone()),
        other => Some(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eventline_store::tables::Column;

    #[test]
    fn times_reach_postgresql_in_utc_whatever_offset_rfc_3339_allowed() {
        let column =
            |name: &str, data_type: &str| Column { name: name.into(), data_type: data_type.into(), nullable: false };
        let shape = TableShape {
            name: "t".into(),
            columns: vec![column("at", "timestamp with time zone"), column("local", "timestamp without time zone")],
            primary_key: vec!["at".into()],
        };
        assert_eq!(as_postgres_reads(&shape, "at", "1539-10-27T14:01:07.1+23:51"), "1539-10-26T14:10:07.100+00:00");
        assert_eq!(as_postgres_reads(&shape, "at", "0001-01-01T03:00:00+05:00"), "0001-12-31T22:00:00+00:00 BC");
        assert_eq!(as_postgres_reads(&shape, "at", "2026-12-04T06:00:00Z"), "2026-12-04T06:00:00+00:00");
        // Not a time, or a column without a time zone (where PostgreSQL ignores the offset): as given.
        assert_eq!(as_postgres_reads(&shape, "at", "yesterday"), "yesterday");
        assert_eq!(as_postgres_reads(&shape, "local", "2026-12-04T06:00:00+05:00"), "2026-12-04T06:00:00+05:00");
    }

    #[test]
    fn a_numeric_columns_bound_is_what_rounds_within_its_precision() {
        assert_eq!(numeric_bound("numeric(5,2)"), Some(999.995));
        assert_eq!(numeric_bound("numeric(3,0)"), Some(999.5));
        assert_eq!(numeric_bound("numeric"), None);
    }
}
