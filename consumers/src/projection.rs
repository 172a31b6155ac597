//! The projections eventline ships, and how each applies a batch inside the worker's transaction.

use chrono::{DateTime, Utc};
use eventline_core::check::Problem;
use eventline_core::contract::ValidatedEvent;
use eventline_core::domain::DomainEvent;
use eventline_core::registry::Registry;
use eventline_store::StoreTx;

use crate::account_balances::{self, AccountChange};

/// A projection: a read model in PostgreSQL kept by consumer group `eventline.<name>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Projection {
    AccountBalances,
}

/// An event ready to apply, with the time the projection records for it.
#[derive(Debug, Clone)]
pub struct Applicable {
    pub event: ValidatedEvent,
    /// The event's `time`, or the Kafka record's timestamp when it has none.
    pub time: DateTime<Utc>,
}

impl Projection {
    pub const ALL: &'static [Projection] = &[Projection::AccountBalances];

    pub fn name(self) -> &'static str {
        match self {
            Self::AccountBalances => "account_balances",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|p| p.name() == name)
    }

    /// The catalog topics it reads (before any namespace prefix).
    pub fn topics(self) -> &'static [&'static str] {
        match self {
            Self::AccountBalances => &["accounts.events"],
        }
    }

    /// Every event type and data version it handles. It sees each at the type's current version
    /// (older ones are upcast), but a new version is only accepted once the projection has been
    /// reviewed against it and lists it here; `eventline schemas check` holds it to that.
    pub fn declared(self) -> &'static [(&'static str, &'static [u32])] {
        match self {
            Self::AccountBalances => &[
                ("accounts.AccountOpened", &[1]),
                ("accounts.FundsDeposited", &[1, 2]),
                ("accounts.FundsWithdrawn", &[1]),
                ("accounts.AccountClosed", &[1]),
            ],
        }
    }

    /// Whether it applies events of this type; others on its topics are passed over.
    pub fn handles(self, event_type: &str) -> bool {
        self.declared().iter().any(|(t, _)| *t == event_type)
    }

    /// Registered type versions on this projection's topics that it does not declare.
    pub fn undeclared(self, registry: &Registry) -> Vec<Problem> {
        let mut problems = Vec::new();
        for contract in registry.contracts().filter(|c| self.topics().contains(&c.topic.as_str())) {
            let declared = self.declared().iter().find(|(t, _)| *t == contract.event_type).map_or(&[][..], |(_, v)| *v);
            for version in contract.versions.values().filter(|v| !declared.contains(&v.version)) {
                problems.push(Problem {
                    path: registry.shown_path(&version.path),
                    reason: format!(
                        "projection {} reads {} but does not declare that it handles {} v{}",
                        self.name(),
                        contract.topic,
                        contract.event_type,
                        version.version
                    ),
                });
            }
        }
        problems
    }

    /// Applies `events` (in offset order per key) inside `tx`. Returns the index and reason of
    /// each event a domain rule refused; those change nothing and become dead letters.
    pub async fn apply(
        self,
        tx: &mut StoreTx,
        events: &[Applicable],
    ) -> Result<Vec<(usize, String)>, eventline_store::Error> {
        match self {
            Self::AccountBalances => {
                let (positions, changes): (Vec<usize>, Vec<AccountChange<'_>>) = events
                    .iter()
                    .enumerate()
                    .filter_map(|(index, a)| match a.event.payload() {
                        DomainEvent::Accounts(event) => {
                            Some((index, AccountChange { event_id: &a.event.envelope().id, time: a.time, event }))
                        }
                        _ => None,
                    })
                    .unzip();
                let mut ids: Vec<String> = changes.iter().map(|c| c.event.account_id().to_string()).collect();
                ids.sort();
                ids.dedup();
                let current = tx.lock_account_balances(&ids).await?;
                let outcome = account_balances::fold(current, &changes);
                tx.upsert_account_balances(&outcome.changed).await?;
                Ok(outcome.rejected.into_iter().map(|(i, reason)| (positions[i], reason)).collect())
            }
        }
    }
}
