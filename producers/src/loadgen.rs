//! Synthetic, valid traffic for demos and benchmarks.

use std::sync::Arc;

use chrono::Utc;
use eventline_core::contract::ValidatedEvent;
use eventline_core::registry::Registry;
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
        let envelope =
            eventline_core::envelope::CloudEvent::from_value(value).expect("the generator writes valid envelopes");
        Some(self.registry.validate(envelope).expect("the generator writes valid events"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_open_first_and_never_overdraw() {
        let registry = Arc::new(Registry::embedded().unwrap());
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
