//! # eventline-consumers
//!
//! Everything that reads events from Kafka into PostgreSQL. The projections' domain rules live
//! here as pure folds; the store crate writes their rows and the Kafka crate reads their topics.
//!
//! # Layout
//! - [`runtime`]: the worker: batches, one transaction per batch with its offsets, fencing,
//!   idempotency, dead letters and parked keys, retries, graceful stop.
//! - [`projections`]: the [`projections::Handler`] contract and the shipped projections, one
//!   module each.
//! - [`declarative`]: projections written as a folder of SQL (manifest, migrations, `apply`).
//! - [`dlq`]: operators' retry, skip and purge of dead letters.
//! - [`health`]: whether this process's workers have their partition assignments.
//! - `spans`: a batch's tracing spans, continuing each recorded event's trace from the gateway.
//! - [`rebuild`]: rebuilding a projection beside the live one, cutover, rollback, cleanup, and
//!   replaying it in place.

pub mod declarative;
pub mod dlq;
pub mod health;
pub mod projections;
pub mod rebuild;
pub mod runtime;
mod spans;

pub use projections::Projection;
