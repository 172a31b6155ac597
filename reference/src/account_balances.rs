//! The `account_balances` projection: one row per account with its balance in minor units.
//!
//! Load, fold, save: the store locks the rows of every account the batch touches, [`fold`]
//! applies the events to them in memory, in order, and the store writes back the changed rows
//! in one statement. The fold is pure, so the domain rules are tested here without a database.

use std::collections::{BTreeMap, BTreeSet};

use crate::store::account_balances::{self as queries};
use crate::store::account_balances::{AccountBalance, AccountStatus};
use chrono::{DateTime, Utc};
use eventline_core::contract::ValidatedEvent;
use eventline_store::StoreTx;

use crate::events::AccountEvent;
use eventline_consumers::projections::{Applicable, Folded, Handler, Migration};

pub struct AccountBalances;

/// The rows loaded for a batch, and after folding, those that changed.
#[derive(Debug, Clone, Default)]
pub struct AccountsState {
    loaded: Vec<AccountBalance>,
    changed: Vec<AccountBalance>,
}

impl Handler for AccountBalances {
    type Event = AccountEvent;
    type State = AccountsState;
    const NAME: &'static str = "account_balances";
    const TOPICS: &'static [&'static str] = &["accounts.events"];
    const TABLES: &'static [&'static str] = crate::store::account_balances::TABLES;
    const PERSONAL_COLUMNS: &'static [&'static str] = &["account_balances.owner"];
    const MIGRATIONS: &'static [Migration] = &[
        Migration {
            version: 20261128100001,
            description: "account balances",
            sql: include_str!("../migrations/account_balances/20261128100001_account_balances.sql"),
        },
        Migration {
            version: 20261128100011,
            description: "account balances analytics",
            sql: include_str!("../migrations/account_balances/20261128100011_account_balances_analytics.sql"),
        },
    ];
    const HANDLES: &'static [(&'static str, &'static [u32])] = &[
        ("accounts.AccountOpened", &[1]),
        ("accounts.FundsDeposited", &[1, 2]),
        ("accounts.FundsWithdrawn", &[1]),
        ("accounts.AccountClosed", &[1]),
    ];

    fn decode(event: &ValidatedEvent) -> Result<AccountEvent, String> {
        AccountEvent::decode(event)
    }

    async fn load(
        tx: &mut StoreTx,
        events: &[&Applicable<AccountEvent>],
    ) -> Result<AccountsState, eventline_store::Error> {
        let mut ids: Vec<String> = events.iter().map(|a| a.payload.account_id().to_string()).collect();
        ids.sort();
        ids.dedup();
        Ok(AccountsState { loaded: queries::lock_account_balances(tx, &ids).await?, changed: Vec::new() })
    }

    fn fold(state: AccountsState, events: &[&Applicable<AccountEvent>]) -> Folded<AccountsState> {
        // Every event given is an accounts event (HANDLES); the position is kept either way.
        let (positions, changes): (Vec<usize>, Vec<AccountChange<'_>>) = events
            .iter()
            .enumerate()
            .map(|(i, a)| (i, AccountChange { event_id: &a.event.envelope().id, time: a.time, event: &a.payload }))
            .unzip();
        let outcome = fold(state.loaded.clone(), &changes);
        Folded {
            state: AccountsState { loaded: state.loaded, changed: outcome.changed },
            rejected: outcome.rejected.into_iter().map(|(i, reason)| (positions[i], reason)).collect(),
        }
    }

    async fn save(tx: &mut StoreTx, state: AccountsState) -> Result<(), eventline_store::Error> {
        queries::upsert_account_balances(tx, &state.changed).await
    }
}

/// An event to apply, with what the row records about it.
#[derive(Debug, Clone)]
pub struct AccountChange<'a> {
    pub event_id: &'a str,
    pub time: DateTime<Utc>,
    pub event: &'a AccountEvent,
}

/// The rows after the batch (only those that changed) and the index and reason of every event
/// a domain rule refused. A refused event changes nothing.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct FoldOutcome {
    pub changed: Vec<AccountBalance>,
    pub rejected: Vec<(usize, String)>,
}

/// Applies `changes` in order to the `current` rows.
pub fn fold(current: Vec<AccountBalance>, changes: &[AccountChange<'_>]) -> FoldOutcome {
    let mut accounts: BTreeMap<String, AccountBalance> =
        current.into_iter().map(|row| (row.account_id.clone(), row)).collect();
    // A set, not a list: a batch touches thousands of accounts.
    let mut touched: BTreeSet<String> = BTreeSet::new();
    let mut rejected = Vec::new();
    for (index, change) in changes.iter().enumerate() {
        match apply(accounts.get(change.event.account_id()), change) {
            Ok(row) => {
                if !touched.contains(&row.account_id) {
                    touched.insert(row.account_id.clone());
                }
                accounts.insert(row.account_id.clone(), row);
            }
            Err(reason) => rejected.push((index, reason)),
        }
    }
    let changed = touched.into_iter().filter_map(|id| accounts.remove(&id)).collect();
    FoldOutcome { changed, rejected }
}

fn apply(current: Option<&AccountBalance>, change: &AccountChange<'_>) -> Result<AccountBalance, String> {
    let stamp = |mut row: AccountBalance| {
        row.events_applied += 1;
        row.last_event_id = change.event_id.to_string();
        row.last_event_time = change.time;
        row
    };
    match (change.event, current) {
        (AccountEvent::Opened(opened), None) => Ok(AccountBalance {
            account_id: opened.account_id.clone(),
            owner: opened.owner.clone(),
            currency: opened.currency.clone(),
            balance_minor: 0,
            status: AccountStatus::Open,
            events_applied: 1,
            last_event_id: change.event_id.to_string(),
            last_event_time: change.time,
            last_deposit_channel: None,
        }),
        (AccountEvent::Opened(opened), Some(_)) => Err(format!("account {} is already open", opened.account_id)),
        (event, None) => Err(format!("account {} does not exist", event.account_id())),
        (event, Some(row)) if row.status == AccountStatus::Closed => {
            Err(format!("account {} is closed", event.account_id()))
        }
        (AccountEvent::Deposited(deposit), Some(row)) => {
            let mut row = move_funds(row, &deposit.currency, row.balance_minor.checked_add(deposit.amount_minor))?;
            row.last_deposit_channel = Some(deposit.channel.clone());
            Ok(stamp(row))
        }
        // Withdrawals are facts from the ledger upstream: an overdraft is recorded, not refused.
        (AccountEvent::Withdrawn(withdrawal), Some(row)) => {
            move_funds(row, &withdrawal.currency, row.balance_minor.checked_sub(withdrawal.amount_minor)).map(stamp)
        }
        (AccountEvent::Closed(_), Some(row)) => {
            Ok(stamp(AccountBalance { status: AccountStatus::Closed, ..row.clone() }))
        }
    }
}

/// The row with its new balance, unless the currency differs or the balance overflowed (`None`).
fn move_funds(row: &AccountBalance, currency: &str, balance: Option<i64>) -> Result<AccountBalance, String> {
    if row.currency != currency {
        return Err(format!("account {} holds {}, not {currency}", row.account_id, row.currency));
    }
    let balance_minor = balance.ok_or_else(|| format!("balance of account {} would overflow", row.account_id))?;
    Ok(AccountBalance { balance_minor, ..row.clone() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{AccountClosed, AccountOpened, FundsDeposited, FundsWithdrawn};

    fn opened(id: &str) -> AccountEvent {
        AccountEvent::Opened(AccountOpened { account_id: id.into(), owner: "Ada".into(), currency: "EUR".into() })
    }
    fn deposit_in(id: &str, amount: i64, currency: &str, channel: &str) -> AccountEvent {
        AccountEvent::Deposited(FundsDeposited {
            account_id: id.into(),
            amount_minor: amount,
            currency: currency.into(),
            channel: channel.into(),
        })
    }
    fn deposit(id: &str, amount: i64) -> AccountEvent {
        deposit_in(id, amount, "EUR", "online")
    }
    fn withdraw(id: &str, amount: i64) -> AccountEvent {
        AccountEvent::Withdrawn(FundsWithdrawn { account_id: id.into(), amount_minor: amount, currency: "EUR".into() })
    }
    fn closed(id: &str) -> AccountEvent {
        AccountEvent::Closed(AccountClosed { account_id: id.into() })
    }

    fn run(current: Vec<AccountBalance>, events: &[AccountEvent]) -> FoldOutcome {
        let ids: Vec<String> = (0..events.len()).map(|i| format!("e{i}")).collect();
        let changes: Vec<AccountChange<'_>> = events
            .iter()
            .zip(&ids)
            .map(|(event, id)| AccountChange { event_id: id, time: DateTime::UNIX_EPOCH, event })
            .collect();
        fold(current, &changes)
    }

    #[test]
    fn deposits_and_withdrawals_add_up_in_order() {
        let outcome =
            run(vec![], &[opened("a"), deposit("a", 1_000), withdraw("a", 250), opened("b"), withdraw("a", 800)]);
        assert!(outcome.rejected.is_empty(), "{:?}", outcome.rejected);
        let a = &outcome.changed[0];
        assert_eq!((a.account_id.as_str(), a.balance_minor, a.events_applied), ("a", -50, 4));
        assert_eq!(a.last_event_id, "e4");
        assert_eq!(outcome.changed[1].balance_minor, 0);
    }

    #[test]
    fn the_latest_deposit_channel_is_kept() {
        let outcome = run(vec![], &[opened("a"), deposit_in("a", 5, "EUR", "card"), withdraw("a", 1)]);
        assert_eq!(outcome.changed[0].last_deposit_channel.as_deref(), Some("card"));
        let outcome = run(outcome.changed, &[deposit_in("a", 5, "EUR", "unknown")]);
        assert_eq!(outcome.changed[0].last_deposit_channel.as_deref(), Some("unknown"));
    }

    #[test]
    fn existing_rows_are_continued() {
        let first = run(vec![], &[opened("a"), deposit("a", 500)]);
        let second = run(first.changed, &[deposit("a", 7), closed("a")]);
        let a = &second.changed[0];
        assert_eq!((a.balance_minor, a.events_applied, a.status), (507, 4, AccountStatus::Closed));
    }

    #[test]
    fn domain_rules_refuse_events_without_changing_anything() {
        let outcome = run(
            vec![],
            &[
                deposit("ghost", 5),
                opened("a"),
                opened("a"),
                deposit_in("a", 5, "USD", "card"),
                deposit("a", i64::MAX),
                deposit("a", 1),
                closed("a"),
                deposit("a", 5),
            ],
        );
        assert_eq!(
            outcome.rejected,
            vec![
                (0, "account ghost does not exist".to_string()),
                (2, "account a is already open".to_string()),
                (3, "account a holds EUR, not USD".to_string()),
                (5, "balance of account a would overflow".to_string()),
                (7, "account a is closed".to_string()),
            ]
        );
        let a = &outcome.changed[0];
        assert_eq!((a.balance_minor, a.events_applied), (i64::MAX, 3));
    }
}
