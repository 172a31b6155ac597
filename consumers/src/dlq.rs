//! Operator actions on dead letters: apply a key's parked events again after a fix (`retry`),
//! drop one event with a reason and go on (`skip`), forget some for good (`purge`). Each runs in
//! one transaction with its audit entry, under a lock on the parked key that the worker's
//! batches respect, so a key's events still apply in offset order.

use chrono::{DateTime, Utc};
use eventline_core::registry::Registry;
use eventline_store::audit::NewAuditEntry;
use eventline_store::dead_letters::{DeadLetter, DeadLetterFilter, DeadRecord};
use eventline_store::runtime::ReadEvent;
use eventline_store::{Store, StoreTx};
use serde::Serialize;
use serde_json::json;

use crate::projections::{Applicable, Apply, ApplyError};
use crate::runtime;

#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    #[error("projection {projection} has no dead letter {id}")]
    NoSuchLetter { projection: String, id: i64 },
    #[error("projection {projection} has no dead letters for key {key}")]
    NoLettersForKey { projection: String, key: String },
    #[error("dead letter {id} is not among the dead letters of key {key} in {projection}")]
    NotInKey { projection: String, key: String, id: i64 },
    #[error(transparent)]
    Store(#[from] eventline_store::Error),
    #[error("{0}")]
    Definition(String),
}

impl From<ApplyError> for DlqError {
    fn from(error: ApplyError) -> Self {
        match error {
            ApplyError::Store(error) => Self::Store(error),
            definition @ ApplyError::Definition { .. } => Self::Definition(definition.to_string()),
        }
    }
}

/// Which dead letters an action is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Every dead letter of a key, in offset order.
    Key(String),
    /// One dead letter; when it has a key, that key's letters (they apply in order).
    Id(i64),
}

/// What a retry or skip did, by dead letter id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RetryReport {
    pub key: Option<String>,
    /// The letter skipped (with `skip`).
    pub skipped: Option<i64>,
    /// Applied to the projection now, in order.
    pub applied: Vec<i64>,
    /// Copies of events the projection had already applied: dropped.
    pub duplicates: Vec<i64>,
    /// Types the projection does not apply (any more): dropped.
    pub passed_over: Vec<i64>,
    /// Still dead, in order; the first one's reason says why.
    pub still_dead: Vec<i64>,
    pub reason: Option<String>,
    /// Whether the key was unparked: its later events apply again as they come.
    pub unparked: bool,
}

/// Why a letter still cannot apply, and which it is.
struct Stuck {
    index: usize,
    kind: &'static str,
    reason: String,
}

/// Applies the dead letters of `target` again, in offset order, up to the first that still
/// fails; with `skip`, first drops that letter (recording `reason`). The key is unparked when
/// none is left.
pub(crate) async fn retry<A: Apply>(
    applier: &A,
    store: &Store,
    registry: &Registry,
    target: &Target,
    skip: Option<(i64, &str)>,
    actor: &str,
) -> Result<RetryReport, DlqError> {
    let projection = applier.name();
    let mut tx = store.begin().await?;
    tx.enter_projection(applier.tables()).await?;
    let (key, id) = match target {
        Target::Key(key) => (Some(key.clone()), 0),
        Target::Id(id) => {
            let found = tx.lock_dead_records(projection, None, *id).await?;
            let letter =
                found.first().ok_or_else(|| DlqError::NoSuchLetter { projection: projection.to_string(), id: *id })?;
            (letter.letter.record_key.clone(), *id)
        }
    };
    if let Some(key) = &key {
        // A worker's batch holding this key waits for us, or we for it.
        tx.lock_parked_key(projection, key).await?;
    }
    let mut letters = tx.lock_dead_records(projection, key.as_deref(), id).await?;
    if letters.is_empty() {
        let key = key.unwrap_or_default();
        return Err(DlqError::NoLettersForKey { projection: projection.to_string(), key });
    }
    let mut report = RetryReport { key: key.clone(), ..RetryReport::default() };
    let mut skipped_letter = None;
    if let Some((skip_id, _)) = skip {
        let position = letters.iter().position(|l| l.letter.id == skip_id).ok_or_else(|| DlqError::NotInKey {
            projection: projection.to_string(),
            key: key.clone().unwrap_or_default(),
            id: skip_id,
        })?;
        let letter = letters.remove(position);
        tx.delete_dead_letters(&[skip_id]).await?;
        report.skipped = Some(skip_id);
        skipped_letter = Some(letter);
    }

    // Decode in order; the first that still cannot be decoded stops the rest behind it.
    let mut decoded: Vec<(usize, Applicable<A::Event>)> = Vec::new();
    let mut stuck: Option<Stuck> = None;
    for (index, letter) in letters.iter().enumerate() {
        match decode(applier, registry, letter) {
            Ok(Some(applicable)) => decoded.push((index, applicable)),
            Ok(None) => report.passed_over.push(letter.letter.id),
            Err((kind, reason)) => {
                stuck = Some(Stuck { index, kind, reason });
                break;
            }
        }
    }

    // Copies of events applied meanwhile (or applied by another generation) are dropped.
    let read: Vec<ReadEvent<'_>> = decoded
        .iter()
        .map(|(index, a)| ReadEvent {
            event_id: &a.event.envelope().id,
            topic: &letters[*index].letter.topic,
            partition: letters[*index].letter.partition,
            offset: letters[*index].letter.offset,
        })
        .collect();
    let claimed_now = tx.claim_event_ids(projection, &read).await?;
    drop(read);
    let mut active: Vec<(usize, Applicable<A::Event>)> = Vec::new();
    for ((index, applicable), now) in decoded.into_iter().zip(claimed_now) {
        if now {
            active.push((index, applicable));
        } else {
            report.duplicates.push(letters[index].letter.id);
        }
    }

    // A refused event stops its key again: apply only what comes before it.
    while !active.is_empty() {
        let rejected = {
            let events: Vec<&Applicable<A::Event>> = active.iter().map(|(_, a)| a).collect();
            applier.apply(&mut tx, &events).await?
        };
        let Some((position, reason)) = rejected.into_iter().min_by_key(|(p, _)| *p) else { break };
        let stops_at = active[position].0;
        if stuck.as_ref().is_none_or(|s| stops_at < s.index) {
            stuck = Some(Stuck { index: stops_at, kind: "rejected", reason });
        }
        let unapplied: Vec<&str> = active[position..].iter().map(|(_, a)| a.event.envelope().id.as_str()).collect();
        tx.release_event_ids(projection, &unapplied).await?;
        active.truncate(position);
    }
    report.applied = active.iter().map(|(index, _)| letters[*index].letter.id).collect();
    let stuck_at = stuck.as_ref().map_or(letters.len(), |s| s.index);
    // Only letters before the stuck one are resolved; those after it wait behind it.
    report.duplicates.retain(|id| letters[..stuck_at].iter().any(|l| l.letter.id == *id));
    report.passed_over.retain(|id| letters[..stuck_at].iter().any(|l| l.letter.id == *id));
    let resolved: Vec<i64> =
        report.applied.iter().chain(&report.duplicates).chain(&report.passed_over).copied().collect();
    tx.delete_dead_letters(&resolved).await?;
    report.still_dead = letters[stuck_at..].iter().map(|l| l.letter.id).collect();
    match &stuck {
        Some(stuck) => {
            tx.update_dead_letter_reason(letters[stuck.index].letter.id, stuck.kind, &stuck.reason).await?;
            report.reason = Some(stuck.reason.clone());
            if let Some(key) = &key {
                tx.park_keys(projection, &[(key.clone(), stuck.reason.clone())]).await?;
            }
        }
        None => {
            if let Some(key) = &key {
                tx.unpark_key(projection, key).await?;
                report.unparked = true;
            }
        }
    }
    let action = if skip.is_some() { "dlq.skip" } else { "dlq.retry" };
    let target_json = json!({
        "key": key,
        "dead_letters": letters.iter().map(|l| l.letter.id).chain(report.skipped).collect::<Vec<_>>(),
        "skipped_event": skipped_letter.as_ref().map(describe),
    });
    tx.audit(NewAuditEntry {
        actor,
        action,
        projection: Some(projection),
        target: target_json,
        reason: skip.map(|(_, reason)| reason),
        outcome: serde_json::to_value(&report).expect("a report serializes"),
    })
    .await?;
    if !report.applied.is_empty() {
        tx.notify_progress(projection).await?;
    }
    tx.commit().await?;
    Ok(report)
}

/// Deletes the dead letters matching `filter` for good and unparks the keys left without any.
pub async fn purge(
    store: &Store,
    filter: &DeadLetterFilter,
    reason: &str,
    actor: &str,
) -> Result<Vec<DeadLetter>, DlqError> {
    let projection = filter.projection.clone().unwrap_or_default();
    let mut tx: StoreTx = store.begin().await?;
    let purged = tx.purge_dead_letters(filter).await?;
    tx.audit(NewAuditEntry {
        actor,
        action: "dlq.purge",
        projection: Some(&projection),
        target: json!({ "key": filter.key, "kind": filter.kind, "reason_contains": filter.reason_contains }),
        reason: Some(reason),
        outcome: json!({ "purged": purged.iter().map(describe_letter).collect::<Vec<_>>() }),
    })
    .await?;
    tx.commit().await?;
    Ok(purged)
}

fn describe(record: &DeadRecord) -> serde_json::Value {
    let mut value = describe_letter(&record.letter);
    value["payload"] = record.payload.as_deref().map(String::from_utf8_lossy).into();
    value
}

fn describe_letter(letter: &DeadLetter) -> serde_json::Value {
    json!({
        "id": letter.id,
        "topic": letter.topic,
        "partition": letter.partition,
        "offset": letter.offset,
        "key": letter.record_key,
        "event_id": letter.event_id,
        "event_type": letter.event_type,
        "reason_kind": letter.reason_kind,
        "reason": letter.reason,
    })
}

/// The event in a dead letter, as the projection would apply it: `None` for a type it does not
/// apply; an error (kind, reason) when it still cannot be decoded or validated, as the worker says.
fn decode<A: Apply>(
    applier: &A,
    registry: &Registry,
    record: &DeadRecord,
) -> Result<Option<Applicable<A::Event>>, (&'static str, String)> {
    let headers: Vec<(String, Vec<u8>)> = record
        .headers
        .as_object()
        .map(|map| map.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().as_bytes().to_vec())).collect())
        .unwrap_or_default();
    let event = runtime::decode(registry, &headers, record.payload.as_deref(), applier.sealed_fields())?;
    if !applier.handles(&event.envelope().event_type) {
        return Ok(None);
    }
    let payload = applier.decode(&event).map_err(|reason| ("invalid", reason))?;
    let time: DateTime<Utc> = event.envelope().time.or(record.record_time).unwrap_or(record.letter.created_at);
    let letter = &record.letter;
    Ok(Some(Applicable {
        event,
        payload,
        time,
        topic: letter.topic.clone(),
        partition: letter.partition,
        offset: letter.offset,
    }))
}
