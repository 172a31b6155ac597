//! The reference domains' event payloads at their current versions, as typed values. A payload is
//! only built by the registry, after its data passed its version's JSON Schema and was upcast to
//! the current version, so code that holds one never re-checks it.

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

/// Money is integer minor units (cents), never floating point.
pub type AmountMinor = i64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainEvent {
    Accounts(AccountEvent),
    Projects(ProjectEvent),
    Activity(ActivityEvent),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountEvent {
    Opened(AccountOpened),
    Deposited(FundsDeposited),
    Withdrawn(FundsWithdrawn),
    Closed(AccountClosed),
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AccountOpened {
    pub account_id: String,
    pub owner: String,
    pub currency: String,
}

/// Version 2: `channel` says how the money came in (`unknown` for deposits upcast from v1).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct FundsDeposited {
    pub account_id: String,
    pub amount_minor: AmountMinor,
    pub currency: String,
    pub channel: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct FundsWithdrawn {
    pub account_id: String,
    pub amount_minor: AmountMinor,
    pub currency: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AccountClosed {
    pub account_id: String,
}

impl AccountEvent {
    pub fn account_id(&self) -> &str {
        match self {
            Self::Opened(e) => &e.account_id,
            Self::Deposited(e) => &e.account_id,
            Self::Withdrawn(e) => &e.account_id,
            Self::Closed(e) => &e.account_id,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProjectEvent {
    ProjectCreated(ProjectCreated),
    TaskCreated(TaskCreated),
    TaskAssigned(TaskAssigned),
    TaskCompleted(TaskRef),
    TaskReopened(TaskRef),
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ProjectCreated {
    pub project_id: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TaskCreated {
    pub project_id: String,
    pub task_id: String,
    pub title: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TaskAssigned {
    pub project_id: String,
    pub task_id: String,
    pub assignee: String,
}

/// The payload of events that only name a task.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TaskRef {
    pub project_id: String,
    pub task_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActivityEvent {
    PageViewed(PageViewed),
    FeatureUsed(FeatureUsed),
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PageViewed {
    pub user_id: String,
    pub path: String,
    pub session_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct FeatureUsed {
    pub user_id: String,
    pub feature: String,
}

/// The event types this build has typed payloads for, with their current data version.
pub const CURRENT_VERSIONS: &[(&str, u32)] = &[
    ("accounts.AccountOpened", 1),
    ("accounts.FundsDeposited", 2),
    ("accounts.FundsWithdrawn", 1),
    ("accounts.AccountClosed", 1),
    ("projects.ProjectCreated", 1),
    ("projects.TaskCreated", 1),
    ("projects.TaskAssigned", 1),
    ("projects.TaskCompleted", 1),
    ("projects.TaskReopened", 1),
    ("activity.PageViewed", 1),
    ("activity.FeatureUsed", 1),
];

/// Builds the typed payload of a current-version event from data its schema accepted.
/// `None` for a type this build does not know; an error when the data does not fit the type,
/// which means the schema and this code disagree.
pub fn parse_current(event_type: &str, data: Value) -> Option<Result<DomainEvent, serde_json::Error>> {
    fn typed<T: DeserializeOwned>(
        data: Value,
        wrap: impl FnOnce(T) -> DomainEvent,
    ) -> Result<DomainEvent, serde_json::Error> {
        serde_json::from_value(data).map(wrap)
    }
    use AccountEvent as A;
    use ActivityEvent as U;
    use DomainEvent as D;
    use ProjectEvent as P;
    Some(match event_type {
        "accounts.AccountOpened" => typed(data, |e| D::Accounts(A::Opened(e))),
        "accounts.FundsDeposited" => typed(data, |e| D::Accounts(A::Deposited(e))),
        "accounts.FundsWithdrawn" => typed(data, |e| D::Accounts(A::Withdrawn(e))),
        "accounts.AccountClosed" => typed(data, |e| D::Accounts(A::Closed(e))),
        "projects.ProjectCreated" => typed(data, |e| D::Projects(P::ProjectCreated(e))),
        "projects.TaskCreated" => typed(data, |e| D::Projects(P::TaskCreated(e))),
        "projects.TaskAssigned" => typed(data, |e| D::Projects(P::TaskAssigned(e))),
        "projects.TaskCompleted" => typed(data, |e| D::Projects(P::TaskCompleted(e))),
        "projects.TaskReopened" => typed(data, |e| D::Projects(P::TaskReopened(e))),
        "activity.PageViewed" => typed(data, |e| D::Activity(U::PageViewed(e))),
        "activity.FeatureUsed" => typed(data, |e| D::Activity(U::FeatureUsed(e))),
        _ => return None,
    })
}
