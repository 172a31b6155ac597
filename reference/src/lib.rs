//! # eventline-reference
//!
//! The reference application: the accounts, projects and activity domains' projections, their
//! typed payloads, and synthetic traffic that follows the domains' rules. It is built on the same
//! public paths a user's application has (the shipped `eventline` binary is `main_with` of these
//! projections); no engine crate names it. `account_balances` and `project_progress` are Rust
//! [`Handler`](eventline_consumers::projections::Handler)s; `daily_activity` and
//! `feature_usage_daily` are declarative definitions (`projections/<name>/`: SQL, as a user
//! writes under `EVENTLINE_PROJECTIONS_DIR`), embedded in the binary. Their former Rust versions
//! stay as the baseline the suite and the declarative benchmark compare them with.
//!
//! [`store`] holds its tables' queries and `migrations/` the Rust projections' migrations
//! (applied per projection by `eventline migrate`); [`api`] its query endpoints, added to the
//! query API's.

pub mod account_balances;
pub mod api;
pub mod daily_activity;
pub mod events;
pub mod feature_usage_daily;
pub mod loadgen;
pub mod project_progress;
pub mod store;

use std::path::PathBuf;
use std::sync::Arc;

use eventline_core::registry::{Registry, RegistryError};

use eventline_consumers::declarative::{self, Declarative, Definition, DefinitionFiles};
use eventline_consumers::projections::{rust, Projection};

mod embedded_schemas {
    include!(concat!(env!("OUT_DIR"), "/embedded_schemas.rs"));
}

/// The reference domains' registry (the repository's `schemas/`), built into the binary: the
/// shipped `eventline`'s registry when `EVENTLINE_SCHEMAS_DIR` is not set.
pub fn registry() -> Result<Registry, RegistryError> {
    let files = embedded_schemas::FILES.iter().map(|(path, text)| (path.to_string(), text.to_string())).collect();
    Registry::from_files(files, "schemas")
}

/// The reference projections, in the order commands list them.
pub fn projections() -> Vec<Arc<dyn Projection>> {
    let mut projections =
        vec![rust::<account_balances::AccountBalances>(), rust::<project_progress::ProjectProgress>()];
    for definition in declarative_definitions() {
        projections.push(Arc::new(Declarative::new(definition)));
    }
    projections
}

/// The declarative reference projections, built into the binary as `projections/<name>/` holds
/// them.
fn declarative_definitions() -> Vec<Definition> {
    vec![
        embedded(
            "daily_activity",
            include_str!("../projections/daily_activity/projection.toml"),
            &[
                (
                    "20261128100003_daily_activity.sql",
                    include_str!("../projections/daily_activity/migrations/20261128100003_daily_activity.sql"),
                ),
                (
                    "20261128100013_daily_activity_analytics.sql",
                    include_str!(
                        "../projections/daily_activity/migrations/20261128100013_daily_activity_analytics.sql"
                    ),
                ),
            ],
            include_str!("../projections/daily_activity/apply.sql"),
        ),
        embedded(
            "feature_usage_daily",
            include_str!("../projections/feature_usage_daily/projection.toml"),
            &[
                (
                    "20261128100004_feature_usage_daily.sql",
                    include_str!(
                        "../projections/feature_usage_daily/migrations/20261128100004_feature_usage_daily.sql"
                    ),
                ),
                (
                    "20261128100014_feature_usage_daily_analytics.sql",
                    include_str!(
                        "../projections/feature_usage_daily/migrations/20261128100014_feature_usage_daily_analytics.sql"
                    ),
                ),
            ],
            include_str!("../projections/feature_usage_daily/apply.sql"),
        ),
    ]
}

fn embedded(name: &str, manifest: &str, migrations: &[(&str, &str)], apply: &str) -> Definition {
    let files = DefinitionFiles {
        folder: PathBuf::from("reference/projections").join(name),
        manifest: manifest.to_string(),
        migrations: migrations.iter().map(|(file, sql)| (file.to_string(), sql.to_string())).collect(),
        apply: apply.to_string(),
    };
    declarative::parse(files).expect("the embedded reference definitions are valid (tested)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_projections_declare_every_registered_version() {
        let registry = registry().unwrap();
        for projection in projections() {
            assert_eq!(projection.review(&registry), vec![], "{}", projection.name());
        }
    }

    #[test]
    fn the_embedded_definitions_are_the_files_of_their_folders() {
        let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("projections");
        for name in ["daily_activity", "feature_usage_daily"] {
            let on_disk = declarative::load(&folder.join(name)).unwrap();
            let Some(embedded) = declarative_definitions().into_iter().find(|d| d.name == name) else {
                panic!("{name} is not embedded")
            };
            assert_eq!(
                (embedded.version, &embedded.tables, &embedded.handles),
                (on_disk.version, &on_disk.tables, &on_disk.handles)
            );
            assert_eq!(
                embedded.migrations.iter().map(|m| (m.version, &m.sql)).collect::<Vec<_>>(),
                on_disk.migrations.iter().map(|m| (m.version, &m.sql)).collect::<Vec<_>>(),
                "every migration file of {name} is embedded"
            );
            assert_eq!(embedded.apply_sql, on_disk.apply_sql);
        }
    }

    #[test]
    fn the_reference_registry_passes_its_checks() {
        let registry = registry().unwrap();
        assert_eq!(eventline_core::check::check(&registry), vec![]);
        // FundsDeposited v2 is not compatible with v1 by itself; its upcaster bridges it.
        let deposits = registry.contract("accounts.FundsDeposited").unwrap();
        let versions = &deposits.versions;
        assert!(eventline_core::check::incompatibility(&versions[&1].schema, &versions[&2].schema, 1, 2).is_some());
        assert!(deposits.upcasters.contains_key(&1));
    }

    #[test]
    fn names_are_unique() {
        let names: Vec<String> = projections().iter().map(|p| p.name().to_string()).collect();
        assert_eq!(names, ["account_balances", "project_progress", "daily_activity", "feature_usage_daily"]);
    }
}
