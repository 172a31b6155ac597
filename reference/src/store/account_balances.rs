//! Rows of the `account_balances` projection.

use chrono::{DateTime, Utc};

use eventline_store::{Error, Store, StoreTx};

/// The tables this projection owns, in the order readers lock them (a rebuild moves them).
pub const TABLES: &[&str] = &["account_balances"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountStatus {
    Open,
    Closed,
}

impl AccountStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Closed => "closed",
        }
    }

    fn from_column(value: &str) -> Self {
        // The column's CHECK constraint allows only these two.
        if value == "closed" {
            Self::Closed
        } else {
            Self::Open
        }
    }
}

/// One account's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountBalance {
    pub account_id: String,
    pub owner: String,
    pub currency: String,
    /// Integer minor units (cents).
    pub balance_minor: i64,
    pub status: AccountStatus,
    pub events_applied: i64,
    pub last_event_id: String,
    pub last_event_time: DateTime<Utc>,
    /// Channel of the latest deposit (`unknown` for deposits published before it existed).
    pub last_deposit_channel: Option<String>,
}

struct Row {
    account_id: String,
    owner: String,
    currency: String,
    balance_minor: i64,
    status: String,
    events_applied: i64,
    last_event_id: String,
    last_event_time: DateTime<Utc>,
    last_deposit_channel: Option<String>,
}

impl From<Row> for AccountBalance {
    fn from(row: Row) -> Self {
        Self {
            account_id: row.account_id,
            owner: row.owner,
            currency: row.currency,
            balance_minor: row.balance_minor,
            status: AccountStatus::from_column(&row.status),
            events_applied: row.events_applied,
            last_event_id: row.last_event_id,
            last_event_time: row.last_event_time,
            last_deposit_channel: row.last_deposit_channel,
        }
    }
}

/// The current rows of these accounts, locked until the transaction ends.
pub async fn lock_account_balances(tx: &mut StoreTx, account_ids: &[String]) -> Result<Vec<AccountBalance>, Error> {
    let rows = sqlx::query_as!(
        Row,
        "SELECT account_id, owner, currency, balance_minor, status, events_applied, last_event_id, last_event_time,
                last_deposit_channel
         FROM account_balances WHERE account_id = ANY($1) ORDER BY account_id FOR UPDATE",
        account_ids
    )
    .fetch_all(tx.connection())
    .await?;
    Ok(rows.into_iter().map(AccountBalance::from).collect())
}

/// Writes these rows in one statement, inserting new accounts and replacing existing ones.
pub async fn upsert_account_balances(tx: &mut StoreTx, rows: &[AccountBalance]) -> Result<(), Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let ids: Vec<String> = rows.iter().map(|r| r.account_id.clone()).collect();
    let owners: Vec<String> = rows.iter().map(|r| r.owner.clone()).collect();
    let currencies: Vec<String> = rows.iter().map(|r| r.currency.clone()).collect();
    let balances: Vec<i64> = rows.iter().map(|r| r.balance_minor).collect();
    let statuses: Vec<String> = rows.iter().map(|r| r.status.as_str().to_string()).collect();
    let applied: Vec<i64> = rows.iter().map(|r| r.events_applied).collect();
    let event_ids: Vec<String> = rows.iter().map(|r| r.last_event_id.clone()).collect();
    let times: Vec<DateTime<Utc>> = rows.iter().map(|r| r.last_event_time).collect();
    let channels: Vec<Option<String>> = rows.iter().map(|r| r.last_deposit_channel.clone()).collect();
    sqlx::query!(
        "INSERT INTO account_balances
           (account_id, owner, currency, balance_minor, status, events_applied, last_event_id, last_event_time,
            last_deposit_channel, updated_at)
         SELECT *, now() FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[], $5::text[], $6::int8[], $7::text[],
                                     $8::timestamptz[], $9::text[])
         ON CONFLICT (account_id) DO UPDATE SET
           owner = EXCLUDED.owner,
           currency = EXCLUDED.currency,
           balance_minor = EXCLUDED.balance_minor,
           status = EXCLUDED.status,
           events_applied = EXCLUDED.events_applied,
           last_event_id = EXCLUDED.last_event_id,
           last_event_time = EXCLUDED.last_event_time,
           last_deposit_channel = EXCLUDED.last_deposit_channel,
           updated_at = now()",
        &ids,
        &owners,
        &currencies,
        &balances,
        &statuses,
        &applied,
        &event_ids,
        &times,
        &channels as &[Option<String>],
    )
    .execute(tx.connection())
    .await?;
    Ok(())
}

/// Every account, ordered by id.
pub async fn account_balances(store: &Store) -> Result<Vec<AccountBalance>, Error> {
    let rows = sqlx::query_as!(
        Row,
        "SELECT account_id, owner, currency, balance_minor, status, events_applied, last_event_id, last_event_time,
                last_deposit_channel
         FROM account_balances ORDER BY account_id"
    )
    .fetch_all(store.pool())
    .await?;
    Ok(rows.into_iter().map(AccountBalance::from).collect())
}

/// An account as readers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountView {
    pub account_id: String,
    pub owner: String,
    pub currency: String,
    pub balance_minor: i64,
    pub status: String,
    pub events_applied: i64,
    pub last_event_id: String,
    pub last_event_time: DateTime<Utc>,
    pub last_deposit_channel: Option<String>,
    pub updated_at: DateTime<Utc>,
}

pub async fn account(store: &Store, account_id: &str) -> Result<Option<AccountView>, Error> {
    Ok(sqlx::query_as!(
        AccountView,
        "SELECT account_id, owner, currency, balance_minor, status, events_applied, last_event_id, last_event_time,
                last_deposit_channel, updated_at
         FROM account_balances WHERE account_id = $1",
        account_id
    )
    .fetch_optional(store.pool())
    .await?)
}

/// A page of accounts in id order after `after`: of `owner` when given (in the column, for owners
/// in clear), and among `accounts` when given.
pub async fn accounts_page(
    store: &Store,
    owner: Option<&str>,
    accounts: Option<&[String]>,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<AccountView>, Error> {
    Ok(sqlx::query_as!(
        AccountView,
        "SELECT account_id, owner, currency, balance_minor, status, events_applied, last_event_id, last_event_time,
                last_deposit_channel, updated_at
         FROM account_balances
         WHERE ($1::text IS NULL OR owner = $1) AND ($2::text IS NULL OR account_id > $2)
               AND ($4::text[] IS NULL OR account_id = ANY($4))
         ORDER BY account_id LIMIT $3",
        owner,
        after,
        limit,
        accounts
    )
    .fetch_all(store.pool())
    .await?)
}
