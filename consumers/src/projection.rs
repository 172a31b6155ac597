//! The projections eventline ships, and how each applies a batch inside the worker's transaction.

use chrono::{DateTime, Utc};
use eventline_core::contract::ValidatedEvent;
use eventline_core::domain::DomainEvent;
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

    /// Whether it applies this event; others on its topics are passed over.
    pub fn handles(self, event: &DomainEvent) -> bool {
        match self {
            Self::AccountBalances => matches!(event, DomainEvent::Accounts(_)),
        }
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
