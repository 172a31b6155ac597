//! # eventline-producers
//!
//! Everything that writes events to Kafka. Events are validated through the catalog and their
//! contracts before anything is produced.
//!
//! # Layout
//! - [`publisher`]: the [`publisher::Publisher`] for Rust services and eventline's own commands.
//! - [`gateway`]: the HTTP gateway (`POST /v1/events`).
//! - [`outbox`]: the transactional outbox relay.
//! - [`input`]: reading and validating NDJSON or batch input as a whole.
//! - [`loadgen`]: synthetic valid traffic for demos and benchmarks.

pub mod gateway;
pub mod input;
pub mod loadgen;
pub mod outbox;
pub mod publisher;
pub mod sealing;
