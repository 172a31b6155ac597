//! Random streams of reference events for all three domains, each written by the test itself with
//! what every projection must hold afterwards, computed here independently of eventline.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, NaiveDate, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::helpers::{AccountsScenario, TestEnv};

/// Per project: tasks total, tasks completed, events applied.
pub type ProjectExpectation = (i32, i32, i64);
/// Per (project, task): completed?, assignee.
pub type TaskExpectation = (bool, Option<String>);

/// The `daily_activity` rows: per day, active users and page views.
pub async fn actual_daily(store: &eventline_store::Store) -> BTreeMap<NaiveDate, (i32, i64)> {
    let rows = eventline_reference::store::daily_activity::daily_activity(store).await.unwrap();
    rows.into_iter().map(|d| (d.day, (d.active_users, d.page_views))).collect()
}

/// The `feature_usage_daily` rows: per day and feature, uses and unique users.
pub async fn actual_features(store: &eventline_store::Store) -> BTreeMap<(NaiveDate, String), (i64, i32)> {
    let rows = eventline_reference::store::feature_usage_daily::feature_usage_daily(store).await.unwrap();
    rows.into_iter().map(|f| ((f.day, f.feature), (f.uses, f.unique_users))).collect()
}

pub struct ReferenceScenario {
    /// All events, domains interleaved, each key's events in order.
    pub events: Vec<Value>,
    pub accounts: AccountsScenario,
    pub projects: BTreeMap<String, ProjectExpectation>,
    pub tasks: BTreeMap<(String, String), TaskExpectation>,
    /// Per day: active users, page views.
    pub daily: BTreeMap<NaiveDate, (i32, i64)>,
    /// Per (day, feature): uses, unique users.
    pub features: BTreeMap<(NaiveDate, String), (i64, i32)>,
    /// How many events each topic gets.
    pub per_topic: BTreeMap<&'static str, usize>,
}

fn event(id: String, event_type: &str, subject: &str, data: Value) -> Value {
    json!({"specversion": "1.0", "id": id, "source": "/tests", "type": event_type, "subject": subject, "data": data})
}

impl ReferenceScenario {
    /// About `per_domain` events for each domain, over many keys.
    pub fn generate(test_id: &str, per_domain: usize, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let accounts = AccountsScenario::generate(test_id, (per_domain / 20).max(5), per_domain, seed);
        let (project_events, projects, tasks) = projects(test_id, per_domain, &mut rng);
        let (activity_events, daily, features) = activity(test_id, per_domain, &mut rng);
        let per_topic = BTreeMap::from([
            ("accounts.events", accounts.events.len()),
            ("projects.events", project_events.len()),
            ("activity.events", activity_events.len()),
        ]);
        // Interleave the three streams at random, keeping each one's order.
        let mut streams = [accounts.events.clone(), project_events, activity_events].map(|s| s.into_iter().peekable());
        let mut events = Vec::new();
        loop {
            let open: Vec<usize> = (0..3).filter(|&i| streams[i].peek().is_some()).collect();
            let Some(&pick) = open.get(rng.random_range(0..open.len().max(1))) else { break };
            events.push(streams[pick].next().expect("peeked"));
        }
        Self { events, accounts, projects, tasks, daily, features, per_topic }
    }

    /// Fails unless every projection holds exactly what the events say, with no dead letters.
    pub async fn assert_projected(&self, env: &TestEnv, context: &str) {
        self.assert_projected_except_dead_letters(env, context).await;
        for projection in ["account_balances", "project_progress", "daily_activity", "feature_usage_daily"] {
            let dead = env.store.dead_letters(projection).await.unwrap();
            assert!(dead.is_empty(), "{projection} dead letters {dead:?}; {context}");
        }
    }

    /// Fails unless every projection's rows are exactly what the valid events say.
    pub async fn assert_projected_except_dead_letters(&self, env: &TestEnv, context: &str) {
        self.accounts.assert_rows(env, context).await;
        let projects: BTreeMap<String, (i32, i32, i64)> =
            eventline_reference::store::project_progress::projects(&env.store)
                .await
                .unwrap()
                .into_iter()
                .map(|(p, percent)| {
                    let expected = if p.tasks_total == 0 {
                        0.0
                    } else {
                        (10_000.0 * p.tasks_completed as f64 / p.tasks_total as f64).round() / 100.0
                    };
                    assert!(
                        (percent - expected).abs() < 0.001,
                        "{}: percent {percent}, expected {expected}",
                        p.project_id
                    );
                    (p.project_id, (p.tasks_total, p.tasks_completed, p.events_applied))
                })
                .collect();
        assert_eq!(projects, self.projects, "project_progress; {context}");
        let tasks: BTreeMap<(String, String), TaskExpectation> =
            eventline_reference::store::project_progress::tasks(&env.store)
                .await
                .unwrap()
                .into_iter()
                .map(|t| {
                    let done = t.status == eventline_reference::store::project_progress::TaskStatus::Completed;
                    ((t.project_id, t.task_id), (done, t.assignee))
                })
                .collect();
        assert_eq!(tasks, self.tasks, "tasks; {context}");
        assert_eq!(actual_daily(&env.store).await, self.daily, "daily_activity; {context}");
        assert_eq!(actual_features(&env.store).await, self.features, "feature_usage_daily; {context}");
    }

    /// Whether every projection has passed every event of its topics.
    pub async fn all_applied(&self, env: &TestEnv) -> bool {
        for (projection, topic) in READERS {
            if env.applied_through(projection).await != self.per_topic[topic] as i64 {
                return false;
            }
        }
        true
    }

    /// Each projection's stored offsets per partition against the topic's end offsets.
    pub async fn progress(&self, env: &TestEnv) -> String {
        let mut lines = Vec::new();
        for (projection, topic) in READERS {
            let ends = env.end_offsets(topic).await;
            let stored = env.store.checkpoints(projection).await.unwrap();
            let by_partition: Vec<String> = ends
                .iter()
                .enumerate()
                .map(|(p, end)| {
                    let at = stored.iter().find(|c| c.partition == p as i32).map_or(0, |c| c.next_offset);
                    format!("{p}:{at}/{end}")
                })
                .collect();
            lines.push(format!("{projection} [{}]", by_partition.join(" ")));
        }
        lines.join("; ")
    }
}

const READERS: [(&str, &str); 4] = [
    ("account_balances", "accounts.events"),
    ("project_progress", "projects.events"),
    ("daily_activity", "activity.events"),
    ("feature_usage_daily", "activity.events"),
];

type ProjectStreams = (Vec<Value>, BTreeMap<String, ProjectExpectation>, BTreeMap<(String, String), TaskExpectation>);

/// Projects created first, then tasks created, assigned, completed and reopened as the rules
/// allow, so no event is refused.
fn projects(test_id: &str, count: usize, rng: &mut StdRng) -> ProjectStreams {
    let mut events = Vec::new();
    let mut projects: BTreeMap<String, ProjectExpectation> = BTreeMap::new();
    let mut tasks: BTreeMap<(String, String), TaskExpectation> = BTreeMap::new();
    let project_count = (count / 25).max(3);
    let id = |events: &Vec<Value>| format!("{test_id}-p{}", events.len());
    for p in 0..project_count {
        let project = format!("{test_id}-project-{p}");
        events.push(event(
            id(&events),
            "projects.ProjectCreated",
            &project,
            json!({"project_id": project, "name": format!("Project {p}")}),
        ));
        projects.insert(project, (0, 0, 1));
    }
    while events.len() < count {
        let project = format!("{test_id}-project-{}", rng.random_range(0..project_count));
        let entry = projects.get_mut(&project).expect("created");
        let existing: Vec<String> = tasks.keys().filter(|(p, _)| *p == project).map(|(_, t)| t.clone()).collect();
        if existing.is_empty() || rng.random_bool(0.3) {
            let task = format!("task-{}", existing.len());
            events.push(event(
                id(&events),
                "projects.TaskCreated",
                &project,
                json!({"project_id": project, "task_id": task, "title": "something"}),
            ));
            entry.0 += 1;
            tasks.insert((project.clone(), task), (false, None));
        } else {
            let task = existing[rng.random_range(0..existing.len())].clone();
            let state = tasks.get_mut(&(project.clone(), task.clone())).expect("exists");
            let data = json!({"project_id": project, "task_id": task});
            match rng.random_range(0..3) {
                0 => {
                    let who = format!("person-{}", rng.random_range(0..5));
                    let mut data = data;
                    data["assignee"] = json!(who);
                    events.push(event(id(&events), "projects.TaskAssigned", &project, data));
                    state.1 = Some(who);
                }
                _ if state.0 => {
                    events.push(event(id(&events), "projects.TaskReopened", &project, data));
                    state.0 = false;
                    entry.1 -= 1;
                }
                _ => {
                    events.push(event(id(&events), "projects.TaskCompleted", &project, data));
                    state.0 = true;
                    entry.1 += 1;
                }
            }
        }
        entry.2 += 1;
    }
    (events, projects, tasks)
}

type ActivityStreams = (Vec<Value>, BTreeMap<NaiveDate, (i32, i64)>, BTreeMap<(NaiveDate, String), (i64, i32)>);

/// Page views and feature uses by many users over three days.
fn activity(test_id: &str, count: usize, rng: &mut StdRng) -> ActivityStreams {
    let start: DateTime<Utc> = "2026-11-20T00:00:00Z".parse().expect("a time");
    let users = (count / 10).max(5);
    let features = ["export", "search", "share", "import"];
    let mut events = Vec::new();
    let mut active: BTreeMap<NaiveDate, (BTreeSet<String>, i64)> = BTreeMap::new();
    let mut usage: BTreeMap<(NaiveDate, String), (i64, BTreeSet<String>)> = BTreeMap::new();
    for n in 0..count {
        let user = format!("{test_id}-user-{}", rng.random_range(0..users));
        let time = start + Duration::seconds(rng.random_range(0..3 * 86_400));
        let day = time.date_naive();
        let day_entry = active.entry(day).or_default();
        day_entry.0.insert(user.clone());
        let mut value = if rng.random_bool(0.6) {
            day_entry.1 += 1;
            let data =
                json!({"user_id": user, "path": format!("/page/{}", rng.random_range(0..20)), "session_id": "s"});
            event(format!("{test_id}-a{n}"), "activity.PageViewed", &user, data)
        } else {
            let feature = features[rng.random_range(0..features.len())];
            let entry = usage.entry((day, feature.to_string())).or_default();
            entry.0 += 1;
            entry.1.insert(user.clone());
            event(
                format!("{test_id}-a{n}"),
                "activity.FeatureUsed",
                &user,
                json!({"user_id": user, "feature": feature}),
            )
        };
        value["time"] = json!(time.to_rfc3339());
        events.push(value);
    }
    let daily = active.into_iter().map(|(day, (users, views))| (day, (users.len() as i32, views))).collect();
    let features = usage.into_iter().map(|(key, (uses, users))| (key, (uses, users.len() as i32))).collect();
    (events, daily, features)
}
