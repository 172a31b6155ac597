//! Each shipped projection's rows: one folder per projection with its queries (`mod.rs`) and the
//! migrations that create its tables (`migrations/`). Its domain rules live in
//! `consumers/src/projections/`.

pub mod account_balances;
pub mod daily_activity;
pub mod feature_usage_daily;
pub mod project_progress;
