//! Rows of the `daily_activity` projection. Counters are written as increments, so workers
//! owning different users' partitions can add to the same day concurrently.

use chrono::NaiveDate;

use eventline_store::{Error, Store, StoreTx};

/// The tables this projection owns, in the order readers lock them (a rebuild moves them).
pub const TABLES: &[&str] = &["daily_activity", "daily_activity_users"];

/// One day's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayActivity {
    pub day: NaiveDate,
    pub active_users: i32,
    pub page_views: i64,
}

/// What a batch adds to one day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayIncrement {
    pub day: NaiveDate,
    pub new_active_users: i32,
    pub page_views: i64,
}

/// Which of these (day, user) pairs are already counted as active.
pub async fn known_active_users(
    tx: &mut StoreTx,
    pairs: &[(NaiveDate, String)],
) -> Result<Vec<(NaiveDate, String)>, Error> {
    let (days, users): (Vec<NaiveDate>, Vec<String>) = pairs.iter().cloned().unzip();
    let rows = sqlx::query!(
        "SELECT u.day, u.user_id FROM daily_activity_users u
         JOIN UNNEST($1::date[], $2::text[]) AS wanted(day, user_id)
           ON wanted.day = u.day AND wanted.user_id = u.user_id",
        &days,
        &users
    )
    .fetch_all(tx.connection())
    .await?;
    Ok(rows.into_iter().map(|r| (r.day, r.user_id)).collect())
}

/// Adds the increments (day rows in day order, so concurrent writers lock alike) and records
/// the newly active users.
pub async fn add_daily_activity(
    tx: &mut StoreTx,
    increments: &[DayIncrement],
    new_users: &[(NaiveDate, String)],
) -> Result<(), Error> {
    if !new_users.is_empty() {
        let (days, users): (Vec<NaiveDate>, Vec<String>) = new_users.iter().cloned().unzip();
        sqlx::query!(
            "INSERT INTO daily_activity_users (day, user_id) SELECT * FROM UNNEST($1::date[], $2::text[])
             ON CONFLICT DO NOTHING",
            &days,
            &users
        )
        .execute(tx.connection())
        .await?;
    }
    if increments.is_empty() {
        return Ok(());
    }
    let mut sorted = increments.to_vec();
    sorted.sort_by_key(|i| i.day);
    let days: Vec<NaiveDate> = sorted.iter().map(|i| i.day).collect();
    let users: Vec<i32> = sorted.iter().map(|i| i.new_active_users).collect();
    let views: Vec<i64> = sorted.iter().map(|i| i.page_views).collect();
    sqlx::query!(
        "INSERT INTO daily_activity (day, active_users, page_views, updated_at)
         SELECT *, now() FROM UNNEST($1::date[], $2::int4[], $3::int8[])
         ON CONFLICT (day) DO UPDATE SET
           active_users = daily_activity.active_users + EXCLUDED.active_users,
           page_views = daily_activity.page_views + EXCLUDED.page_views,
           updated_at = now()",
        &days,
        &users,
        &views
    )
    .execute(tx.connection())
    .await?;
    Ok(())
}

/// Every day's counters, in day order.
pub async fn daily_activity(store: &Store) -> Result<Vec<DayActivity>, Error> {
    Ok(sqlx::query_as!(DayActivity, "SELECT day, active_users, page_views FROM daily_activity ORDER BY day")
        .fetch_all(store.pool())
        .await?)
}

/// A day's counters as readers see them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayView {
    pub day: NaiveDate,
    pub active_users: i32,
    pub page_views: i64,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

/// Days from `from` to `to` (both included), in order, after `after`.
pub async fn daily_page(
    store: &Store,
    from: NaiveDate,
    to: NaiveDate,
    after: Option<NaiveDate>,
    limit: i64,
) -> Result<Vec<DayView>, Error> {
    Ok(sqlx::query_as!(
        DayView,
        "SELECT day, active_users, page_views, updated_at FROM daily_activity
         WHERE day BETWEEN $1 AND $2 AND ($3::date IS NULL OR day > $3)
         ORDER BY day LIMIT $4",
        from,
        to,
        after,
        limit
    )
    .fetch_all(store.pool())
    .await?)
}
