//! The outbox relay: publishes the rows upstream services commit to `eventline_outbox` in their
//! own database, then marks them published.
//!
//! Guarantees: at-least-once to Kafka (a relay killed after producing but before marking leaves
//! its rows to be produced again; event ids make that harmless downstream); each key's rows in
//! insertion order, also with several relays running (a row waits while an earlier row of its key
//! is held by another relay); nothing from a rolled-back transaction, which never becomes visible.
//! A row that fails validation is marked failed and its key's later rows wait behind it.
//!
//! With a key-encryption key, a row's personal data still in clear is sealed before it is
//! produced, and the row kept afterwards holds the sealed event; fields a writer already sealed
//! go out as they are. Clear personal data about an erased subject is refused like an invalid row.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use eventline_core::contract::{ContractError, ValidatedEvent};
use eventline_core::envelope::CloudEvent;
use eventline_core::registry::Registry;
use eventline_store::availability::{FIRST_RETRY_DELAY, MAX_RETRY_DELAY};
use eventline_store::subject_keys::KeyRingError;
use eventline_store::Store;
use tokio_util::sync::CancellationToken;

use crate::publisher::Publisher;
use crate::sealing::{SealError, Sealer};

/// Why events were not written to the outbox (none of them was).
#[derive(Debug, thiserror::Error)]
pub enum OutboxWriteError {
    /// An event failed validation (with its index in the input).
    #[error("event {index}: {error}")]
    Invalid { index: usize, error: ContractError },
    /// Personal data could not be sealed: an erased subject, or the key store.
    #[error(transparent)]
    Sealing(#[from] SealError),
    #[error(transparent)]
    Store(#[from] eventline_store::Error),
}

/// Writes events to the outbox for Rust services, in their own transaction: validated through
/// the registry, and with a [`Sealer`] their personal data sealed before the row is written, so
/// the outbox never holds it in clear. Rows written with SQL directly are sealed by the relay.
pub struct OutboxWriter {
    registry: Arc<Registry>,
    sealer: Option<Sealer>,
}

impl OutboxWriter {
    pub fn new(registry: Arc<Registry>) -> Self {
        Self { registry, sealer: None }
    }

    /// Seals the personal fields of what is written.
    pub fn sealing(mut self, sealer: Sealer) -> Self {
        self.sealer = Some(sealer);
        self
    }

    /// Validates every event, seals their personal data, and writes them on `connection` (pass
    /// the transaction of the business change they record); one refused: none is written.
    pub async fn write(
        &self,
        connection: &mut eventline_store::sqlx::PgConnection,
        events: Vec<CloudEvent>,
    ) -> Result<(), OutboxWriteError> {
        let mut validated =
            self.registry.validate_all(events).map_err(|(index, error)| OutboxWriteError::Invalid { index, error })?;
        if let Some(sealer) = &self.sealer {
            validated = sealer.seal_all(validated).await?;
        }
        let rows: Vec<serde_json::Value> = validated.iter().map(|event| event.envelope().to_value()).collect();
        eventline_store::outbox::write_outbox(connection, &rows).await?;
        Ok(())
    }
}

/// Rows claimed per transaction.
const CLAIM: i64 = 500;
/// How often the relay looks even without a notification.
const POLL_EVERY: Duration = Duration::from_secs(1);
/// How often the backlog gauges are read.
const BACKLOG_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Store(#[from] eventline_store::Error),
    #[error(transparent)]
    Kafka(#[from] eventline_kafka::Error),
    #[error("cannot read data subjects' keys: {0}")]
    Keys(#[from] KeyRingError),
}

/// What a relay did before it stopped.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RelayReport {
    pub published: u64,
    pub failed: u64,
}

/// Relays until `shutdown`. Database and broker failures are retried with capped backoff.
pub async fn run(
    registry: Arc<Registry>,
    publisher: &Publisher,
    sealer: Option<&Sealer>,
    store: &Store,
    shutdown: CancellationToken,
) -> Result<RelayReport, RelayError> {
    let mut listener = store.outbox_listener().await?;
    tokio::spawn(report_backlog(store.clone(), shutdown.clone()));
    let mut report = RelayReport::default();
    let mut delay = FIRST_RETRY_DELAY;
    tracing::info!("Outbox relay started.");
    while !shutdown.is_cancelled() {
        match relay_once(&registry, publisher, sealer, store, &mut report).await {
            Ok(claimed) => {
                delay = FIRST_RETRY_DELAY;
                if claimed as i64 >= CLAIM {
                    continue;
                }
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    woken = listener.wait(POLL_EVERY) => {
                        if let Err(error) = woken {
                            tracing::warn!(%error, "Outbox notifications interrupted; polling meanwhile.");
                            tokio::time::sleep(POLL_EVERY).await;
                        }
                    }
                }
            }
            Err(RelayError::Store(error)) if !error.is_transient() => return Err(error.into()),
            Err(error @ RelayError::Keys(KeyRingError::Unwrap { .. })) => return Err(error),
            Err(error) => {
                tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "Outbox relay round failed; nothing was marked published, retrying.");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(MAX_RETRY_DELAY);
            }
        }
    }
    tracing::info!(published = report.published, failed = report.failed, "Outbox relay stopped.");
    Ok(report)
}

/// Sets the backlog gauges every few seconds until `shutdown`; a failed reading keeps the last.
async fn report_backlog(store: Store, shutdown: CancellationToken) {
    let mut every = tokio::time::interval(BACKLOG_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = every.tick() => match store.outbox_pending().await {
                Ok(backlog) => {
                    metrics::gauge!("eventline_outbox_unpublished_rows").set(backlog.unpublished as f64);
                    metrics::gauge!("eventline_outbox_failed_rows").set(backlog.failed as f64);
                    metrics::gauge!("eventline_outbox_oldest_unpublished_seconds").set(backlog.oldest_seconds);
                }
                Err(error) => tracing::debug!(%error, "Cannot read the outbox backlog; will try again."),
            },
        }
    }
}

/// One round: claim, validate, seal, produce, mark, commit. Returns how many rows were claimed.
async fn relay_once(
    registry: &Registry,
    publisher: &Publisher,
    sealer: Option<&Sealer>,
    store: &Store,
    report: &mut RelayReport,
) -> Result<usize, RelayError> {
    let mut tx = store.begin().await?;
    let rows = tx.claim_outbox(CLAIM).await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let claimed = rows.len();
    let checked: Vec<Result<ValidatedEvent, String>> = rows
        .iter()
        .map(|row| {
            registry
                .validate_unpublished_slice(row.event.as_bytes())
                .map_err(|error| format!("{error} [{} at {}]", error.kind(), error.pointer()))
        })
        .collect();
    let checked = match sealer {
        Some(sealer) => seal(sealer, checked).await?,
        None => checked.into_iter().map(|event| event.map(|event| (event, false))).collect(),
    };
    let mut blocked: HashSet<Option<String>> = HashSet::new();
    let mut ids = Vec::with_capacity(claimed);
    let mut events: Vec<ValidatedEvent> = Vec::with_capacity(claimed);
    let mut resealed = Vec::new();
    let mut failed = 0;
    for (row, checked) in rows.into_iter().zip(checked) {
        if blocked.contains(&row.event_key) {
            continue;
        }
        match checked {
            Ok((event, sealed_here)) => {
                if sealed_here {
                    resealed.push((row.id, event.envelope().to_value()));
                }
                ids.push(row.id);
                events.push(event);
            }
            Err(reason) => {
                tracing::error!(id = row.id, key = ?row.event_key, %reason, "Outbox row refused; its key's later rows wait until it is fixed or deleted.");
                tx.mark_outbox_failed(row.id, &reason).await?;
                if row.event_key.is_some() {
                    blocked.insert(row.event_key);
                }
                failed += 1;
            }
        }
    }
    // All or nothing: marking only some would let a later row of a key overtake an earlier one.
    for result in publisher.publish_all(&events).await {
        result?;
    }
    tx.mark_outbox_published(&ids).await?;
    // A row kept after publishing holds what was published: its personal data sealed.
    tx.replace_outbox_events(&resealed).await?;
    tx.commit().await?;
    report.published += ids.len() as u64;
    report.failed += failed;
    metrics::counter!("eventline_outbox_published_total").increment(ids.len() as u64);
    metrics::counter!("eventline_outbox_refused_total").increment(failed);
    tracing::debug!(published = ids.len(), failed, "Outbox rows published.");
    Ok(claimed)
}

/// The valid events with their personal data in clear sealed (and `true` when there was any), in
/// one round trip to the key store; clear personal data about an erased subject is refused.
async fn seal(
    sealer: &Sealer,
    checked: Vec<Result<ValidatedEvent, String>>,
) -> Result<Vec<Result<(ValidatedEvent, bool), String>>, RelayError> {
    let mut valid = Vec::new();
    let mut slots = Vec::with_capacity(checked.len());
    for event in checked {
        slots.push(event.map(|event| valid.push(event)));
    }
    let mut sealed = sealer.seal_unpublished(valid).await?.into_iter();
    Ok(slots
        .into_iter()
        .map(|slot| {
            slot?;
            sealed.next().expect("one sealing per valid event").map_err(|subject| {
                format!("its data subject `{subject}` was erased; personal data about it is refused: take the personal data out of the row, or delete it [subject-erased]")
            })
        })
        .collect())
}
