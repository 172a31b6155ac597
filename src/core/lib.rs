//! # eventline-core
//!
//! What every other eventline crate shares, and nothing that talks to the outside world:
//! no SQL, no Kafka client.
//!
//! # Layout
//! - [`config`]: layered settings (defaults, TOML file, environment), validated once, secrets redacted.
//! - [`telemetry`]: the tracing subscriber (`RUST_LOG`, human or JSON lines on stderr).
//! - [`envelope`]: the CloudEvents 1.0 envelope in the JSON event format (structured, batch).
//! - [`binding`]: the Kafka and HTTP protocol bindings (structured and binary content modes).
//! - [`registry`]: the schema registry from `schemas/`: catalog, JSON Schemas, upcasters; the
//!   only way to a [`contract::ValidatedEvent`].
//! - [`catalog`]: the catalog file (domains, topics, key fields, versions).
//! - [`upcast`]: declarative upcasters between versions.
//! - [`check`]: what `eventline schemas check` verifies beyond loading.
//! - [`classification`]: which data fields are about a person (`x-classification`).
//! - [`cipher`]: personal fields sealed per data subject (AES-256-GCM), and the data keys.
//! - [`contract`]: the validated event and every way validation fails.
//! - [`token`]: consistency tokens (the Kafka positions a publish reached).

pub mod binding;
pub mod catalog;
pub mod check;
pub mod cipher;
pub mod classification;
pub mod config;
pub mod contract;
pub mod envelope;
pub mod registry;
pub mod telemetry;
pub mod token;
pub mod upcast;
