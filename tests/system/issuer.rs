//! A JWT issuer for the tests and the benchmarks: RSA keys made with openssl, and their key set
//! served over HTTP.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

/// An RSA key made with openssl, as an identity provider holds it.
pub struct SigningKey {
    pem: Vec<u8>,
    /// The public half as a JWK.
    pub jwk: Value,
}

impl SigningKey {
    pub fn new(dir: &Path, kid: &str) -> Self {
        let path = dir.join(format!("{kid}.pem"));
        let made = Command::new("openssl")
            .args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(made.status.success(), "openssl genpkey: {}", String::from_utf8_lossy(&made.stderr));
        let modulus = Command::new("openssl").args(["rsa", "-noout", "-modulus", "-in"]).arg(&path).output().unwrap();
        let hex = String::from_utf8_lossy(&modulus.stdout).trim().strip_prefix("Modulus=").unwrap().to_string();
        let bytes: Vec<u8> =
            (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
        let n = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let jwk = json!({"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig", "n": n, "e": "AQAB"});
        Self { pem: std::fs::read(&path).unwrap(), jwk }
    }

    pub fn sign(&self, kid: &str, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(kid.to_string());
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_rsa_pem(&self.pem).unwrap()).unwrap()
    }
}

/// The identity provider's key set over HTTP, counting its fetches.
pub struct KeySetServer {
    pub url: String,
    pub keys: Arc<Mutex<Vec<Value>>>,
    pub fetches: Arc<AtomicUsize>,
}

impl KeySetServer {
    pub async fn start(keys: Vec<Value>) -> Self {
        let keys = Arc::new(Mutex::new(keys));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (served, counted) = (keys.clone(), fetches.clone());
        let app = axum::Router::new().route(
            "/jwks.json",
            axum::routing::get(move || {
                let (served, counted) = (served.clone(), counted.clone());
                async move {
                    counted.fetch_add(1, Ordering::SeqCst);
                    axum::Json(json!({ "keys": *served.lock().unwrap() }))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, keys, fetches }
    }
}
