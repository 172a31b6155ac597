//! Bearer JWTs from one configured issuer: signed by a key of its JSON Web Key Set (fetched over
//! https, again when a token names a key it has not seen, at most every
//! [`REFETCH_AT_MOST_EVERY`]), naming the issuer and the audience, unexpired.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use eventline_core::config::JwtSettings;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use sha2::{Digest, Sha256};

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A token naming a key the set lacks refetches the set, but no more often than this: a flood of
/// made-up key ids must not become a flood of requests to the issuer.
const REFETCH_AT_MOST_EVERY: Duration = Duration::from_secs(10);
/// Keys are refetched this often anyway, so a key the issuer withdrew stops working.
const KEYS_LIVE_FOR: Duration = Duration::from_secs(600);
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Clock skew tolerated between the issuer and this machine.
const LEEWAY_SECS: u64 = 30;
/// A token verified once is trusted this long (never past its `exp`) without checking its
/// signature again: a client sends the same token many times, and the signature is most of what a
/// request costs beyond the query. Refetching the key set forgets every verified token.
const VERIFIED_FOR: Duration = Duration::from_secs(60);
/// Verified tokens remembered at most; beyond it the memory starts afresh.
const VERIFIED_AT_MOST: usize = 10_000;

/// Algorithms accepted: asymmetric only, so no one holding the public keys can sign.
const ACCEPTED: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// What a verified token says about its bearer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub subject: String,
    pub scopes: Vec<String>,
}

/// Why a token was refused, worded for the caller (`error_description`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// The token is not acceptable.
    Invalid(String),
    /// The issuer's keys could not be fetched, so nothing can be said of the token.
    KeysUnavailable(String),
}

#[derive(Deserialize)]
struct Claims {
    /// Required by the validation, so always there once it passed.
    exp: u64,
    sub: Option<String>,
    /// RFC 8693 / RFC 9068: space-separated.
    scope: Option<String>,
    /// Microsoft Entra and others: a list (or one string).
    scp: Option<ScopeList>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ScopeList {
    Text(String),
    List(Vec<String>),
}

/// A verified token and until when it is trusted without checking it again.
type Trusted = (Arc<Verified>, Instant);

struct Key {
    decoding: DecodingKey,
    /// The algorithm the key set pins the key to, if it does.
    algorithm: Option<Algorithm>,
}

#[derive(Default)]
struct KeySet {
    by_id: HashMap<String, Arc<Key>>,
    /// Keys without a `kid`, usable by tokens without one.
    unnamed: Vec<Arc<Key>>,
    fetched: Option<Instant>,
    last_attempt: Option<Instant>,
}

pub struct JwtVerifier {
    settings: JwtSettings,
    client: reqwest::Client,
    keys: RwLock<KeySet>,
    /// Tokens verified lately, by the SHA-256 of the token, and until when they are trusted.
    verified: Mutex<HashMap<[u8; 32], Trusted>>,
    /// One fetch at a time; the others wait for its result.
    fetching: tokio::sync::Mutex<()>,
}

impl JwtVerifier {
    pub fn new(settings: JwtSettings) -> Self {
        let client = reqwest::Client::builder().timeout(FETCH_TIMEOUT).build().expect("a TLS client builds");
        Self {
            settings,
            client,
            keys: RwLock::new(KeySet::default()),
            verified: Mutex::new(HashMap::new()),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    /// Fetches the key set now (at start), so a wrong URL shows in the log before any request.
    pub async fn prefetch(&self) {
        let _one_at_a_time = self.fetching.lock().await;
        match self.refresh().await {
            Ok(count) => tracing::info!(keys = count, url = %self.settings.jwks_url, "Fetched the JWT issuer's keys."),
            Err(error) => {
                tracing::warn!(%error, "Cannot fetch the JWT issuer's keys yet; JWTs are refused until they are.")
            }
        }
    }

    pub async fn verify(&self, token: &str) -> Result<Arc<Verified>, Refused> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let remembered = self.verified.lock().expect("not poisoned").get(&digest).cloned();
        if let Some((verified, until)) = remembered {
            if Instant::now() < until {
                return Ok(verified);
            }
        }
        let verified = self.verify_signed(token).await?;
        let mut remembered = self.verified.lock().expect("not poisoned");
        if remembered.len() >= VERIFIED_AT_MOST {
            remembered.clear();
        }
        remembered.insert(digest, verified.clone());
        Ok(verified.0)
    }

    /// Verifies the token's signature and claims; the token and until when to trust it.
    async fn verify_signed(&self, token: &str) -> Result<Trusted, Refused> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| Refused::Invalid("it is not a JWT".into()))?;
        if !ACCEPTED.contains(&header.alg) {
            return Err(Refused::Invalid(format!(
                "its algorithm {:?} is not accepted (only asymmetric signatures are)",
                header.alg
            )));
        }
        let key = match self.find_key(header.kid.as_deref()) {
            Some(key) => key,
            None => {
                self.refresh_if_due().await?;
                self.find_key(header.kid.as_deref()).ok_or_else(|| {
                    Refused::Invalid(match &header.kid {
                        Some(kid) => format!("it is signed by key `{kid}`, which the issuer's key set does not hold"),
                        None => "it names no key (kid) and the issuer's key set does not have exactly one".into(),
                    })
                })?
            }
        };
        if key.algorithm.is_some_and(|pinned| pinned != header.alg) {
            return Err(Refused::Invalid("its algorithm is not the one its key is for".into()));
        }
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.settings.issuer]);
        validation.set_audience(&[&self.settings.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        let data = jsonwebtoken::decode::<Claims>(token, &key.decoding, &validation).map_err(|error| {
            Refused::Invalid(match error.kind() {
                ErrorKind::ExpiredSignature => "it has expired".into(),
                ErrorKind::ImmatureSignature => "it is not valid yet (nbf)".into(),
                ErrorKind::InvalidIssuer => format!("it was not issued by {}", self.settings.issuer),
                ErrorKind::InvalidAudience => format!("it is not meant for {}", self.settings.audience),
                ErrorKind::InvalidSignature => "its signature does not verify".into(),
                ErrorKind::InvalidAlgorithm => "its algorithm is not the one its key is for".into(),
                ErrorKind::MissingRequiredClaim(claim) => format!("it has no `{claim}` claim"),
                _ => "it is not a well-formed JWT".into(),
            })
        })?;
        let claims = data.claims;
        let subject =
            claims.sub.filter(|s| !s.is_empty()).ok_or_else(|| Refused::Invalid("its `sub` is empty".into()))?;
        let mut scopes: Vec<String> =
            claims.scope.iter().flat_map(|s| s.split_whitespace()).map(String::from).collect();
        match claims.scp {
            Some(ScopeList::Text(text)) => scopes.extend(text.split_whitespace().map(String::from)),
            Some(ScopeList::List(list)) => scopes.extend(list),
            None => {}
        }
        let lifetime = Duration::from_secs(claims.exp.saturating_sub(unix_now())).min(VERIFIED_FOR);
        Ok((Arc::new(Verified { subject, scopes }), Instant::now() + lifetime))
    }

    fn find_key(&self, kid: Option<&str>) -> Option<Arc<Key>> {
        let keys = self.keys.read().expect("not poisoned");
        if keys.fetched.is_none_or(|at| at.elapsed() > KEYS_LIVE_FOR) {
            return None;
        }
        match kid {
            Some(kid) => keys.by_id.get(kid).cloned(),
            None if keys.unnamed.len() + keys.by_id.len() == 1 => {
                keys.unnamed.first().or_else(|| keys.by_id.values().next()).cloned()
            }
            None => None,
        }
    }

    /// Fetches the set unless a fetch was tried lately: then the set stands as it is (a key it
    /// lacks is unknown), or if that fetch failed, nothing can be verified yet.
    async fn refresh_if_due(&self) -> Result<(), Refused> {
        let _one_at_a_time = self.fetching.lock().await;
        let (fresh, tried_lately) = {
            let keys = self.keys.read().expect("not poisoned");
            (
                keys.fetched.is_some_and(|at| at.elapsed() <= KEYS_LIVE_FOR),
                keys.last_attempt.is_some_and(|at| at.elapsed() < REFETCH_AT_MOST_EVERY),
            )
        };
        match (tried_lately, fresh) {
            (true, true) => Ok(()),
            (true, false) => {
                Err(Refused::KeysUnavailable("the issuer's keys could not be fetched lately; try again shortly".into()))
            }
            (false, _) => self.refresh().await.map(|_| ()).map_err(|error| {
                tracing::warn!(%error, "Cannot fetch the JWT issuer's keys.");
                Refused::KeysUnavailable("the issuer's keys cannot be fetched; try again shortly".into())
            }),
        }
    }

    async fn refresh(&self) -> Result<usize, String> {
        self.keys.write().expect("not poisoned").last_attempt = Some(Instant::now());
        let url = self.settings.jwks_url.clone();
        let response = self.client.get(url.clone()).send().await.map_err(|e| format!("GET {url}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("GET {url}: {}", response.status()));
        }
        let set: JwkSet = response.json().await.map_err(|e| format!("{url} is not a JSON Web Key Set: {e}"))?;
        let mut fresh =
            KeySet { fetched: Some(Instant::now()), last_attempt: Some(Instant::now()), ..KeySet::default() };
        for jwk in &set.keys {
            // A shared secret in a public key set would let anyone sign: never used.
            if matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_)) {
                continue;
            }
            let Ok(decoding) = DecodingKey::from_jwk(jwk) else { continue };
            let algorithm = jwk.common.key_algorithm.and_then(|a| a.to_string().parse::<Algorithm>().ok());
            let key = Arc::new(Key { decoding, algorithm });
            match &jwk.common.key_id {
                Some(kid) => {
                    fresh.by_id.insert(kid.clone(), key);
                }
                None => fresh.unnamed.push(key),
            }
        }
        let count = fresh.by_id.len() + fresh.unnamed.len();
        *self.keys.write().expect("not poisoned") = fresh;
        // A key the issuer withdrew must not live on in tokens it verified.
        self.verified.lock().expect("not poisoned").clear();
        Ok(count)
    }
}
