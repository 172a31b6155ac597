//! # eventline-kafka
//!
//! The Kafka layer: the only crate that touches rdkafka. It knows topics, partitions, offsets
//! and bytes; it knows nothing of events, projections or SQL.
//!
//! # Layout
//! - [`admin`]: reachability checks, topic creation and deletion, watermarks.
//! - [`producer`]: the idempotent, ordered producer.
//! - [`consumer`]: the group consumer that starts partitions at caller-stored offsets.
//! - [`groups`]: consumer group descriptions (which live member holds which partition).
//! - [`Inspector`]: one kept connection for repeated status reads (watermarks, record times,
//!   groups).
//! - [`reader`]: reading a topic from a chosen position, outside any group (`eventline tail`).

pub mod admin;
mod client;
pub mod consumer;
mod error;
pub mod groups;
mod inspector;
pub mod producer;
pub mod reader;

pub use error::Error;
pub use inspector::Inspector;
