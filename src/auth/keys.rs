//! API keys: `Authorization: Bearer elk_<key id>_<secret>`. Only a SHA-256 hash of the secret is
//! stored (the secret is 32 random bytes, so a fast hash is enough); verified keys are cached for
//! a few seconds, which is how long a revocation may take to bite.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use eventline_store::Store;
use rand::Rng;
use sha2::{Digest, Sha256};

use eventline_http::Problem;

/// How long a looked-up key is trusted without asking the database again.
pub const CACHE_FOR: Duration = Duration::from_secs(5);
pub(crate) const PREFIX: &str = "elk_";

/// A new key: its public id, and the full bearer token to hand to the client (shown once).
pub struct NewKey {
    pub key_id: String,
    pub token: String,
    pub secret_hash: Vec<u8>,
}

/// Makes a new random key.
pub fn new_key() -> NewKey {
    let mut rng = rand::rng();
    let key_id: String = (0..12).map(|_| format!("{:x}", rng.random_range(0..16u8))).collect();
    let secret: String = (0..32).map(|_| format!("{:02x}", rng.random::<u8>())).collect();
    let secret_hash = hash(&secret);
    NewKey { token: format!("{PREFIX}{key_id}_{secret}"), key_id, secret_hash }
}

/// Whether an event type pattern is well-formed: `*`, `<prefix>.*`, or a type name.
pub fn valid_pattern(pattern: &str) -> bool {
    let name = pattern.strip_suffix(".*").unwrap_or(pattern);
    pattern == "*" || (!name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_'))
}

/// Whether `event_type` matches one of the patterns.
pub fn allows(patterns: &[String], event_type: &str) -> bool {
    patterns.iter().any(|p| {
        p == "*"
            || p == event_type
            || p.strip_suffix('*').is_some_and(|prefix| prefix.ends_with('.') && event_type.starts_with(prefix))
    })
}

fn hash(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// Compares without leaking, by timing, how much of the hash matched.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A verified key: its id, the event types it may publish, its other scopes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedKey {
    pub key_id: String,
    pub event_types: Vec<String>,
    pub scopes: Vec<String>,
}

struct Cached {
    secret_hash: Vec<u8>,
    key: VerifiedKey,
    revoked: bool,
    fetched: Instant,
}

/// The keys of a store, each looked up at most once per [`CACHE_FOR`].
pub struct KeyStore {
    store: Store,
    cache: Mutex<HashMap<String, Cached>>,
}

impl KeyStore {
    pub fn new(store: Store) -> Self {
        Self { store, cache: Mutex::new(HashMap::new()) }
    }

    /// Checks a bearer token starting with `elk_`. Refusals never repeat the token.
    pub async fn verify(&self, token: &str) -> Result<VerifiedKey, Problem> {
        let (key_id, secret) = token
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split_once('_'))
            .ok_or_else(|| crate::invalid_token("the API key is not valid"))?;
        let cached = {
            let cache = self.cache.lock().expect("not poisoned");
            cache
                .get(key_id)
                .filter(|c| c.fetched.elapsed() < CACHE_FOR)
                .map(|c| (c.secret_hash.clone(), c.key.clone(), c.revoked))
        };
        let (secret_hash, key, revoked) = match cached {
            Some(found) => found,
            None => {
                let stored = self.store.api_key(key_id).await.map_err(|error| {
                    tracing::warn!(%error, "Cannot look up an API key.");
                    Problem::unavailable("the key store is unavailable; try again")
                })?;
                let Some(stored) = stored else {
                    return Err(crate::invalid_token("the API key is not valid"));
                };
                let key = VerifiedKey {
                    key_id: stored.key_id.clone(),
                    event_types: stored.event_types,
                    scopes: stored.scopes,
                };
                let revoked = stored.revoked_at.is_some();
                let entry = Cached {
                    secret_hash: stored.secret_hash.clone(),
                    key: key.clone(),
                    revoked,
                    fetched: Instant::now(),
                };
                self.cache.lock().expect("not poisoned").insert(key_id.to_string(), entry);
                (stored.secret_hash, key, revoked)
            }
        };
        if !same(&hash(secret), &secret_hash) {
            return Err(crate::invalid_token("the API key is not valid"));
        }
        if revoked {
            return Err(crate::invalid_token("the API key has been revoked"));
        }
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_exact_types_prefixes_and_everything() {
        let patterns = vec!["accounts.*".to_string(), "projects.TaskCreated".to_string()];
        assert!(allows(&patterns, "accounts.FundsDeposited"));
        assert!(allows(&patterns, "projects.TaskCreated"));
        assert!(!allows(&patterns, "projects.TaskCompleted"));
        assert!(!allows(&patterns, "accountsX.Y"));
        assert!(allows(&["*".to_string()], "anything.At"));
        for good in ["*", "accounts.*", "activity.PageViewed"] {
            assert!(valid_pattern(good), "{good}");
        }
        for bad in ["", "accounts*", "a b", ".*", "accounts.**"] {
            assert!(!valid_pattern(bad), "{bad}");
        }
    }

    #[test]
    fn new_keys_are_distinct_and_their_hash_checks_the_secret() {
        let (a, b) = (new_key(), new_key());
        assert_ne!(a.token, b.token);
        assert!(a.token.starts_with(&format!("elk_{}_", a.key_id)));
        let secret = a.token.rsplit('_').next().unwrap();
        assert!(same(&hash(secret), &a.secret_hash));
        assert!(!same(&hash("guess"), &a.secret_hash));
    }
}
