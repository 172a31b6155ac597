//! Reading any projection's declared tables for the query API: their shape from the catalog,
//! and pages of rows as JSON by equality filters in primary-key order (keyset pagination).
//! Names come from the catalog and values are bound as text cast to the column's own type, so
//! a request names columns but never writes SQL.

use sqlx::Row;

use crate::{quoted, Error, Store};

/// A column as the catalog describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    /// PostgreSQL's name for its type (`bigint`, `text`, `timestamp with time zone`, ...).
    pub data_type: String,
    pub nullable: bool,
}

/// A table's columns and its primary key (in key order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableShape {
    pub name: String,
    pub columns: Vec<Column>,
    pub primary_key: Vec<String>,
}

impl TableShape {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
}

impl Store {
    /// The shape of `public.<table>`; `None` when there is no such table.
    pub async fn table_shape(&self, table: &str) -> Result<Option<TableShape>, Error> {
        let rows = sqlx::query(
            "SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS data_type, NOT a.attnotnull AS nullable,
                    array_position(i.indkey::int2[], a.attnum) AS key_position
             FROM pg_attribute a
             JOIN pg_class c ON c.oid = a.attrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary
             WHERE n.nspname = 'public' AND c.relname = $1 AND a.attnum > 0 AND NOT a.attisdropped
             ORDER BY a.attnum",
        )
        .bind(table)
        .fetch_all(&self.pool)
        .await?;
        if rows.is_empty() {
            return Ok(None);
        }
        let mut keyed: Vec<(i32, String)> = Vec::new();
        let columns = rows
            .iter()
            .map(|row| {
                let name: String = row.get("name");
                if let Some(position) = row.get::<Option<i32>, _>("key_position") {
                    keyed.push((position, name.clone()));
                }
                Column { name, data_type: row.get("data_type"), nullable: row.get("nullable") }
            })
            .collect();
        keyed.sort();
        Ok(Some(TableShape {
            name: table.to_string(),
            columns,
            primary_key: keyed.into_iter().map(|(_, name)| name).collect(),
        }))
    }

    /// Up to `limit` rows of `shape`'s table as JSON objects, in primary-key order: those whose
    /// columns equal `filters` (column, value as text) and whose columns in `sealed_for` hold a
    /// sealed value naming one of the subjects given, after the key `after` (values as text, in
    /// key order) when given. A value that is not valid for its column's type is a
    /// [`Error::Database`] with SQLSTATE class 22.
    pub async fn table_rows(
        &self,
        shape: &TableShape,
        filters: &[(String, String)],
        sealed_for: &[(String, Vec<String>)],
        after: Option<&[String]>,
        limit: i64,
    ) -> Result<Vec<serde_json::Value>, Error> {
        let cast = |column: &str, n: usize| {
            let data_type = shape.column(column).map_or("text", |c| c.data_type.as_str());
            format!("CAST(${n} AS {data_type})")
        };
        let mut conditions: Vec<String> = Vec::new();
        let mut values: Vec<Bound<'_>> = Vec::new();
        for (column, value) in filters {
            values.push(Bound::Text(value));
            conditions.push(format!("t.{} = {}", quoted(column), cast(column, values.len())));
        }
        for (column, subjects) in sealed_for {
            values.push(Bound::Texts(subjects));
            conditions.push(format!(
                "eventline_sealed_subject(t.{}::text) = ANY(${}::text[])",
                quoted(column),
                values.len()
            ));
        }
        if let Some(after) = after {
            let columns: Vec<String> = shape.primary_key.iter().map(|c| format!("t.{}", quoted(c))).collect();
            let mut placeholders = Vec::new();
            for (column, value) in shape.primary_key.iter().zip(after) {
                values.push(Bound::Text(value));
                placeholders.push(cast(column, values.len()));
            }
            conditions.push(format!("({}) > ({})", columns.join(", "), placeholders.join(", ")));
        }
        let order: Vec<String> = shape.primary_key.iter().map(|c| format!("t.{}", quoted(c))).collect();
        let sql = format!(
            "SELECT to_jsonb(t) AS row FROM public.{} t {} ORDER BY {} LIMIT {limit}",
            quoted(&shape.name),
            if conditions.is_empty() { String::new() } else { format!("WHERE {}", conditions.join(" AND ")) },
            order.join(", ")
        );
        let mut query = sqlx::query(&sql);
        for value in values {
            query = match value {
                Bound::Text(text) => query.bind(text),
                Bound::Texts(texts) => query.bind(texts),
            };
        }
        let rows = query.fetch_all(&self.pool).await?;
        Ok(rows.iter().map(|row| row.get("row")).collect())
    }
}

/// A value bound to a placeholder of [`Store::table_rows`].
enum Bound<'a> {
    Text(&'a str),
    Texts(&'a [String]),
}
