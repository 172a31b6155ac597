//! The reference domains' event payloads at their current versions, as typed values: what the
//! reference projections read. A payload is decoded from a [`ValidatedEvent`]'s data, which passed
//! its version's JSON Schema and was upcast to the current version, so code that holds one never
//! re-checks it.

use eventline_core::contract::ValidatedEvent;
use serde::de::DeserializeOwned;
use serde::Deserialize;

/// Money is integer minor units (cents), never floating point.
pub type AmountMinor = i64;

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

/// Reads an event's current-version data as `T`. An error means the schema accepted data this
/// type cannot hold: the registry and the projection disagree, and the event is set aside.
fn typed<T: DeserializeOwned>(event: &ValidatedEvent) -> Result<T, String> {
    T::deserialize(event.data()).map_err(|error| {
        format!(
            "{} v{} does not fit the projection's type: {error}",
            event.envelope().event_type,
            event.current_version()
        )
    })
}

fn not_handled(event: &ValidatedEvent) -> String {
    format!("{} is not an event this projection reads", event.envelope().event_type)
}

impl AccountEvent {
    pub fn decode(event: &ValidatedEvent) -> Result<Self, String> {
        Ok(match event.envelope().event_type.as_str() {
            "accounts.AccountOpened" => Self::Opened(typed(event)?),
            "accounts.FundsDeposited" => Self::Deposited(typed(event)?),
            "accounts.FundsWithdrawn" => Self::Withdrawn(typed(event)?),
            "accounts.AccountClosed" => Self::Closed(typed(event)?),
            _ => return Err(not_handled(event)),
        })
    }
}

impl ProjectEvent {
    pub fn decode(event: &ValidatedEvent) -> Result<Self, String> {
        Ok(match event.envelope().event_type.as_str() {
            "projects.ProjectCreated" => Self::ProjectCreated(typed(event)?),
            "projects.TaskCreated" => Self::TaskCreated(typed(event)?),
            "projects.TaskAssigned" => Self::TaskAssigned(typed(event)?),
            "projects.TaskCompleted" => Self::TaskCompleted(typed(event)?),
            "projects.TaskReopened" => Self::TaskReopened(typed(event)?),
            _ => return Err(not_handled(event)),
        })
    }
}

impl ActivityEvent {
    pub fn decode(event: &ValidatedEvent) -> Result<Self, String> {
        Ok(match event.envelope().event_type.as_str() {
            "activity.PageViewed" => Self::PageViewed(typed(event)?),
            "activity.FeatureUsed" => Self::FeatureUsed(typed(event)?),
            _ => return Err(not_handled(event)),
        })
    }
}
