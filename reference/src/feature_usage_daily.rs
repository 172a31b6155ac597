//! The `feature_usage_daily` projection: per UTC day and feature, how many times it was used and
//! by how many distinct users. Page views are on the same topic and deliberately passed over.
//!
//! Not what the shipped binary runs: it ships the declarative `feature_usage_daily` (the SQL in
//! `reference/projections/feature_usage_daily/`, on the same tables and migrations). This Rust version is kept as
//! the baseline the suite proves the SQL equal to (`tests/system/declarative.rs`) and the
//! declarative benchmark measures it against (`cargo bench --bench declarative`).

use std::collections::{BTreeMap, HashSet};

use crate::store::feature_usage_daily::{self as queries};
use crate::store::feature_usage_daily::{FeatureDay, FeatureUser};
use chrono::NaiveDate;
use eventline_core::contract::ValidatedEvent;
use eventline_store::StoreTx;

use crate::events::ActivityEvent;
use eventline_consumers::projections::{Applicable, Folded, Handler, Migration};

pub struct FeatureUsageDaily;

/// Users already counted per day and feature, and what the batch adds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FeatureState {
    known: HashSet<FeatureUser>,
    new_users: Vec<FeatureUser>,
    /// Per (day, feature): uses, newly counted users.
    increments: BTreeMap<(NaiveDate, String), (i64, i32)>,
}

impl Handler for FeatureUsageDaily {
    type Event = ActivityEvent;
    type State = FeatureState;
    const NAME: &'static str = "feature_usage_daily";
    // Each row is one UTC day: days wholly after a mid-stream start are exact.
    const STARTS_MID_STREAM: bool = true;
    const TOPICS: &'static [&'static str] = &["activity.events"];
    const TABLES: &'static [&'static str] = crate::store::feature_usage_daily::TABLES;
    const MIGRATIONS: &'static [Migration] = &[
        Migration {
            version: 20261128100004,
            description: "feature usage daily",
            sql: include_str!("../projections/feature_usage_daily/migrations/20261128100004_feature_usage_daily.sql"),
        },
        Migration {
            version: 20261128100014,
            description: "feature usage daily analytics",
            sql: include_str!(
                "../projections/feature_usage_daily/migrations/20261128100014_feature_usage_daily_analytics.sql"
            ),
        },
    ];
    const HANDLES: &'static [(&'static str, &'static [u32])] = &[("activity.FeatureUsed", &[1])];
    const IGNORES: &'static [&'static str] = &["activity.PageViewed"];

    fn decode(event: &ValidatedEvent) -> Result<ActivityEvent, String> {
        ActivityEvent::decode(event)
    }

    async fn load(
        tx: &mut StoreTx,
        events: &[&Applicable<ActivityEvent>],
    ) -> Result<FeatureState, eventline_store::Error> {
        let mut triples: Vec<FeatureUser> = events.iter().filter_map(|a| usage(a)).collect();
        triples.sort();
        triples.dedup();
        let known = queries::known_feature_users(tx, &triples).await?;
        Ok(FeatureState { known: known.into_iter().collect(), ..FeatureState::default() })
    }

    fn fold(mut state: FeatureState, events: &[&Applicable<ActivityEvent>]) -> Folded<FeatureState> {
        for applicable in events {
            let Some(triple) = usage(applicable) else { continue };
            let increment = state.increments.entry((triple.0, triple.1.clone())).or_default();
            increment.0 += 1;
            if state.known.insert(triple.clone()) {
                increment.1 += 1;
                state.new_users.push(triple);
            }
        }
        Folded { state, rejected: Vec::new() }
    }

    async fn save(tx: &mut StoreTx, state: FeatureState) -> Result<(), eventline_store::Error> {
        let increments: Vec<FeatureDay> = state
            .increments
            .into_iter()
            .map(|((day, feature), (uses, unique_users))| FeatureDay { day, feature, uses, unique_users })
            .collect();
        queries::add_feature_usage(tx, &increments, &state.new_users).await
    }
}

/// The (UTC day, feature, user) a feature use counts for.
fn usage(applicable: &Applicable<ActivityEvent>) -> Option<FeatureUser> {
    match &applicable.payload {
        ActivityEvent::FeatureUsed(e) => Some((applicable.time.date_naive(), e.feature.clone(), e.user_id.clone())),
        ActivityEvent::PageViewed(_) => None,
    }
}
