//! # eventline-core
//!
//! What every other eventline crate shares, and nothing that talks to the outside world:
//! no SQL, no Kafka client.
//!
//! # Layout
//! - [`config`]: layered settings (defaults, TOML file, environment), validated once, secrets redacted.
//! - [`telemetry`]: the tracing subscriber (`RUST_LOG`, human or JSON lines on stderr).
//! - [`envelope`]: the CloudEvents 1.0 structured-mode envelope.
//! - [`catalog`]: the event catalog from `schemas/catalog.json` (type → topic, key field, versions).
//! - [`contract`]: validation of an envelope against the catalog and its data contract.
//! - [`domain`]: the typed payloads of the reference domains.

pub mod catalog;
pub mod config;
pub mod contract;
pub mod domain;
pub mod envelope;
pub mod telemetry;
