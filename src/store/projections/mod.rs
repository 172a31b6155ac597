//! Each shipped projection's rows: one folder per projection with its queries (`mod.rs`) and the
//! migrations that create its tables (`migrations/`). Its domain rules live in
//! `consumers/src/projections/`.

pub mod account_balances;
pub mod daily_activity;
pub mod feature_usage_daily;
pub mod project_progress;

/// The tables a projection owns, by its name; `None` for a name no projection has.
pub fn tables(projection: &str) -> Option<&'static [&'static str]> {
    match projection {
        "account_balances" => Some(account_balances::TABLES),
        "project_progress" => Some(project_progress::TABLES),
        "daily_activity" => Some(daily_activity::TABLES),
        "feature_usage_daily" => Some(feature_usage_daily::TABLES),
        _ => None,
    }
}
