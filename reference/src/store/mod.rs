//! The reference projections' rows: per projection, its queries (set-based writes: `UNNEST`
//! arrays, one statement per table per batch; keyset-paginated reads for the API), run in the
//! batch's transaction through [`StoreTx::connection`](eventline_store::StoreTx::connection) or
//! on the store's pool; its migrations are in `reference/migrations/<name>/` (Rust projections)
//! or `reference/projections/<name>/migrations/` (declarative ones, whose SQL writes their rows:
//! here are only their reads, and their former Rust versions' writes).

pub mod account_balances;
pub mod daily_activity;
pub mod feature_usage_daily;
pub mod project_progress;
