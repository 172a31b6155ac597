//! A projection of the user's own, in Rust: units received per SKU from the tutorial's
//! inventory events (`examples/inventory/schemas`). It is a [`Handler`] like the reference
//! projections, with its tables and migrations declared here, and it runs inside eventline's
//! runtime with every guarantee (offsets in its transaction, per-key order, dead letters,
//! rebuilds) through the binary in `main.rs`.

use std::collections::BTreeMap;

use eventline_consumers::projections::{Applicable, Folded, Handler, Migration};
use eventline_core::contract::ValidatedEvent;
use eventline_store::sqlx;
use eventline_store::StoreTx;
use serde::Deserialize;

/// `inventory.StockReceived` at its current version, as this projection reads it.
#[derive(Debug, Clone, Deserialize)]
pub struct StockReceived {
    pub sku: String,
    pub quantity: i64,
}

pub struct ReceivedTotals;

impl Handler for ReceivedTotals {
    /// Per SKU: units and receipts this batch adds.
    type State = BTreeMap<String, (i64, i64)>;
    type Event = StockReceived;

    const NAME: &'static str = "received_totals";
    const TOPICS: &'static [&'static str] = &["inventory.events"];
    const TABLES: &'static [&'static str] = &["received_totals"];
    const MIGRATIONS: &'static [Migration] = &[Migration {
        version: 1,
        description: "received totals",
        sql: include_str!("../migrations/1_received_totals.sql"),
    }];
    const HANDLES: &'static [(&'static str, &'static [u32])] = &[("inventory.StockReceived", &[1])];
    const IGNORES: &'static [&'static str] = &["inventory.ItemShipped"];

    fn decode(event: &ValidatedEvent) -> Result<StockReceived, String> {
        StockReceived::deserialize(event.data()).map_err(|error| format!("not a StockReceived: {error}"))
    }

    async fn load(_: &mut StoreTx, _: &[&Applicable<StockReceived>]) -> Result<Self::State, eventline_store::Error> {
        // Increments only: nothing to read first.
        Ok(BTreeMap::new())
    }

    fn fold(mut state: Self::State, events: &[&Applicable<StockReceived>]) -> Folded<Self::State> {
        for event in events {
            let totals = state.entry(event.payload.sku.clone()).or_default();
            totals.0 += event.payload.quantity;
            totals.1 += 1;
        }
        Folded { state, rejected: Vec::new() }
    }

    async fn save(tx: &mut StoreTx, state: Self::State) -> Result<(), eventline_store::Error> {
        let skus: Vec<String> = state.keys().cloned().collect();
        let units: Vec<i64> = state.values().map(|(u, _)| *u).collect();
        let receipts: Vec<i64> = state.values().map(|(_, r)| *r).collect();
        sqlx::query(
            "INSERT INTO received_totals AS t (sku, units, receipts)
             SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bigint[])
             ON CONFLICT (sku) DO UPDATE SET units = t.units + excluded.units,
                 receipts = t.receipts + excluded.receipts, updated_at = now()",
        )
        .bind(skus)
        .bind(units)
        .bind(receipts)
        .execute(tx.connection())
        .await?;
        Ok(())
    }
}
