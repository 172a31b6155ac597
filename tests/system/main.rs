//! System tests: the real `eventline` binary against a real PostgreSQL and a real Kafka-API
//! broker (Apache Kafka in development and CI; `scripts/services.sh up` starts both). A test whose
//! services are missing fails; none skips itself.

mod analytics;
mod architecture;
mod audit;
mod authentication;
mod blind_index;
mod broker_outage;
mod checkpoints;
mod cli;
mod commands;
mod compose;
mod config_errors;
mod conformance;
mod database_outage;
mod declarative;
mod dlq;
mod end_to_end;
mod events;
mod gateway;
mod helpers;
mod issuer;
mod kafka_binding;
mod key_store_role;
mod metrics;
mod operator;
mod outbox;
mod personal_data;
mod private_services;
mod publish_errors;
mod publisher;
mod query;
mod rebuild;
mod restart;
mod runtime;
mod scale_out;
mod scenario;
mod schemas;
mod sealing;
mod secrets;
mod services;
mod subject_keys;
mod tail;
mod traces;
mod transport_security;
mod tutorial;
