//! # eventline-reference
//!
//! The reference application: the accounts, projects and activity domains' projections as Rust
//! [`Handler`](eventline_consumers::projections::Handler)s, their typed payloads, and synthetic
//! traffic that follows the domains' rules. It is built on the same public paths a user's
//! application has (the shipped `eventline` binary is `main_with` of these projections); no engine
//! crate names it.
//!
//! [`store`] holds its tables' queries and `migrations/` their migrations (applied per projection
//! by `eventline migrate`); [`api`] its query endpoints, added to the query API's.

pub mod account_balances;
pub mod api;
pub mod daily_activity;
pub mod events;
pub mod feature_usage_daily;
pub mod loadgen;
pub mod project_progress;
pub mod store;

use std::sync::Arc;

use eventline_consumers::projections::{rust, Projection};

/// The reference projections, in the order commands list them.
pub fn projections() -> Vec<Arc<dyn Projection>> {
    vec![
        rust::<account_balances::AccountBalances>(),
        rust::<project_progress::ProjectProgress>(),
        rust::<daily_activity::DailyActivity>(),
        rust::<feature_usage_daily::FeatureUsageDaily>(),
    ]
}

#[cfg(test)]
mod tests {
    use eventline_core::registry::Registry;

    use super::*;

    #[test]
    fn the_reference_projections_declare_every_registered_version() {
        let registry = Registry::embedded().unwrap();
        for projection in projections() {
            assert_eq!(projection.review(&registry), vec![], "{}", projection.name());
        }
    }

    #[test]
    fn names_are_unique() {
        let names: Vec<String> = projections().iter().map(|p| p.name().to_string()).collect();
        assert_eq!(names, ["account_balances", "project_progress", "daily_activity", "feature_usage_daily"]);
    }
}
