//! # eventline-consumers
//!
//! Everything that reads events from Kafka into PostgreSQL. The projections' domain rules live
//! here as pure folds; the store crate writes their rows and the Kafka crate reads their topics.
//!
//! # Layout
//! - [`worker`]: the runtime loop: batches, one transaction per batch with its offsets, fencing,
//!   retries, graceful stop.
//! - [`projection`]: the shipped projections and how each applies a batch.
//! - [`account_balances`]: the `account_balances` fold.

pub mod account_balances;
pub mod projection;
pub mod worker;

pub use projection::Projection;
