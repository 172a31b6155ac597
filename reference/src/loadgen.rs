//! Synthetic, valid traffic of the reference domains for demos and benchmarks, each following
//! its domain's rules.

use std::sync::Arc;

use chrono::Utc;

use eventline_core::contract::ValidatedEvent;
use eventline_core::registry::Registry;
use eventline_producers::loadgen::{envelope, validated};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

/// Share of deposits sent as data version 1 (no `channel`), as an older upstream would.
const LEGACY_DEPOSIT_SHARE: f64 = 0.2;
const CHANNELS: [&str; 4] = ["branch", "card", "transfer", "online"];

/// Accounts-domain traffic: first every account is opened, then deposits and withdrawals follow
/// at random. Withdrawals never overdraw, so the balances stay plausible. Some deposits are
/// version 1, so the upcaster is exercised too.
pub struct AccountsTraffic {
    registry: Arc<Registry>,
    rng: StdRng,
    /// Prefix of account and event ids, so repeated runs do not collide.
    prefix: String,
    balances: Vec<i64>,
    opened: usize,
    sequence: u64,
}

impl AccountsTraffic {
    pub fn new(registry: Arc<Registry>, prefix: &str, accounts: usize, seed: u64) -> Self {
        Self {
            registry,
            rng: StdRng::seed_from_u64(seed),
            prefix: prefix.to_string(),
            balances: vec![0; accounts.max(1)],
            opened: 0,
            sequence: 0,
        }
    }

    fn next_event(&mut self) -> serde_json::Value {
        self.sequence += 1;
        let id = format!("{}-evt-{}", self.prefix, self.sequence);
        let mut dataversion = 1;
        let (event_type, data) = if self.opened < self.balances.len() {
            let account = self.opened;
            self.opened += 1;
            let owners = ["Ada", "Grace", "Edsger", "Barbara", "Donald", "Frances"];
            let owner = owners[account % owners.len()];
            (
                "accounts.AccountOpened",
                json!({"account_id": self.account_id(account), "owner": owner, "currency": "EUR"}),
            )
        } else {
            let account = self.rng.random_range(0..self.balances.len());
            let balance = self.balances[account];
            if balance >= 100 && self.rng.random_bool(0.4) {
                let amount = self.rng.random_range(1..=balance.min(20_000));
                self.balances[account] -= amount;
                (
                    "accounts.FundsWithdrawn",
                    json!({"account_id": self.account_id(account), "amount_minor": amount, "currency": "EUR"}),
                )
            } else {
                let amount = self.rng.random_range(100..=50_000);
                self.balances[account] += amount;
                let mut data =
                    json!({"account_id": self.account_id(account), "amount_minor": amount, "currency": "EUR"});
                if !self.rng.random_bool(LEGACY_DEPOSIT_SHARE) {
                    dataversion = 2;
                    data["channel"] = json!(CHANNELS[self.rng.random_range(0..CHANNELS.len())]);
                }
                ("accounts.FundsDeposited", data)
            }
        };
        json!({
            "specversion": "1.0",
            "id": id,
            "source": "/eventline/loadgen",
            "type": event_type,
            "subject": data["account_id"],
            "dataversion": dataversion,
            "time": Utc::now().to_rfc3339(),
            "datacontenttype": "application/json",
            "data": data,
        })
    }

    fn account_id(&self, index: usize) -> String {
        format!("{}-acc-{index:04}", self.prefix)
    }
}

impl Iterator for AccountsTraffic {
    type Item = ValidatedEvent;

    fn next(&mut self) -> Option<ValidatedEvent> {
        let value = self.next_event();
        Some(validated(&self.registry, value))
    }
}

/// Which domains traffic is generated for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Domain {
    Accounts,
    Projects,
    Activity,
    /// All three, interleaved.
    All,
}

/// Synthetic traffic for `domain`, over `keys` entities (accounts, projects or users) per domain.
pub fn traffic(
    registry: Arc<Registry>,
    domain: Domain,
    prefix: &str,
    keys: usize,
    seed: u64,
) -> Box<dyn Iterator<Item = ValidatedEvent> + Send> {
    match domain {
        Domain::Accounts => Box::new(AccountsTraffic::new(registry, prefix, keys, seed)),
        Domain::Projects => Box::new(ProjectsTraffic::new(registry, prefix, keys, seed)),
        Domain::Activity => Box::new(ActivityTraffic::new(registry, prefix, keys, seed)),
        Domain::All => {
            let mut streams: Vec<Box<dyn Iterator<Item = ValidatedEvent> + Send>> = vec![
                Box::new(AccountsTraffic::new(registry.clone(), prefix, keys, seed)),
                Box::new(ProjectsTraffic::new(registry.clone(), prefix, keys, seed)),
                Box::new(ActivityTraffic::new(registry, prefix, keys, seed)),
            ];
            let mut turn = 0;
            Box::new(std::iter::from_fn(move || {
                turn += 1;
                streams[turn % 3].next()
            }))
        }
    }
}

/// Projects-domain traffic: every project is created first, then tasks are created, assigned,
/// completed and reopened as the rules allow.
pub struct ProjectsTraffic {
    registry: Arc<Registry>,
    rng: StdRng,
    prefix: String,
    /// Per project: each task's completed flag.
    tasks: Vec<Vec<bool>>,
    created: usize,
    sequence: u64,
}

impl ProjectsTraffic {
    pub fn new(registry: Arc<Registry>, prefix: &str, projects: usize, seed: u64) -> Self {
        Self {
            registry,
            rng: StdRng::seed_from_u64(seed),
            prefix: prefix.to_string(),
            tasks: vec![Vec::new(); projects.max(1)],
            created: 0,
            sequence: 0,
        }
    }
}

impl Iterator for ProjectsTraffic {
    type Item = ValidatedEvent;

    fn next(&mut self) -> Option<ValidatedEvent> {
        self.sequence += 1;
        let id = format!("{}-prj-evt-{}", self.prefix, self.sequence);
        let project_index =
            if self.created < self.tasks.len() { self.created } else { self.rng.random_range(0..self.tasks.len()) };
        let project = format!("{}-prj-{project_index:04}", self.prefix);
        let value = if self.created < self.tasks.len() {
            self.created += 1;
            envelope(
                id,
                "projects.ProjectCreated",
                &project,
                json!({"project_id": project, "name": format!("Project {project_index}")}),
            )
        } else {
            let tasks = &mut self.tasks[project_index];
            if tasks.is_empty() || self.rng.random_bool(0.3) {
                let task = format!("task-{}", tasks.len());
                tasks.push(false);
                let data = json!({"project_id": project, "task_id": task, "title": "Something to do"});
                envelope(id, "projects.TaskCreated", &project, data)
            } else {
                let index = self.rng.random_range(0..tasks.len());
                let data = json!({"project_id": project, "task_id": format!("task-{index}")});
                if self.rng.random_bool(0.3) {
                    let mut data = data;
                    data["assignee"] = json!(["ada", "grace", "edsger"][self.rng.random_range(0..3)]);
                    envelope(id, "projects.TaskAssigned", &project, data)
                } else if tasks[index] {
                    tasks[index] = false;
                    envelope(id, "projects.TaskReopened", &project, data)
                } else {
                    tasks[index] = true;
                    envelope(id, "projects.TaskCompleted", &project, data)
                }
            }
        };
        Some(validated(&self.registry, value))
    }
}

/// Activity-domain traffic: page views and feature uses by random users, timed now.
pub struct ActivityTraffic {
    registry: Arc<Registry>,
    rng: StdRng,
    prefix: String,
    users: usize,
    sequence: u64,
}

impl ActivityTraffic {
    pub fn new(registry: Arc<Registry>, prefix: &str, users: usize, seed: u64) -> Self {
        Self {
            registry,
            rng: StdRng::seed_from_u64(seed),
            prefix: prefix.to_string(),
            users: users.max(1),
            sequence: 0,
        }
    }
}

impl Iterator for ActivityTraffic {
    type Item = ValidatedEvent;

    fn next(&mut self) -> Option<ValidatedEvent> {
        self.sequence += 1;
        let id = format!("{}-act-evt-{}", self.prefix, self.sequence);
        let user = format!("{}-user-{:04}", self.prefix, self.rng.random_range(0..self.users));
        let value = if self.rng.random_bool(0.7) {
            let path = ["/", "/pricing", "/docs", "/blog", "/signup"][self.rng.random_range(0..5)];
            let data = json!({"user_id": user, "path": path, "session_id": format!("{user}-s{}", self.sequence / 20)});
            envelope(id, "activity.PageViewed", &user, data)
        } else {
            let feature = ["export", "search", "share", "import"][self.rng.random_range(0..4)];
            envelope(id, "activity.FeatureUsed", &user, json!({"user_id": user, "feature": feature}))
        };
        Some(validated(&self.registry, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_domain_generates_valid_traffic() {
        let registry = Arc::new(crate::registry().unwrap());
        let events: Vec<ValidatedEvent> = traffic(registry, Domain::All, "t", 10, 3).take(3_000).collect();
        let topics: std::collections::BTreeSet<&str> = events.iter().map(|e| e.topic()).collect();
        assert_eq!(topics.into_iter().collect::<Vec<_>>(), ["accounts.events", "activity.events", "projects.events"]);
        let types: std::collections::BTreeSet<&str> = events.iter().map(|e| e.envelope().event_type.as_str()).collect();
        assert_eq!(types.len(), 10, "all but AccountClosed appear: {types:?}");
    }

    #[test]
    fn accounts_open_first_and_never_overdraw() {
        let registry = Arc::new(crate::registry().unwrap());
        let events: Vec<ValidatedEvent> = AccountsTraffic::new(registry.clone(), "t", 3, 7).take(500).collect();
        let types: Vec<&str> = events.iter().take(3).map(|e| e.envelope().event_type.as_str()).collect();
        assert_eq!(types, ["accounts.AccountOpened"; 3]);
        assert!(events.iter().skip(3).all(|e| e.envelope().event_type != "accounts.AccountOpened"));
        assert!(events.iter().any(|e| e.envelope().event_type == "accounts.FundsWithdrawn"));
        let versions: Vec<u32> = events.iter().map(|e| e.envelope().dataversion).collect();
        assert!(versions.contains(&1) && versions.contains(&2), "both deposit versions are generated");
        let again: Vec<ValidatedEvent> = AccountsTraffic::new(registry, "t", 3, 7).take(500).collect();
        let data = |list: &[ValidatedEvent]| list.iter().map(|e| e.envelope().data.clone()).collect::<Vec<_>>();
        assert_eq!(data(&events), data(&again), "same seed, same traffic");
    }
}
