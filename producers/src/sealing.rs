//! Sealing at the way in: each personal field of an event is sealed under its data subject's key
//! before the event leaves the process, so Kafka, projections, dead letters and exports only
//! ever hold the ciphertext. On when a key-encryption key is configured. The clear values of
//! blind-indexed fields are kept, as digests, in the key store's index before the events leave.

use std::sync::Arc;

use eventline_core::cipher::DataKey;
use eventline_core::contract::ValidatedEvent;
use eventline_core::registry::Registry;
use eventline_store::subject_keys::{KeyRing, KeyRingError};

/// Why events were not sealed (and so not published).
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// Personal data about an erased subject: refused, never sealed under a new key.
    #[error("event {index}: its data subject `{subject}` was erased; personal data about it is refused")]
    Erased { index: usize, subject: String },
    #[error(transparent)]
    Keys(#[from] KeyRingError),
}

/// Seals events' personal fields under their subjects' keys.
pub struct Sealer {
    registry: Arc<Registry>,
    keys: KeyRing,
}

impl Sealer {
    pub fn new(registry: Arc<Registry>, keys: KeyRing) -> Self {
        Self { registry, keys }
    }

    /// Every event with its personal fields sealed; one about an erased subject stops them all.
    pub async fn seal_all(&self, events: Vec<ValidatedEvent>) -> Result<Vec<ValidatedEvent>, SealError> {
        let subjects: Vec<Option<String>> = events.iter().map(|e| self.registry.personal_subject(e)).collect();
        let keys = self.keys_of(&subjects).await?;
        let mut sealed = Vec::with_capacity(events.len());
        let mut indexed = Vec::new();
        for (index, ((event, subject), key)) in events.into_iter().zip(subjects).zip(keys).enumerate() {
            let Some(subject) = subject else {
                sealed.push(event);
                continue;
            };
            let Some(key) = key else { return Err(SealError::Erased { index, subject }) };
            let (event, values) = self.registry.seal_personal(event, &subject, &key);
            indexed.extend(values.into_iter().map(|(index, value)| (index, value, subject.clone())));
            sealed.push(event);
        }
        self.keys.keep_blind_index(&indexed).await?;
        Ok(sealed)
    }

    /// Each event written to be published later (validated by
    /// [`Registry::validate_unpublished_slice`]) with its personal fields still in clear sealed,
    /// fields already sealed left as they are, and whether it had any in clear. An event with
    /// clear personal data about an erased subject comes back as that subject, refused; the
    /// others are sealed all the same.
    pub async fn seal_unpublished(
        &self,
        events: Vec<ValidatedEvent>,
    ) -> Result<Vec<Result<(ValidatedEvent, bool), String>>, KeyRingError> {
        let subjects: Vec<Option<String>> = events.iter().map(|e| self.registry.clear_personal_subject(e)).collect();
        let keys = self.keys_of(&subjects).await?;
        let mut indexed = Vec::new();
        let sealed = events
            .into_iter()
            .zip(subjects)
            .zip(keys)
            .map(|((event, subject), key)| match (subject, key) {
                (None, _) => Ok((event, false)),
                (Some(subject), Some(key)) => {
                    let (event, values) = self.registry.seal_clear_personal(event, &subject, &key);
                    indexed.extend(values.into_iter().map(|(index, value)| (index, value, subject.clone())));
                    Ok((event, true))
                }
                (Some(subject), None) => Err(subject),
            })
            .collect();
        self.keys.keep_blind_index(&indexed).await?;
        Ok(sealed)
    }

    /// The key of each subject named, in its place (`None` where no subject is named, and for an
    /// erased subject), in one round trip; new subjects' keys made together.
    async fn keys_of(&self, subjects: &[Option<String>]) -> Result<Vec<Option<DataKey>>, KeyRingError> {
        let named: Vec<&str> = subjects.iter().flatten().map(String::as_str).collect();
        if named.is_empty() {
            return Ok(vec![None; subjects.len()]);
        }
        let mut found = self.keys.keys_for_sealing(&named).await?.into_iter();
        Ok(subjects.iter().map(|subject| subject.as_ref().and_then(|_| found.next().flatten())).collect())
    }
}
