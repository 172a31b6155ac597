//! What an erasure changes besides the key store: a data subject's id in the projections' rows
//! about it (the columns a projection declares as holding one) is replaced by a placeholder of
//! its own, in every generation, and again in a rebuilt generation before it goes live; dead
//! letters holding its personal data in clear are found for scrubbing. Once a subject is erased,
//! a trigger on each table with subject columns keeps erased ids out of every row written later
//! (a replay in place, a late event, a rebuild), and the table's personal columns holding a value
//! in clear out of rows about an erased subject (written before sealing was turned on, or read
//! again from Kafka records of that time).

use sqlx::Row;

use crate::generations::Frozen;
use crate::{quoted, Error, Store};

impl Store {
    /// The placeholder that replaces `subject`'s id in rows about it: made on its first erasure,
    /// the same ever after (so a re-run, or a rebuild, puts the same one in).
    pub async fn erased_placeholder(&self, subject: &str) -> Result<String, Error> {
        Ok(sqlx::query_scalar!(
            "INSERT INTO eventline_erased_subjects (subject, placeholder)
             VALUES ($1, 'erased-' || replace(gen_random_uuid()::text, '-', ''))
             ON CONFLICT (subject) DO UPDATE SET subject = excluded.subject
             RETURNING placeholder",
            subject
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// Replaces `subject`'s id with `placeholder` in `column` (`table.column`) of the tables in
    /// `schema`: the rows changed, or `None` when the table is not in that schema.
    pub async fn replace_subject_id(
        &self,
        schema: &str,
        column: &str,
        subject: &str,
        placeholder: &str,
    ) -> Result<Option<u64>, Error> {
        let Some(table) = table_in(&self.pool, schema, column).await? else { return Ok(None) };
        let column = quoted(column_name(column));
        let changed = sqlx::query(&format!("UPDATE {table} SET {column} = $2 WHERE {column} = $1"))
            .bind(subject)
            .bind(placeholder)
            .execute(&self.pool)
            .await?;
        Ok(Some(changed.rows_affected()))
    }

    /// The dead letters in `schema` whose payload holds `text` (a subject's id): (id, payload,
    /// the record's headers); none when that schema has no dead letters table.
    pub async fn dead_letters_holding(
        &self,
        schema: &str,
        text: &str,
    ) -> Result<Vec<(i64, Vec<u8>, serde_json::Value)>, Error> {
        let Some(table) = table_in(&self.pool, schema, "eventline_dead_letters.payload").await? else {
            return Ok(Vec::new());
        };
        let rows = sqlx::query(&format!(
            "SELECT id, payload, headers FROM {table} WHERE payload IS NOT NULL AND position(convert_to($1, 'UTF8') IN payload) > 0 ORDER BY id"
        ))
        .bind(text)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(|row| (row.get("id"), row.get("payload"), row.get("headers"))).collect())
    }

    /// Replaces dead letters' payloads (by id) in `schema`: how many.
    pub async fn replace_dead_letter_payloads(&self, schema: &str, payloads: &[(i64, Vec<u8>)]) -> Result<u64, Error> {
        let Some(table) = table_in(&self.pool, schema, "eventline_dead_letters.payload").await? else { return Ok(0) };
        let (ids, payloads): (Vec<i64>, Vec<Vec<u8>>) = payloads.iter().cloned().unzip();
        let changed = sqlx::query(&format!(
            "UPDATE {table} AS d SET payload = r.payload FROM unnest($1::bigint[], $2::bytea[]) AS r(id, payload) WHERE d.id = r.id"
        ))
        .bind(&ids)
        .bind(&payloads)
        .execute(&self.pool)
        .await?;
        Ok(changed.rows_affected())
    }

    /// Keeps erased subjects' ids out of `subject_columns` (`table.column`) of the tables in
    /// `schema` for every row written from now on: a trigger replaces each with its subject's
    /// placeholder, and in a row about an erased subject sets the `personal_columns` of the same
    /// table that hold a value in clear (not sealed) to NULL. Idempotent; a table not in that
    /// schema is passed over.
    pub async fn guard_subject_columns_in(
        &self,
        schema: &str,
        subject_columns: &[String],
        personal_columns: &[String],
    ) -> Result<(), Error> {
        let mut tables: Vec<(&str, Vec<String>)> = Vec::new();
        for column in subject_columns {
            let (table, name) = column.split_once('.').unwrap_or((column, ""));
            match tables.iter_mut().find(|(t, _)| *t == table) {
                Some((_, names)) => names.push(name.to_string()),
                None => tables.push((table, vec![name.to_string()])),
            }
        }
        for column in personal_columns {
            let (table, name) = column.split_once('.').unwrap_or((column, ""));
            // Only where a subject column says whom the row is about.
            if let Some((_, names)) = tables.iter_mut().find(|(t, _)| *t == table) {
                names.push(format!("personal:{name}"));
            }
        }
        for (table, names) in tables {
            let Some(qualified) = table_in(&self.pool, schema, table).await? else { continue };
            let arguments: Vec<String> = names.iter().map(|name| format!("'{}'", name.replace('\'', "''"))).collect();
            sqlx::query(&format!(
                "CREATE OR REPLACE TRIGGER eventline_erased_subjects BEFORE INSERT OR UPDATE ON {qualified}
                 FOR EACH ROW EXECUTE FUNCTION public.eventline_erased_subject_guard({})",
                arguments.join(", ")
            ))
            .execute(&self.pool)
            .await?;
        }
        Ok(())
    }

    /// Like [`Store::guard_subject_columns_in`], in the tables this store writes (a rebuild's
    /// generation, or the live tables), once any subject was erased: before that, no table pays
    /// for the trigger.
    pub async fn guard_subject_columns(
        &self,
        subject_columns: &[String],
        personal_columns: &[String],
    ) -> Result<(), Error> {
        if subject_columns.is_empty() {
            return Ok(());
        }
        let any_erased =
            sqlx::query_scalar!(r#"SELECT EXISTS (SELECT 1 FROM public.eventline_erased_subjects) AS "any!""#)
                .fetch_one(&self.pool)
                .await?;
        if !any_erased {
            return Ok(());
        }
        let schema = self.rebuilding.as_deref().unwrap_or("public").to_string();
        self.guard_subject_columns_in(&schema, subject_columns, personal_columns).await
    }
}

impl Frozen {
    /// Replaces every erased subject's id in `columns` (`table.column`) of the tables in
    /// `schema` with its placeholder, before that generation goes live: a rebuild replays the
    /// log, where the ids still are. The rows changed.
    pub async fn replace_erased_subject_ids(&mut self, schema: &str, columns: &[String]) -> Result<u64, Error> {
        let mut changed = 0;
        for column in columns {
            let Some(table) = table_in(self.executor(), schema, column).await? else { continue };
            let name = quoted(column_name(column));
            changed += sqlx::query(&format!(
                "UPDATE {table} AS t SET {name} = e.placeholder FROM public.eventline_erased_subjects AS e
                 WHERE t.{name} = e.subject"
            ))
            .execute(self.executor())
            .await?
            .rows_affected();
        }
        Ok(changed)
    }
}

/// `schema`.`table` of `column` (`table.column`), quoted, if the table is there.
async fn table_in(executor: impl sqlx::PgExecutor<'_>, schema: &str, column: &str) -> Result<Option<String>, Error> {
    let (table, _) = column.split_once('.').unwrap_or((column, ""));
    let qualified = format!("{}.{}", quoted(schema), quoted(table));
    let exists: bool =
        sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL").bind(&qualified).fetch_one(executor).await?;
    Ok(exists.then_some(qualified))
}

fn column_name(column: &str) -> &str {
    column.split_once('.').map_or(column, |(_, name)| name)
}
