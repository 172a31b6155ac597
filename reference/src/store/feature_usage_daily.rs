//! Rows of the `feature_usage_daily` projection, written as increments like `daily_activity`.

use chrono::NaiveDate;

use eventline_store::{Error, Store, StoreTx};

/// The tables this projection owns, in the order readers lock them (a rebuild moves them).
pub const TABLES: &[&str] = &["feature_usage_daily", "feature_usage_daily_users"];

/// One feature's counters on one day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureDay {
    pub day: NaiveDate,
    pub feature: String,
    pub uses: i64,
    pub unique_users: i32,
}

/// A (day, feature, user) triple: this user used this feature on this day.
pub type FeatureUser = (NaiveDate, String, String);

/// Which of these triples are already counted.
pub async fn known_feature_users(tx: &mut StoreTx, triples: &[FeatureUser]) -> Result<Vec<FeatureUser>, Error> {
    let days: Vec<NaiveDate> = triples.iter().map(|t| t.0).collect();
    let features: Vec<String> = triples.iter().map(|t| t.1.clone()).collect();
    let users: Vec<String> = triples.iter().map(|t| t.2.clone()).collect();
    let rows = sqlx::query!(
        "SELECT u.day, u.feature, u.user_id FROM feature_usage_daily_users u
         JOIN UNNEST($1::date[], $2::text[], $3::text[]) AS wanted(day, feature, user_id)
           ON wanted.day = u.day AND wanted.feature = u.feature AND wanted.user_id = u.user_id",
        &days,
        &features,
        &users
    )
    .fetch_all(tx.connection())
    .await?;
    Ok(rows.into_iter().map(|r| (r.day, r.feature, r.user_id)).collect())
}

/// Adds increments (`unique_users` holds the new users) and records the new triples.
pub async fn add_feature_usage(
    tx: &mut StoreTx,
    increments: &[FeatureDay],
    new_users: &[FeatureUser],
) -> Result<(), Error> {
    if !new_users.is_empty() {
        let days: Vec<NaiveDate> = new_users.iter().map(|t| t.0).collect();
        let features: Vec<String> = new_users.iter().map(|t| t.1.clone()).collect();
        let users: Vec<String> = new_users.iter().map(|t| t.2.clone()).collect();
        sqlx::query!(
            "INSERT INTO feature_usage_daily_users (day, feature, user_id)
             SELECT * FROM UNNEST($1::date[], $2::text[], $3::text[]) ON CONFLICT DO NOTHING",
            &days,
            &features,
            &users
        )
        .execute(tx.connection())
        .await?;
    }
    if increments.is_empty() {
        return Ok(());
    }
    let mut sorted = increments.to_vec();
    sorted.sort_by(|a, b| (a.day, &a.feature).cmp(&(b.day, &b.feature)));
    let days: Vec<NaiveDate> = sorted.iter().map(|i| i.day).collect();
    let features: Vec<String> = sorted.iter().map(|i| i.feature.clone()).collect();
    let uses: Vec<i64> = sorted.iter().map(|i| i.uses).collect();
    let users: Vec<i32> = sorted.iter().map(|i| i.unique_users).collect();
    sqlx::query!(
        "INSERT INTO feature_usage_daily (day, feature, uses, unique_users, updated_at)
         SELECT *, now() FROM UNNEST($1::date[], $2::text[], $3::int8[], $4::int4[])
         ON CONFLICT (day, feature) DO UPDATE SET
           uses = feature_usage_daily.uses + EXCLUDED.uses,
           unique_users = feature_usage_daily.unique_users + EXCLUDED.unique_users,
           updated_at = now()",
        &days,
        &features,
        &uses,
        &users
    )
    .execute(tx.connection())
    .await?;
    Ok(())
}

/// Every (day, feature) row, in that order.
pub async fn feature_usage_daily(store: &Store) -> Result<Vec<FeatureDay>, Error> {
    Ok(sqlx::query_as!(
        FeatureDay,
        "SELECT day, feature, uses, unique_users FROM feature_usage_daily ORDER BY day, feature"
    )
    .fetch_all(store.pool())
    .await?)
}

/// A feature's day as readers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureDayView {
    pub day: NaiveDate,
    pub feature: String,
    pub uses: i64,
    pub unique_users: i32,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

/// (day, feature) rows from `from` to `to`, optionally one feature, in order, after `after`.
pub async fn features_page(
    store: &Store,
    from: NaiveDate,
    to: NaiveDate,
    feature: Option<&str>,
    after: Option<(NaiveDate, String)>,
    limit: i64,
) -> Result<Vec<FeatureDayView>, Error> {
    let (after_day, after_feature) = after.map_or((None, None), |(d, f)| (Some(d), Some(f)));
    Ok(sqlx::query_as!(
        FeatureDayView,
        "SELECT day, feature, uses, unique_users, updated_at FROM feature_usage_daily
         WHERE day BETWEEN $1 AND $2 AND ($3::text IS NULL OR feature = $3)
           AND ($4::date IS NULL OR (day, feature) > ($4, $5::text))
         ORDER BY day, feature LIMIT $6",
        from,
        to,
        feature,
        after_day,
        after_feature,
        limit
    )
    .fetch_all(store.pool())
    .await?)
}
