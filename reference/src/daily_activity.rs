//! The `daily_activity` projection: per UTC day (of the event's time), how many users were active
//! (any activity event) and how many pages were viewed. Activity events are facts: none is refused.
//!
//! Not what the shipped binary runs: it ships the declarative `daily_activity` (the SQL in
//! `reference/projections/daily_activity/`, on the same tables and migrations). This Rust version is kept as
//! the baseline the suite proves the SQL equal to (`tests/system/declarative.rs`) and the
//! declarative benchmark measures it against (`cargo bench --bench declarative`).

use std::collections::{BTreeMap, HashSet};

use crate::store::daily_activity::DayIncrement;
use crate::store::daily_activity::{self as queries};
use chrono::NaiveDate;
use eventline_core::contract::ValidatedEvent;
use eventline_store::StoreTx;

use crate::events::ActivityEvent;
use eventline_consumers::projections::{Applicable, Folded, Handler, Migration};

pub struct DailyActivity;

/// Users already counted on the batch's days, and what the batch adds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DailyState {
    known: HashSet<(NaiveDate, String)>,
    new_users: Vec<(NaiveDate, String)>,
    /// Per day: newly active users, page views.
    increments: BTreeMap<NaiveDate, (i32, i64)>,
}

impl Handler for DailyActivity {
    type Event = ActivityEvent;
    type State = DailyState;
    const NAME: &'static str = "daily_activity";
    // Each row is one UTC day: days wholly after a mid-stream start are exact.
    const STARTS_MID_STREAM: bool = true;
    const TOPICS: &'static [&'static str] = &["activity.events"];
    const TABLES: &'static [&'static str] = crate::store::daily_activity::TABLES;
    const MIGRATIONS: &'static [Migration] = &[
        Migration {
            version: 20261128100003,
            description: "daily activity",
            sql: include_str!("../projections/daily_activity/migrations/20261128100003_daily_activity.sql"),
        },
        Migration {
            version: 20261128100013,
            description: "daily activity analytics",
            sql: include_str!("../projections/daily_activity/migrations/20261128100013_daily_activity_analytics.sql"),
        },
    ];
    const HANDLES: &'static [(&'static str, &'static [u32])] =
        &[("activity.PageViewed", &[1]), ("activity.FeatureUsed", &[1])];

    fn decode(event: &ValidatedEvent) -> Result<ActivityEvent, String> {
        ActivityEvent::decode(event)
    }

    async fn load(
        tx: &mut StoreTx,
        events: &[&Applicable<ActivityEvent>],
    ) -> Result<DailyState, eventline_store::Error> {
        let mut pairs: Vec<(NaiveDate, String)> = events.iter().map(|a| user_day(a)).collect();
        pairs.sort();
        pairs.dedup();
        let known = queries::known_active_users(tx, &pairs).await?;
        Ok(DailyState { known: known.into_iter().collect(), ..DailyState::default() })
    }

    fn fold(mut state: DailyState, events: &[&Applicable<ActivityEvent>]) -> Folded<DailyState> {
        for applicable in events {
            let (day, user) = user_day(applicable);
            let increment = state.increments.entry(day).or_default();
            if state.known.insert((day, user.clone())) {
                increment.0 += 1;
                state.new_users.push((day, user));
            }
            if matches!(applicable.payload, ActivityEvent::PageViewed(_)) {
                increment.1 += 1;
            }
        }
        Folded { state, rejected: Vec::new() }
    }

    async fn save(tx: &mut StoreTx, state: DailyState) -> Result<(), eventline_store::Error> {
        let increments: Vec<DayIncrement> = state
            .increments
            .into_iter()
            .map(|(day, (new_active_users, page_views))| DayIncrement { day, new_active_users, page_views })
            .collect();
        queries::add_daily_activity(tx, &increments, &state.new_users).await
    }
}

/// The (UTC day, user) an activity event counts for.
fn user_day(applicable: &Applicable<ActivityEvent>) -> (NaiveDate, String) {
    let user = match &applicable.payload {
        ActivityEvent::PageViewed(e) => &e.user_id,
        ActivityEvent::FeatureUsed(e) => &e.user_id,
    };
    (applicable.time.date_naive(), user.clone())
}
