//! API keys: `Authorization: Bearer elk_<key id>_<secret>`. Only a SHA-256 hash of the secret is
//! stored (the secret is 32 random bytes, so a fast hash is enough); verified keys are cached for
//! a few seconds, which is how long a revocation may take to bite.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::HeaderValue;
use eventline_store::Store;
use rand::Rng;
use sha2::{Digest, Sha256};

use eventline_http::Problem;

/// How long a looked-up key is trusted without asking the database again.
pub const CACHE_FOR: Duration = Duration::from_secs(5);
const PREFIX: &str = "elk_";

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

/// Who is publishing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The key's id (the rate limit's key); `None` when authentication is off.
    pub key_id: Option<String>,
    pub event_types: Vec<String>,
}

struct Cached {
    secret_hash: Vec<u8>,
    event_types: Vec<String>,
    revoked: bool,
    fetched: Instant,
}

/// How requests are authenticated.
pub struct Auth {
    mode: Mode,
}

enum Mode {
    /// Every request may publish anything: development only, logged loudly at start.
    Disabled,
    Keys {
        store: Store,
        cache: Mutex<HashMap<String, Cached>>,
    },
}

impl Auth {
    /// API keys from the store.
    pub fn keys(store: Store) -> Self {
        Self { mode: Mode::Keys { store, cache: Mutex::new(HashMap::new()) } }
    }

    /// No authentication at all: development only.
    pub fn disabled() -> Self {
        Self { mode: Mode::Disabled }
    }

    pub fn is_disabled(&self) -> bool {
        matches!(self.mode, Mode::Disabled)
    }

    /// Checks the `Authorization` header. Error details never repeat the header's value.
    pub async fn authenticate(&self, header: Option<&HeaderValue>) -> Result<Principal, Problem> {
        let (store, cache) = match &self.mode {
            Mode::Disabled => return Ok(Principal { key_id: None, event_types: vec!["*".into()] }),
            Mode::Keys { store, cache } => (store, cache),
        };
        let header = header.ok_or_else(|| Problem::unauthorized("send an API key as `Authorization: Bearer <key>`"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| Problem::unauthorized("the Authorization header must be `Bearer <key>`"))?;
        let (key_id, secret) = token
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split_once('_'))
            .ok_or_else(|| Problem::unauthorized("the API key is not valid"))?;

        let cached = {
            let cache = cache.lock().expect("not poisoned");
            cache
                .get(key_id)
                .filter(|c| c.fetched.elapsed() < CACHE_FOR)
                .map(|c| (c.secret_hash.clone(), c.event_types.clone(), c.revoked))
        };
        let (secret_hash, event_types, revoked) = match cached {
            Some(found) => found,
            None => {
                let stored = store.api_key(key_id).await.map_err(|error| {
                    tracing::warn!(%error, "Cannot look up an API key.");
                    Problem::unavailable("the key store is unavailable; try again")
                })?;
                let Some(stored) = stored else {
                    return Err(Problem::unauthorized("the API key is not valid"));
                };
                let entry = Cached {
                    secret_hash: stored.secret_hash.clone(),
                    event_types: stored.event_types.clone(),
                    revoked: stored.revoked_at.is_some(),
                    fetched: Instant::now(),
                };
                cache.lock().expect("not poisoned").insert(key_id.to_string(), entry);
                (stored.secret_hash, stored.event_types, stored.revoked_at.is_some())
            }
        };
        if !same(&hash(secret), &secret_hash) {
            return Err(Problem::unauthorized("the API key is not valid"));
        }
        if revoked {
            return Err(Problem::unauthorized("the API key has been revoked"));
        }
        Ok(Principal { key_id: Some(key_id.to_string()), event_types })
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
