//! The ciphertext of a personal field, and the per-subject data keys it is sealed under.
//!
//! A personal field's value (any JSON) is sealed with AES-256-GCM under its data subject's data
//! key; the associated data binds the ciphertext to the event id, the event type, the field's
//! JSON pointer and the subject, so a ciphertext copied to another field, event or subject does
//! not open (an error, never another value). The sealed value is text, versioned so the format
//! can change without guessing, and names what it is bound to (none of it personal: the subject
//! is a pseudonymous id), so a reader holding only the text, like the query API reading a
//! projection's column, knows whose key opens it; a reader that knows where the value should
//! be, like a worker reading an event, opens it only there:
//!
//! ```text
//! elc1.<base64url: JSON [event id, type, pointer, subject]>.<base64url: nonce | ciphertext | tag>
//! ```
//!
//! Inside an event, where the four are known already, the value travels in a short form that
//! only checks them (`elc2.<base64url: 8 bytes of SHA-256 of the associated data>.<the same
//! nonce | ciphertext | tag>`), so Kafka records grow less; [`name`] turns it into the form that
//! names them, which is what a worker hands projections (and so what their tables hold). Both
//! forms open with the same key for the same context.
//!
//! A data key is 32 random bytes, stored only wrapped (sealed the same way under the
//! key-encryption key, bound to its subject): `ekw1.<base64url: nonce | wrapped key | tag>`.
//! Destroying a subject's wrapped key makes every copy of its personal data unreadable.
//!
//! A personal field the schema gives a blind index (`"x-blind-index": "<name>"`) is also found
//! by equality without opening anything: its [`BlindIndexKey::digest`], an HMAC-SHA256 of the
//! index name and the value under a key derived from the key-encryption key. Digests are kept
//! only in the key store, beside the subject they lead to (never in Kafka, whose records cannot
//! be scrubbed), and erasing a subject deletes them with its key.

use aes_gcm::aead::{Aead, AeadInPlace, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

/// AES-256-GCM with only the forward key schedule: GCM never runs the block cipher backwards, so
/// the inverse schedule `Aes256Gcm` also makes (a cipher is made per field sealed) is work for
/// nothing. The same algorithm: either opens what the other sealed.
type Cipher = aes_gcm::AesGcm<aes_gcm::aes::Aes256Enc, aes_gcm::aead::consts::U12>;

/// What a sealed field that names its context starts with (version 1 of the format).
pub const SEALED_PREFIX: &str = "elc1.";
/// What a sealed field in its short form, inside its event, starts with.
pub const SHORT_PREFIX: &str = "elc2.";
/// Bytes of the context's digest the short form carries: enough to notice a value moved.
const CONTEXT_CHECK: usize = 8;
/// What a wrapped data key starts with.
pub const WRAPPED_PREFIX: &str = "ekw1.";
const NONCE: usize = 12;
const TAG: usize = 16;

/// Why a ciphertext did not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CipherError {
    #[error("not a sealed value (it starts with neither elc1., elc2. nor ekw1.)")]
    NotSealed,
    #[error("a sealed value of a format this version does not know (`{0}`)")]
    UnknownFormat(String),
    #[error("a sealed value that is not well-formed base64url of a nonce, ciphertext and tag")]
    Malformed,
    /// The key, or what the value is bound to (event, type, field, subject), is not the one it
    /// was sealed with; or it was altered.
    #[error("the sealed value does not open with this key for this event, field and subject")]
    DoesNotOpen,
}

/// A key-encryption key: wraps the data keys. 32 bytes, from configuration (never stored beside
/// the data it protects).
#[derive(Clone)]
pub struct KeyEncryptionKey(Key<Aes256Gcm>);

impl KeyEncryptionKey {
    /// From its base64 (standard or URL-safe, padded or not) text: exactly 32 bytes.
    pub fn from_base64(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let bytes = [base64::engine::general_purpose::STANDARD, base64::engine::general_purpose::STANDARD_NO_PAD]
            .iter()
            .find_map(|engine| engine.decode(text).ok())
            .or_else(|| URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).ok())
            .ok_or("is not base64")?;
        if bytes.len() != 32 {
            return Err(format!("must be 32 bytes (256 bits) in base64, not {}", bytes.len()));
        }
        Ok(Self(*Key::<Aes256Gcm>::from_slice(&bytes)))
    }
}

impl KeyEncryptionKey {
    /// The key blind-index digests are made with: derived, so there is one secret to keep, and
    /// bound to its purpose, so it is never the key that wraps data keys.
    pub fn blind_index_key(&self) -> BlindIndexKey {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.0.as_slice()).expect("HMAC takes a key of any length");
        mac.update(b"eventline-blind-index-key/v1");
        BlindIndexKey(mac.finalize().into_bytes().into())
    }
}

/// The key of the blind indexes (see [`KeyEncryptionKey::blind_index_key`]).
#[derive(Clone)]
pub struct BlindIndexKey([u8; 32]);

impl std::fmt::Debug for BlindIndexKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BlindIndexKey([redacted])")
    }
}

impl BlindIndexKey {
    /// The digest `value` is found by in the blind index `index`: the same value gives the same
    /// digest in one index and unrelated ones in two, so digests say nothing across fields.
    /// Values are compared as JSON, exactly (`"Ada"` is not `"ada"`).
    pub fn digest(&self, index: &str, value: &Value) -> Vec<u8> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        mac.update(&(index.len() as u64).to_be_bytes());
        mac.update(index.as_bytes());
        mac.update(&serde_json::to_vec(value).expect("a JSON value serializes"));
        mac.finalize().into_bytes().to_vec()
    }
}

impl std::fmt::Debug for KeyEncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyEncryptionKey([redacted])")
    }
}

/// One data subject's data key. Its cipher (round keys and GHASH key) is made where it is used:
/// kept ready beside thousands of subjects' keys, a kilobyte each, it cost more in cache misses
/// than making it again takes.
#[derive(Clone)]
pub struct DataKey(Key<Aes256Gcm>);

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey([redacted])")
    }
}

impl DataKey {
    /// A new random key, from the operating system's generator.
    pub fn generate() -> Self {
        Self(Aes256Gcm::generate_key(OsRng))
    }

    fn cipher(&self) -> Cipher {
        Cipher::new(&self.0)
    }

    /// This key wrapped by `kek` for `subject`: what the key store keeps.
    pub fn wrap(&self, kek: &KeyEncryptionKey, subject: &str) -> String {
        seal_bytes(&Cipher::new(&kek.0), WRAPPED_PREFIX, &wrap_context(subject), self.0.as_slice())
    }

    /// The key `wrapped` holds, if `kek` wrapped it for `subject`.
    pub fn unwrap(kek: &KeyEncryptionKey, subject: &str, wrapped: &str) -> Result<Self, CipherError> {
        let bytes = open_bytes(&Cipher::new(&kek.0), WRAPPED_PREFIX, &wrap_context(subject), wrapped)?;
        if bytes.len() != 32 {
            return Err(CipherError::Malformed);
        }
        Ok(Self(*Key::<Aes256Gcm>::from_slice(&bytes)))
    }
}

/// What a sealed field is bound to: it opens only with all four the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldContext<'a> {
    pub event_id: &'a str,
    pub event_type: &'a str,
    /// The field's JSON pointer into `data`, e.g. `/owner`.
    pub pointer: &'a str,
    pub subject: &'a str,
}

impl FieldContext<'_> {
    /// Each part length-prefixed, so no two contexts give the same bytes.
    fn associated_data(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        self.write_associated_data(&mut bytes);
        bytes
    }

    /// [`FieldContext::associated_data`] into `bytes`, which it replaces.
    fn write_associated_data(&self, bytes: &mut Vec<u8>) {
        const TAG: &[u8] = b"eventline-field/v1";
        let parts = [self.event_id, self.event_type, self.pointer, self.subject];
        bytes.clear();
        bytes.reserve(TAG.len() + parts.iter().map(|part| 8 + part.len()).sum::<usize>());
        bytes.extend_from_slice(TAG);
        for part in parts {
            bytes.extend_from_slice(&(part.len() as u64).to_be_bytes());
            bytes.extend_from_slice(part.as_bytes());
        }
    }
}

fn wrap_context(subject: &str) -> Vec<u8> {
    let mut bytes = b"eventline-data-key/v1".to_vec();
    bytes.extend_from_slice(&(subject.len() as u64).to_be_bytes());
    bytes.extend_from_slice(subject.as_bytes());
    bytes
}

/// Whether `value` is a sealed field (of any version this code knows or not).
pub fn is_sealed(value: &Value) -> bool {
    value.as_str().is_some_and(|text| text.starts_with("elc") && text[3..].split_once('.').is_some())
}

/// `value` sealed under `key` for `context`, in the short form an event carries (see [`name`]
/// for the form that names its context).
pub fn seal(key: &DataKey, context: &FieldContext<'_>, value: &Value) -> String {
    SCRATCH.with_borrow_mut(|Scratch { aad, bytes }| {
        context.write_associated_data(aad);
        bytes.clear();
        bytes.extend_from_slice(&[0; NONCE]);
        serde_json::to_writer(&mut *bytes, value).expect("a JSON value serializes");
        // The only allocation: the text, sized once.
        let mut sealed =
            String::with_capacity(SHORT_PREFIX.len() + base64_len(CONTEXT_CHECK) + 1 + base64_len(bytes.len() + TAG));
        sealed.push_str(SHORT_PREFIX);
        URL_SAFE_NO_PAD.encode_string(context_check(aad), &mut sealed);
        sealed.push('.');
        seal_in_place(&key.cipher(), aad, bytes, &mut sealed);
        sealed
    })
}

/// Buffers reused by every field a thread seals: the associated data and the nonce, plaintext
/// and tag (sealing runs for every personal field of every event, and each allocation here
/// touched memory the processor's caches had lost).
#[derive(Default)]
struct Scratch {
    aad: Vec<u8>,
    bytes: Vec<u8>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::default();
}

/// Whether `sealed`, in either form, was sealed for `context`, without naming or opening it: what
/// a reader that keeps no personal data checks (a value moved from elsewhere is refused all the
/// same).
pub fn check(sealed: &str, context: &FieldContext<'_>) -> Result<(), CipherError> {
    if sealed.starts_with(SEALED_PREFIX) {
        return match SealedField::parse(sealed)?.context() == *context {
            true => Ok(()),
            false => Err(CipherError::DoesNotOpen),
        };
    }
    short_ciphertext(sealed, context).map(|_| ())
}

/// The short form `sealed` (`elc2.`) as the form that names its context (`elc1.`), if it was
/// sealed for `context`; a value in the named form is checked and returned as it is. Nothing is
/// opened: no key is needed.
pub fn name(sealed: &str, context: &FieldContext<'_>) -> Result<String, CipherError> {
    if sealed.starts_with(SEALED_PREFIX) {
        return check(sealed, context).map(|()| sealed.to_string());
    }
    let ciphertext = short_ciphertext(sealed, context)?;
    let named = [context.event_id, context.event_type, context.pointer, context.subject];
    let named = serde_json::to_vec(&named).expect("strings serialize");
    let mut text = String::with_capacity(SEALED_PREFIX.len() + base64_len(named.len()) + 1 + ciphertext.len());
    text.push_str(SEALED_PREFIX);
    URL_SAFE_NO_PAD.encode_string(&named, &mut text);
    text.push('.');
    text.push_str(ciphertext);
    Ok(text)
}

/// The base64url ciphertext of a short form sealed for `context`.
fn short_ciphertext<'t>(sealed: &'t str, context: &FieldContext<'_>) -> Result<&'t str, CipherError> {
    let Some(rest) = sealed.strip_prefix(SHORT_PREFIX) else { return Err(unknown_prefix(sealed)) };
    let (check, ciphertext) = rest.split_once('.').ok_or(CipherError::Malformed)?;
    let check = URL_SAFE_NO_PAD.decode(check).map_err(|_| CipherError::Malformed)?;
    if check.len() != CONTEXT_CHECK || ciphertext.is_empty() {
        return Err(CipherError::Malformed);
    }
    match check == context_check(&context.associated_data()) {
        true => Ok(ciphertext),
        false => Err(CipherError::DoesNotOpen),
    }
}

fn context_check(aad: &[u8]) -> [u8; CONTEXT_CHECK] {
    let digest = <Sha256 as sha2::Digest>::digest(aad);
    digest[..CONTEXT_CHECK].try_into().expect("SHA-256 is longer")
}

fn base64_len(bytes: usize) -> usize {
    bytes.div_ceil(3) * 4
}

/// The value `sealed` holds, if it was sealed under `key` for `context`: a value sealed for
/// another event, type, field or subject does not open here.
pub fn open(key: &DataKey, context: &FieldContext<'_>, sealed: &str) -> Result<Value, CipherError> {
    if sealed.starts_with(SHORT_PREFIX) {
        let ciphertext = short_ciphertext(sealed, context)?;
        let prefix = &sealed[..sealed.len() - ciphertext.len()];
        let plaintext = open_bytes(&key.cipher(), prefix, &context.associated_data(), sealed)?;
        return serde_json::from_slice(&plaintext).map_err(|_| CipherError::DoesNotOpen);
    }
    let field = SealedField::parse(sealed)?;
    if field.context() != *context {
        return Err(CipherError::DoesNotOpen);
    }
    field.open(key)
}

/// A sealed field read from its text, before it is opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedField {
    /// Event id, type, pointer and subject, as sealed.
    named: [String; 4],
    text: String,
}

impl SealedField {
    pub fn parse(text: &str) -> Result<Self, CipherError> {
        let Some(rest) = text.strip_prefix(SEALED_PREFIX) else {
            return Err(unknown_prefix(text));
        };
        let (named, _) = rest.split_once('.').ok_or(CipherError::Malformed)?;
        let named = URL_SAFE_NO_PAD.decode(named).map_err(|_| CipherError::Malformed)?;
        let named: [String; 4] = serde_json::from_slice(&named).map_err(|_| CipherError::Malformed)?;
        Ok(Self { named, text: text.to_string() })
    }

    /// What it was sealed for: its subject says whose key opens it.
    pub fn context(&self) -> FieldContext<'_> {
        let [event_id, event_type, pointer, subject] = &self.named;
        FieldContext { event_id, event_type, pointer, subject }
    }

    /// Its value, if `key` sealed it (for the context it names).
    pub fn open(&self, key: &DataKey) -> Result<Value, CipherError> {
        let prefix = &self.text[..self.text.rfind('.').expect("parsed: it has its parts") + 1];
        let plaintext = open_bytes(&key.cipher(), prefix, &self.context().associated_data(), &self.text)?;
        serde_json::from_slice(&plaintext).map_err(|_| CipherError::DoesNotOpen)
    }
}

fn unknown_prefix(text: &str) -> CipherError {
    let format =
        text.split_once('.').map(|(format, _)| format).filter(|f| f.starts_with("elc") || f.starts_with("ekw"));
    format.map_or(CipherError::NotSealed, |f| CipherError::UnknownFormat(f.to_string()))
}

fn seal_bytes(cipher: &Cipher, prefix: &str, aad: &[u8], plaintext: &[u8]) -> String {
    let mut sealed = String::with_capacity(prefix.len() + base64_len(NONCE + plaintext.len() + TAG));
    sealed.push_str(prefix);
    let mut bytes = Vec::with_capacity(NONCE + plaintext.len() + TAG);
    bytes.extend_from_slice(&[0; NONCE]);
    bytes.extend_from_slice(plaintext);
    seal_in_place(cipher, aad, &mut bytes, &mut sealed);
    sealed
}

/// Seals `bytes` (room for the nonce, then the plaintext) in place under a fresh nonce, adds
/// the tag, and appends the base64url of it all to `out`.
fn seal_in_place(cipher: &Cipher, aad: &[u8], bytes: &mut Vec<u8>, out: &mut String) {
    // A random 96-bit nonce from the thread's CSPRNG (ChaCha, seeded and reseeded by the OS),
    // instead of a system call per field.
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes[..NONCE]);
    let (nonce, plaintext) = bytes.split_at_mut(NONCE);
    let tag = cipher
        .encrypt_in_place_detached(Nonce::from_slice(nonce), aad, plaintext)
        .expect("AES-GCM seals any length we give it");
    bytes.extend_from_slice(&tag);
    URL_SAFE_NO_PAD.encode_string(&*bytes, out);
}

fn open_bytes(cipher: &Cipher, prefix: &str, aad: &[u8], text: &str) -> Result<Vec<u8>, CipherError> {
    let Some(body) = text.strip_prefix(prefix) else {
        return Err(unknown_prefix(text));
    };
    let bytes = URL_SAFE_NO_PAD.decode(body).map_err(|_| CipherError::Malformed)?;
    if bytes.len() < NONCE + TAG {
        return Err(CipherError::Malformed);
    }
    let (nonce, sealed) = bytes.split_at(NONCE);
    cipher.decrypt(Nonce::from_slice(nonce), Payload { msg: sealed, aad }).map_err(|_| CipherError::DoesNotOpen)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    const CONTEXT: FieldContext<'static> =
        FieldContext { event_id: "e-1", event_type: "accounts.AccountOpened", pointer: "/owner", subject: "acc-1" };

    fn kek() -> KeyEncryptionKey {
        KeyEncryptionKey::from_base64("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").unwrap()
    }

    #[test]
    fn the_forward_only_cipher_is_aes_256_gcm() {
        // Values sealed before it (by `Aes256Gcm`) must go on opening, and the other way round.
        let key = DataKey::generate();
        let (nonce, aad) = (Nonce::from_slice(&[7; NONCE]), b"context".as_slice());
        let sealed = Aes256Gcm::new(&key.0).encrypt(nonce, Payload { msg: b"Ada", aad }).unwrap();
        assert_eq!(key.cipher().decrypt(nonce, Payload { msg: &sealed, aad }).unwrap(), b"Ada");
        let sealed = key.cipher().encrypt(nonce, Payload { msg: b"Ada", aad }).unwrap();
        assert_eq!(Aes256Gcm::new(&key.0).decrypt(nonce, Payload { msg: &sealed, aad }).unwrap(), b"Ada");
    }

    #[test]
    fn a_sealed_field_opens_only_where_it_was_sealed() {
        let key = DataKey::generate();
        let short = seal(&key, &CONTEXT, &json!("Ada Lovelace"));
        assert!(short.starts_with(SHORT_PREFIX) && !short.contains("Ada"), "{short}");
        // Named, it says what it was sealed for: the same ciphertext.
        let sealed = name(&short, &CONTEXT).unwrap();
        assert!(sealed.starts_with(SEALED_PREFIX) && sealed.ends_with(short.rsplit('.').next().unwrap()), "{sealed}");
        assert_eq!(name(&sealed, &CONTEXT).as_ref(), Ok(&sealed));
        for form in [&short, &sealed] {
            assert!(is_sealed(&json!(form)));
            assert_eq!(open(&key, &CONTEXT, form), Ok(json!("Ada Lovelace")));
            assert_eq!(check(form, &CONTEXT), Ok(()));
            // Moved to another event, type, field or subject; or opened with another key.
            for moved in [
                FieldContext { event_id: "e-2", ..CONTEXT },
                FieldContext { event_type: "accounts.AccountClosed", ..CONTEXT },
                FieldContext { pointer: "/currency", ..CONTEXT },
                FieldContext { subject: "acc-2", ..CONTEXT },
            ] {
                assert_eq!(open(&key, &moved, form), Err(CipherError::DoesNotOpen), "{moved:?}");
                assert_eq!(name(form, &moved), Err(CipherError::DoesNotOpen), "{moved:?}");
                assert_eq!(check(form, &moved), Err(CipherError::DoesNotOpen), "{moved:?}");
            }
            assert_eq!(open(&DataKey::generate(), &CONTEXT, form), Err(CipherError::DoesNotOpen));
        }
        // Sealing twice gives two ciphertexts (a fresh nonce each time).
        assert_ne!(seal(&key, &CONTEXT, &json!("Ada Lovelace")), short);
        // The short form is shorter by what it leaves to its event.
        assert!(short.len() + 40 < sealed.len(), "{short} {sealed}");
        // Read alone, it says what it was sealed for, and opens with its subject's key.
        let field = SealedField::parse(&sealed).unwrap();
        assert_eq!(field.context(), CONTEXT);
        assert_eq!(field.open(&key), Ok(json!("Ada Lovelace")));
        // Its named context rewritten (to pass for another subject's): it no longer opens.
        let other = URL_SAFE_NO_PAD.encode(r#"["e-1","accounts.AccountOpened","/owner","acc-2"]"#);
        let moved = format!("elc1.{other}.{}", sealed.rsplit('.').next().unwrap());
        let field = SealedField::parse(&moved).unwrap();
        assert_eq!(field.context().subject, "acc-2");
        assert_eq!(field.open(&key), Err(CipherError::DoesNotOpen));
    }

    #[test]
    fn what_is_not_a_sealed_value_is_named() {
        let key = DataKey::generate();
        assert_eq!(open(&key, &CONTEXT, "Ada"), Err(CipherError::NotSealed));
        assert_eq!(open(&key, &CONTEXT, "elc9.AAAA"), Err(CipherError::UnknownFormat("elc9".into())));
        assert_eq!(open(&key, &CONTEXT, "elc1.!!!"), Err(CipherError::Malformed));
        assert_eq!(open(&key, &CONTEXT, "elc1.AAAA"), Err(CipherError::Malformed));
        assert_eq!(open(&key, &CONTEXT, "elc1.AAAA.AAAA"), Err(CipherError::Malformed));
        // A short form without its two parts, with a check that is not 8 bytes, or no ciphertext.
        assert_eq!(open(&key, &CONTEXT, "elc2.AAAA"), Err(CipherError::Malformed));
        assert_eq!(open(&key, &CONTEXT, "elc2.AAAA.AAAA"), Err(CipherError::Malformed));
        assert_eq!(open(&key, &CONTEXT, "elc2.AAAAAAAAAAA."), Err(CipherError::Malformed));
        assert_eq!(name("elc2.AAAAAAAAAAA.AAAA", &CONTEXT), Err(CipherError::DoesNotOpen));
        assert_eq!(check("elc2.AAAAAAAAAAA.AAAA", &CONTEXT), Err(CipherError::DoesNotOpen));
        assert_eq!(check("Ada", &CONTEXT), Err(CipherError::NotSealed));
        assert_eq!(check("elc2.AAAA", &CONTEXT), Err(CipherError::Malformed));
        assert_eq!(check("elc1.AAAA.AAAA", &CONTEXT), Err(CipherError::Malformed));
        assert_eq!(name("Ada", &CONTEXT), Err(CipherError::NotSealed));
        // Its named context, then a ciphertext too short to be one.
        let named = URL_SAFE_NO_PAD.encode(r#"["e-1","accounts.AccountOpened","/owner","acc-1"]"#);
        assert_eq!(open(&key, &CONTEXT, &format!("elc1.{named}.AAAA")), Err(CipherError::Malformed));
        assert_eq!(
            CipherError::UnknownFormat("elc9".into()).to_string(),
            "a sealed value of a format this version does not know (`elc9`)"
        );
    }

    #[test]
    fn a_data_key_unwraps_only_for_its_subject_and_key_encryption_key() {
        let key = DataKey::generate();
        let wrapped = key.wrap(&kek(), "acc-1");
        assert!(wrapped.starts_with(WRAPPED_PREFIX));
        let unwrapped = DataKey::unwrap(&kek(), "acc-1", &wrapped).unwrap();
        let sealed = seal(&key, &CONTEXT, &json!(42));
        assert_eq!(open(&unwrapped, &CONTEXT, &sealed), Ok(json!(42)));
        assert_eq!(DataKey::unwrap(&kek(), "acc-2", &wrapped).unwrap_err(), CipherError::DoesNotOpen);
        let other = KeyEncryptionKey::from_base64(&URL_SAFE_NO_PAD.encode([7u8; 32])).unwrap();
        assert_eq!(DataKey::unwrap(&other, "acc-1", &wrapped).unwrap_err(), CipherError::DoesNotOpen);
        // A sealed field is not a wrapped key, nor the other way round.
        assert_eq!(DataKey::unwrap(&kek(), "acc-1", &sealed).unwrap_err(), CipherError::UnknownFormat("elc2".into()));
    }

    #[test]
    fn a_blind_index_digest_is_the_same_for_the_same_value_in_the_same_index_only() {
        let index_key = kek().blind_index_key();
        let digest = index_key.digest("account-owner", &json!("Ada Lovelace"));
        assert_eq!(digest.len(), 32);
        assert_eq!(digest, kek().blind_index_key().digest("account-owner", &json!("Ada Lovelace")));
        assert_ne!(digest, index_key.digest("account-owner", &json!("ada lovelace")));
        assert_ne!(digest, index_key.digest("session", &json!("Ada Lovelace")));
        // Index and value do not run into each other.
        assert_ne!(index_key.digest("a", &json!("bc")), index_key.digest("a\"", &json!("c")));
        let other = KeyEncryptionKey::from_base64(&URL_SAFE_NO_PAD.encode([7u8; 32])).unwrap();
        assert_ne!(digest, other.blind_index_key().digest("account-owner", &json!("Ada Lovelace")));
        // Not the key-encryption key itself, nor any part of the value.
        assert_ne!(index_key.0.as_slice(), kek().0.as_slice());
        assert!(!String::from_utf8_lossy(&digest).contains("Ada"));
        assert_eq!(format!("{index_key:?}"), "BlindIndexKey([redacted])");
    }

    #[test]
    fn a_key_encryption_key_is_32_bytes_of_base64() {
        assert_eq!(
            KeyEncryptionKey::from_base64("c2hvcnQ=").unwrap_err(),
            "must be 32 bytes (256 bits) in base64, not 5"
        );
        assert_eq!(KeyEncryptionKey::from_base64("not base64!").unwrap_err(), "is not base64");
        assert_eq!(format!("{:?}", kek()), "KeyEncryptionKey([redacted])");
        assert_eq!(format!("{:?}", DataKey::generate()), "DataKey([redacted])");
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            ".{0,40}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map("[a-z]{1,6}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

        #[test]
        fn any_value_round_trips_in_any_context(
            value in json_value(),
            id in ".{0,20}", event_type in ".{0,20}", pointer in ".{0,20}", subject in ".{0,20}",
        ) {
            let key = DataKey::generate();
            let context = FieldContext { event_id: &id, event_type: &event_type, pointer: &pointer, subject: &subject };
            let sealed = seal(&key, &context, &value);
            prop_assert_eq!(open(&key, &context, &sealed), Ok(value.clone()));
            let named = name(&sealed, &context).unwrap();
            prop_assert_eq!(open(&key, &context, &named), Ok(value.clone()));
            prop_assert_eq!(SealedField::parse(&named).unwrap().open(&key), Ok(value));
        }

        #[test]
        fn any_change_to_a_sealed_value_or_its_context_stops_it_opening(
            value in json_value(), at in any::<prop::sample::Index>(), subject in "[a-z0-9-]{0,12}",
        ) {
            let key = DataKey::generate();
            let sealed = seal(&key, &CONTEXT, &value);
            // One character of the text changed, wherever it is (the dots between its parts kept).
            let i = at.index(sealed.len());
            let replaced = match &sealed[i..=i] { "A" => "B", "." => ".", _ => "A" };
            let altered = format!("{}{replaced}{}", &sealed[..i], &sealed[i + 1..]);
            prop_assert_eq!(open(&key, &CONTEXT, &altered).is_ok(), altered == sealed);
            // Another subject, unless it is the same one.
            let moved = FieldContext { subject: &subject, ..CONTEXT };
            prop_assert_eq!(open(&key, &moved, &sealed).is_ok(), subject == CONTEXT.subject);
        }

        #[test]
        fn no_text_makes_opening_panic(text in ".{0,200}", body in "[A-Za-z0-9_.-]{0,120}") {
            let key = DataKey::generate();
            let _ = open(&key, &CONTEXT, &text);
            let _ = open(&key, &CONTEXT, &format!("{SEALED_PREFIX}{body}"));
            let _ = SealedField::parse(&format!("{SEALED_PREFIX}{body}")).map(|field| field.open(&key));
            let _ = DataKey::unwrap(&kek(), "acc-1", &format!("{WRAPPED_PREFIX}{body}"));
            let _ = open(&key, &CONTEXT, &format!("{SHORT_PREFIX}{body}"));
            let _ = name(&format!("{SHORT_PREFIX}{body}"), &CONTEXT);
            let _ = name(&text, &CONTEXT);
        }
    }
}
