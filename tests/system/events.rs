//! Accounts events as tests write them: structured-mode CloudEvents keyed by the account.

use serde_json::{json, Value};

pub fn account_event(id: &str, event_type: &str, account: &str, data: Value) -> Value {
    let mut data = data;
    data["account_id"] = json!(account);
    json!({"specversion": "1.0", "id": id, "source": "/t", "type": event_type, "subject": account, "data": data})
}

pub fn opened(id: &str, account: &str) -> Value {
    account_event(id, "accounts.AccountOpened", account, json!({"owner": "o", "currency": "EUR"}))
}

pub fn deposit(id: &str, account: &str, amount: i64) -> Value {
    account_event(id, "accounts.FundsDeposited", account, json!({"amount_minor": amount, "currency": "EUR"}))
}

pub fn withdrawal(id: &str, account: &str, amount: i64) -> Value {
    account_event(id, "accounts.FundsWithdrawn", account, json!({"amount_minor": amount, "currency": "EUR"}))
}
