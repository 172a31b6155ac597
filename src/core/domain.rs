//! The reference domains' event payloads, as typed values. A [`DomainEvent`] only comes out of
//! [`crate::contract::validate`], so code that holds one never re-checks its fields.

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
    Opened { account_id: String, owner: String, currency: String },
    Deposited { account_id: String, amount_minor: AmountMinor, currency: String },
    Withdrawn { account_id: String, amount_minor: AmountMinor, currency: String },
    Closed { account_id: String },
}

impl AccountEvent {
    pub fn account_id(&self) -> &str {
        match self {
            Self::Opened { account_id, .. }
            | Self::Deposited { account_id, .. }
            | Self::Withdrawn { account_id, .. }
            | Self::Closed { account_id } => account_id,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProjectEvent {
    ProjectCreated { project_id: String, name: String },
    TaskCreated { project_id: String, task_id: String, title: String },
    TaskAssigned { project_id: String, task_id: String, assignee: String },
    TaskCompleted { project_id: String, task_id: String },
    TaskReopened { project_id: String, task_id: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActivityEvent {
    PageViewed { user_id: String, path: String, session_id: String },
    FeatureUsed { user_id: String, feature: String },
}
