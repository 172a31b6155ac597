//! The key store of data subjects (`eventline_keys.subject_keys`): each subject's data key,
//! wrapped, made once and never again once erased; and the [`KeyRing`] processes read it through.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use eventline_core::cipher::{BlindIndexKey, DataKey, KeyEncryptionKey};

use crate::audit::NewAuditEntry;
use crate::{Error, Store};

/// What the store holds for a data subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubjectKey {
    /// Its data key, wrapped by the key-encryption key.
    Active { wrapped: String },
    /// Erased: no key, and none may be made.
    Erased { at: DateTime<Utc> },
}

/// What an erasure destroyed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Erasure {
    /// False when the subject was erased already (or never had a key).
    pub key_destroyed: bool,
    /// The blind-index entries deleted: none when already erased.
    pub index_entries: u64,
}

/// One blind-index entry: a personal value's digest in an index, and the subject it leads to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BlindIndexEntry {
    pub index_name: String,
    pub digest: Vec<u8>,
    pub subject: String,
}

struct Row {
    subject: String,
    wrapped_key: Option<String>,
    erased_at: Option<DateTime<Utc>>,
}

impl From<Row> for SubjectKey {
    fn from(row: Row) -> Self {
        match (row.wrapped_key, row.erased_at) {
            (Some(wrapped), None) => Self::Active { wrapped },
            // The table's check allows nothing else.
            (_, at) => Self::Erased { at: at.unwrap_or_default() },
        }
    }
}

impl Store {
    /// The keys held for `subjects` (a subject without one is absent).
    pub async fn subject_keys(&self, subjects: &[String]) -> Result<HashMap<String, SubjectKey>, Error> {
        let rows = sqlx::query_as!(
            Row,
            "SELECT subject, wrapped_key, erased_at FROM eventline_keys.subject_keys WHERE subject = ANY($1)",
            subjects
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|row| (row.subject.clone(), SubjectKey::from(row))).collect())
    }

    /// Each subject's key, in one transaction: the one it has, or its `wrapped` kept as its key
    /// when it has none. Of two processes making a subject's first key at once, both get the one
    /// stored first; an erased subject stays erased.
    pub async fn subject_keys_or_insert(
        &self,
        made: &[(String, String)],
    ) -> Result<HashMap<String, SubjectKey>, Error> {
        let (subjects, wrapped): (Vec<String>, Vec<String>) = made.iter().cloned().unzip();
        let mut tx = self.begin().await?;
        let inserted = sqlx::query_as!(
            Row,
            r#"INSERT INTO eventline_keys.subject_keys (subject, wrapped_key)
               SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT (subject) DO NOTHING
               RETURNING subject, wrapped_key, erased_at"#,
            &subjects,
            &wrapped
        )
        .fetch_all(&mut *tx.tx)
        .await?;
        let mut keys: HashMap<String, SubjectKey> =
            inserted.into_iter().map(|row| (row.subject.clone(), SubjectKey::from(row))).collect();
        // Subjects another process keyed (or erased) first: a statement of its own sees what it
        // committed meanwhile.
        let taken: Vec<String> = subjects.into_iter().filter(|s| !keys.contains_key(s)).collect();
        if !taken.is_empty() {
            let rows = sqlx::query_as!(
                Row,
                "SELECT subject, wrapped_key, erased_at FROM eventline_keys.subject_keys WHERE subject = ANY($1)",
                &taken
            )
            .fetch_all(&mut *tx.tx)
            .await?;
            keys.extend(rows.into_iter().map(|row| (row.subject.clone(), SubjectKey::from(row))));
        }
        tx.commit().await?;
        Ok(keys)
    }

    /// Keeps blind-index entries of subjects whose keys are live; an entry of an erased subject
    /// (its key dropped meanwhile by an erasure) is not kept.
    pub async fn keep_blind_index(&self, entries: &[BlindIndexEntry]) -> Result<(), Error> {
        let mut index_names = Vec::with_capacity(entries.len());
        let mut digests = Vec::with_capacity(entries.len());
        let mut subjects = Vec::with_capacity(entries.len());
        for entry in entries {
            index_names.push(entry.index_name.clone());
            digests.push(entry.digest.clone());
            subjects.push(entry.subject.clone());
        }
        // The key rows are share-locked: an erasure running now either waits for these entries
        // (and deletes them) or goes first (and these find the key gone).
        sqlx::query!(
            "WITH live AS (
                 SELECT subject FROM eventline_keys.subject_keys
                 WHERE subject = ANY($3) AND wrapped_key IS NOT NULL
                 FOR SHARE
             )
             INSERT INTO eventline_keys.blind_index (index_name, digest, subject)
             SELECT e.index_name, e.digest, e.subject
             FROM unnest($1::text[], $2::bytea[], $3::text[]) AS e (index_name, digest, subject)
             JOIN live USING (subject)
             ON CONFLICT DO NOTHING",
            &index_names,
            &digests,
            &subjects
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The subjects the blind indexes lead to from each `(index name, digest)`, in order, once each.
    pub async fn blind_index_subjects(&self, lookups: &[(String, Vec<u8>)]) -> Result<Vec<String>, Error> {
        let (names, digests): (Vec<String>, Vec<Vec<u8>>) = lookups.iter().cloned().unzip();
        Ok(sqlx::query_scalar!(
            r#"SELECT DISTINCT b.subject AS "subject!" FROM eventline_keys.blind_index b
               JOIN unnest($1::text[], $2::bytea[]) AS l(index_name, digest) USING (index_name, digest)
               ORDER BY 1"#,
            &names,
            &digests
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Destroys the subject's key and its blind-index entries, and fences it (a subject never
    /// seen is fenced too).
    pub async fn erase_subject_key(
        &self,
        subject: &str,
        actor: &str,
        reason: &str,
        requested_by: &str,
    ) -> Result<Erasure, Error> {
        let mut tx = self.begin().await?;
        // Locked, so of two erasures at once only one destroys the key.
        let had_key = sqlx::query_scalar!(
            "SELECT wrapped_key IS NOT NULL AS \"had_key!\" FROM eventline_keys.subject_keys WHERE subject = $1 FOR UPDATE",
            subject
        )
        .fetch_optional(&mut *tx.tx)
        .await?
        .unwrap_or(false);
        sqlx::query!(
            "INSERT INTO eventline_keys.subject_keys AS k (subject, wrapped_key, erased_at) VALUES ($1, NULL, now())
             ON CONFLICT (subject) DO UPDATE SET wrapped_key = NULL, erased_at = coalesce(k.erased_at, now())",
            subject
        )
        .execute(&mut *tx.tx)
        .await?;
        let index_entries = sqlx::query!("DELETE FROM eventline_keys.blind_index WHERE subject = $1", subject)
            .execute(&mut *tx.tx)
            .await?
            .rows_affected();
        // Delivered when the erasure commits: every key ring drops the key at once.
        sqlx::query!("SELECT pg_notify($1, $2)", ERASED_CHANNEL, subject).execute(&mut *tx.tx).await?;
        tx.audit(NewAuditEntry {
            actor,
            action: "subject.erase",
            projection: None,
            target: serde_json::json!({ "subject": subject, "requested_by": requested_by }),
            reason: Some(reason),
            outcome: serde_json::json!({ "key_destroyed": had_key, "blind_index_entries_deleted": index_entries }),
        })
        .await?;
        tx.commit().await?;
        Ok(Erasure { key_destroyed: had_key, index_entries })
    }
}

impl Store {
    /// Gives the key store to `role` (see the migration `key_store_role`), with its audit entry
    /// (`key_store.isolate`): true when it was given now, false when the role had it already.
    pub async fn isolate_key_store(&self, role: &str, actor: &str) -> Result<bool, Error> {
        let mut tx = self.begin().await?;
        let given = sqlx::query_scalar!(r#"SELECT eventline_keys_isolate($1) AS "given!""#, role)
            .fetch_one(&mut *tx.tx)
            .await
            .map_err(|error| match error.as_database_error() {
                // Its own refusals: an unknown role, this role, a superuser, a member.
                Some(refusal) if matches!(refusal.code().as_deref(), Some("42704" | "22023")) => {
                    Error::Refused(refusal.message().to_string())
                }
                _ => error.into(),
            })?;
        tx.audit(NewAuditEntry {
            actor,
            action: "key_store.isolate",
            projection: None,
            target: serde_json::json!({ "role": role }),
            reason: None,
            outcome: serde_json::json!({ "given": given }),
        })
        .await?;
        tx.commit().await?;
        Ok(given)
    }
}

/// How long a process trusts a subject's key it has read: an erasure is obeyed everywhere within
/// this long, even by a process that missed its announcement.
pub const KEY_LIFETIME: std::time::Duration = std::time::Duration::from_secs(5);

/// The channel an erasure is announced on (the payload is the subject), so key rings drop the
/// key at once rather than when it expires.
pub const ERASED_CHANNEL: &str = "eventline_subject_erased";

/// Why a subject's key could not be had.
#[derive(Debug, thiserror::Error)]
pub enum KeyRingError {
    #[error(transparent)]
    Store(#[from] Error),
    /// The stored key was wrapped by another key-encryption key (or altered).
    #[error("the key-encryption key does not open the data key of subject `{subject}`: {reason}")]
    Unwrap { subject: String, reason: eventline_core::cipher::CipherError },
}

/// Where the data subjects' wrapped keys are kept: PostgreSQL's `eventline_keys` ([`Store`]) is
/// the one eventline ships; a key management service can be another, behind the same ring.
#[async_trait::async_trait]
pub trait KeyStore: Send + Sync + 'static {
    /// The keys held for `subjects` (a subject without one is absent).
    async fn subject_keys(&self, subjects: &[String]) -> Result<HashMap<String, SubjectKey>, Error>;

    /// Keeps each `(subject, wrapped key)` made for a subject without a key, and returns every
    /// subject's key as stored: another process's when it stored one first, erased when erased.
    async fn subject_keys_or_insert(&self, made: &[(String, String)]) -> Result<HashMap<String, SubjectKey>, Error>;

    /// Keeps blind-index entries, except those of subjects erased (by the time they are kept).
    async fn keep_blind_index(&self, entries: &[BlindIndexEntry]) -> Result<(), Error>;

    /// The subjects the blind indexes lead to from each `(index name, digest)`, once each.
    async fn blind_index_subjects(&self, lookups: &[(String, Vec<u8>)]) -> Result<Vec<String>, Error>;

    /// Tells `ring` of each erasure as it is announced, for as long as it lives. A store that
    /// announces nothing leaves rings to the key lifetime alone.
    fn watch_erasures(&self, ring: ErasureWatch) {
        let _ = ring;
    }
}

#[async_trait::async_trait]
impl KeyStore for Store {
    async fn subject_keys(&self, subjects: &[String]) -> Result<HashMap<String, SubjectKey>, Error> {
        Store::subject_keys(self, subjects).await
    }

    async fn subject_keys_or_insert(&self, made: &[(String, String)]) -> Result<HashMap<String, SubjectKey>, Error> {
        Store::subject_keys_or_insert(self, made).await
    }

    async fn keep_blind_index(&self, entries: &[BlindIndexEntry]) -> Result<(), Error> {
        Store::keep_blind_index(self, entries).await
    }

    async fn blind_index_subjects(&self, lookups: &[(String, Vec<u8>)]) -> Result<Vec<String>, Error> {
        Store::blind_index_subjects(self, lookups).await
    }

    /// Listens on [`ERASED_CHANNEL`] from a task of its own (within a Tokio runtime).
    fn watch_erasures(&self, ring: ErasureWatch) {
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn(drop_erased_keys(self.clone(), ring));
        }
    }
}

/// A key ring's cache as a [`KeyStore`] sees it: keys to drop when their subjects are erased.
pub struct ErasureWatch {
    cache: std::sync::Weak<std::sync::Mutex<KeyCache>>,
}

impl ErasureWatch {
    /// Drops `subject`'s key; false once the ring is gone (stop watching).
    pub fn erased(&self, subject: &str) -> bool {
        self.with_cache(|cache| {
            cache.entries.remove(subject);
        })
    }

    /// Drops every key, for when announcements may have been missed; false once the ring is gone.
    pub fn forget_all(&self) -> bool {
        self.with_cache(|cache| cache.entries.clear())
    }

    /// Whether the ring still lives.
    pub fn ring_lives(&self) -> bool {
        self.cache.strong_count() > 0
    }

    fn with_cache(&self, change: impl FnOnce(&mut KeyCache)) -> bool {
        match self.cache.upgrade() {
            Some(cache) => {
                change(&mut cache.lock().expect("the key cache is never poisoned"));
                true
            }
            None => false,
        }
    }
}

/// The data subjects' keys as a process uses them: unwrapped with the key-encryption key, made on
/// a subject's first sealing, each trusted for at most [`KEY_LIFETIME`] after it was read.
pub struct KeyRing {
    store: Arc<dyn KeyStore>,
    kek: KeyEncryptionKey,
    index_key: BlindIndexKey,
    lifetime: std::time::Duration,
    cache: Arc<std::sync::Mutex<KeyCache>>,
}

/// Keys read, by subject, with when; pruned of expired ones once per lifetime (pruning on every
/// insert made sealing a batch of new subjects quadratic).
#[derive(Default)]
struct KeyCache {
    entries: HashMap<String, (std::time::Instant, Option<DataKey>)>,
    pruned_at: Option<std::time::Instant>,
}

impl KeyRing {
    /// A ring over PostgreSQL's key store. Made within a Tokio runtime, it also listens for
    /// erasures and drops an erased subject's key as soon as the erasure commits.
    pub fn new(store: Store, kek: KeyEncryptionKey) -> Self {
        Self::with_lifetime(store, kek, KEY_LIFETIME)
    }

    /// Like [`KeyRing::new`], trusting a key read for `lifetime` (tests change it).
    pub fn with_lifetime(store: Store, kek: KeyEncryptionKey, lifetime: std::time::Duration) -> Self {
        Self::over(Arc::new(store), kek, lifetime)
    }

    /// A ring over any [`KeyStore`].
    pub fn over(store: Arc<dyn KeyStore>, kek: KeyEncryptionKey, lifetime: std::time::Duration) -> Self {
        let cache = Arc::new(std::sync::Mutex::new(KeyCache::default()));
        store.watch_erasures(ErasureWatch { cache: Arc::downgrade(&cache) });
        Self { store, index_key: kek.blind_index_key(), kek, lifetime, cache }
    }

    fn cached(&self, subject: &str) -> Option<Option<DataKey>> {
        let cache = self.cache.lock().expect("the key cache is never poisoned");
        cache.entries.get(subject).filter(|(at, _)| at.elapsed() < self.lifetime).map(|(_, key)| key.clone())
    }

    fn remember(&self, subject: &str, key: Option<DataKey>) {
        self.remember_all([(subject.to_string(), key)]);
    }

    /// Keeps each subject's key read now, under one lock.
    fn remember_all(&self, keys: impl IntoIterator<Item = (String, Option<DataKey>)>) {
        let mut cache = self.cache.lock().expect("the key cache is never poisoned");
        let now = std::time::Instant::now();
        if cache.pruned_at.is_none_or(|at| now.duration_since(at) >= self.lifetime) {
            let lifetime = self.lifetime;
            cache.entries.retain(|_, (at, _)| now.duration_since(*at) < lifetime);
            // After a burst of new subjects the table stays as large as at its peak, and every
            // lookup in it (one per sealed event) then misses the processor's caches.
            let live = cache.entries.len();
            if cache.entries.capacity() > 4 * live + 1024 {
                cache.entries.shrink_to(2 * live);
            }
            cache.pruned_at = Some(now);
        }
        cache.entries.extend(keys.into_iter().map(|(subject, key)| (subject, (now, key))));
    }

    fn unwrapped(&self, subject: &str, key: SubjectKey) -> Result<Option<DataKey>, KeyRingError> {
        match key {
            SubjectKey::Active { wrapped } => DataKey::unwrap(&self.kek, subject, &wrapped)
                .map(Some)
                .map_err(|reason| KeyRingError::Unwrap { subject: subject.to_string(), reason }),
            SubjectKey::Erased { .. } => Ok(None),
        }
    }

    /// The key to seal `subject`'s personal data under, made now if it has none; `None` when the
    /// subject is erased (its personal data must be refused, not sealed).
    pub async fn key_for_sealing(&self, subject: &str) -> Result<Option<DataKey>, KeyRingError> {
        if let Some(Some(key)) = self.cached(subject) {
            return Ok(Some(key));
        }
        let made = DataKey::generate().wrap(&self.kek, subject);
        let stored = self.store.subject_keys_or_insert(&[(subject.to_string(), made)]).await?.remove(subject);
        let key = match stored {
            Some(stored) => self.unwrapped(subject, stored)?,
            None => None,
        };
        self.remember(subject, key.clone());
        Ok(key)
    }

    /// Like [`KeyRing::key_for_sealing`] for many subjects (repeats allowed), each one's key in
    /// the same place, with one round trip to the store for those not in hand.
    pub async fn keys_for_sealing(&self, subjects: &[&str]) -> Result<Vec<Option<DataKey>>, KeyRingError> {
        let mut keys = Vec::with_capacity(subjects.len());
        let mut missing = Vec::new();
        {
            // One lock and one clock reading for the whole batch, not one per event.
            let cache = self.cache.lock().expect("the key cache is never poisoned");
            let now = std::time::Instant::now();
            for (place, subject) in subjects.iter().enumerate() {
                match cache.entries.get(*subject).filter(|(at, _)| now.duration_since(*at) < self.lifetime) {
                    Some((_, Some(key))) => keys.push(Some(key.clone())),
                    _ => {
                        keys.push(None);
                        missing.push(place);
                    }
                }
            }
        }
        if missing.is_empty() {
            return Ok(keys);
        }
        let mut wanted: Vec<String> = missing.iter().map(|&place| subjects[place].to_string()).collect();
        wanted.sort();
        wanted.dedup();
        // Keys read first: once a subject's key has expired from the cache, it is read again,
        // not made again (making, wrapping and a refused insert for nothing).
        let mut stored = self.store.subject_keys(&wanted).await?;
        // Each new subject's key, with its wrapped text.
        let mut made: HashMap<&str, (DataKey, String)> = wanted
            .iter()
            .filter(|s| !stored.contains_key(*s))
            .map(|s| {
                let key = DataKey::generate();
                let wrapped = key.wrap(&self.kek, s);
                (s.as_str(), (key, wrapped))
            })
            .collect();
        if !made.is_empty() {
            let wrapped: Vec<(String, String)> =
                made.iter().map(|(subject, (_, wrapped))| (subject.to_string(), wrapped.clone())).collect();
            let kept = self.store.subject_keys_or_insert(&wrapped).await?;
            // A key made here and kept as it was is used as it is, not opened again; where
            // another process kept its own first (or the subject was erased), the store's is.
            made.retain(|subject, (_, ours)| {
                matches!(kept.get(*subject), Some(SubjectKey::Active { wrapped }) if wrapped == ours)
            });
            stored.extend(kept);
        }
        let mut found = HashMap::with_capacity(wanted.len());
        for subject in &wanted {
            let key = match (made.remove(subject.as_str()), stored.remove(subject)) {
                (Some((key, _)), _) => Some(key),
                (None, Some(stored)) => self.unwrapped(subject, stored)?,
                (None, None) => None,
            };
            found.insert(subject.clone(), key);
        }
        self.remember_all(found.iter().map(|(subject, key)| (subject.clone(), key.clone())));
        for place in missing {
            keys[place] = found[subjects[place]].clone();
        }
        Ok(keys)
    }

    /// Keeps each `(index, clear value, subject)` in its blind index (as a digest), once sealed:
    /// what [`KeyRing::blind_index_subjects`] finds.
    pub async fn keep_blind_index(&self, values: &[(String, serde_json::Value, String)]) -> Result<(), KeyRingError> {
        if values.is_empty() {
            return Ok(());
        }
        let entries: Vec<BlindIndexEntry> = values
            .iter()
            .map(|(index_name, value, subject)| BlindIndexEntry {
                index_name: index_name.clone(),
                digest: self.index_key.digest(index_name, value),
                subject: subject.clone(),
            })
            .collect();
        Ok(self.store.keep_blind_index(&entries).await?)
    }

    /// The subjects whose personal data held `value` in the blind index `index_name` (and were
    /// not erased since). A subject's value may have changed since: open it to be sure.
    pub async fn blind_index_subjects(
        &self,
        index_name: &str,
        value: &serde_json::Value,
    ) -> Result<Vec<String>, KeyRingError> {
        let digest = self.index_key.digest(index_name, value);
        Ok(self.store.blind_index_subjects(&[(index_name.to_string(), digest)]).await?)
    }

    /// Like [`KeyRing::blind_index_subjects`] in every one of `index_names` at once.
    pub async fn subjects_in_blind_indexes(
        &self,
        index_names: &[String],
        value: &serde_json::Value,
    ) -> Result<Vec<String>, KeyRingError> {
        let lookups: Vec<(String, Vec<u8>)> =
            index_names.iter().map(|name| (name.clone(), self.index_key.digest(name, value))).collect();
        Ok(self.store.blind_index_subjects(&lookups).await?)
    }

    /// The key that opens `subject`'s sealed data; `None` when it has none (erased, or never
    /// sealed for).
    pub async fn key_for_opening(&self, subject: &str) -> Result<Option<DataKey>, KeyRingError> {
        if let Some(key) = self.cached(subject) {
            return Ok(key);
        }
        let stored = self.store.subject_keys(&[subject.to_string()]).await?.remove(subject);
        let key = match stored {
            Some(stored) => self.unwrapped(subject, stored)?,
            None => None,
        };
        self.remember(subject, key.clone());
        Ok(key)
    }
}

/// Drops each erased subject's key from the ring when its erasure is announced, while the ring
/// lives. A lost connection is made again (the key lifetime bounds what is missed meanwhile).
async fn drop_erased_keys(store: Store, ring: ErasureWatch) {
    // A connection of its own: a listener holds the connection it listens on, which would be one
    // less for the store's queries.
    let own = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect_lazy_with(store.pool.connect_options().as_ref().clone());
    let mut retry_in = std::time::Duration::from_millis(100);
    loop {
        let listening = match sqlx::postgres::PgListener::connect_with(&own).await {
            Ok(mut listener) => listener.listen(ERASED_CHANNEL).await.map(|()| listener),
            Err(error) => Err(error),
        };
        let mut listener = match listening {
            Ok(listener) => listener,
            Err(error) => {
                tracing::debug!(%error, "Cannot listen for erasures yet; keys expire within their lifetime meanwhile.");
                tokio::time::sleep(retry_in).await;
                retry_in = (retry_in * 2).min(KEY_LIFETIME);
                if !ring.ring_lives() {
                    return;
                }
                continue;
            }
        };
        retry_in = std::time::Duration::from_millis(100);
        loop {
            // Woken now and then to notice the ring is gone.
            match tokio::time::timeout(KEY_LIFETIME, listener.try_recv()).await {
                Ok(Ok(Some(notification))) => {
                    if !ring.erased(notification.payload()) {
                        return;
                    }
                }
                // The connection was lost, and erasures may have been announced meanwhile: every
                // key is read again.
                Ok(Ok(None)) | Ok(Err(_)) => {
                    if !ring.forget_all() {
                        return;
                    }
                    break;
                }
                Err(_) if !ring.ring_lives() => return,
                Err(_) => {}
            }
        }
    }
}
