//! Gateway API keys: stored as hashes, with the event type patterns each may publish.

use chrono::{DateTime, Utc};

use serde_json::json;

use crate::audit::NewAuditEntry;
use crate::{Error, Store};

/// A stored key (never its secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub key_id: String,
    pub name: String,
    pub secret_hash: Vec<u8>,
    pub event_types: Vec<String>,
    /// What else it may do: `read:<projection>`, `read:*`, `status`.
    pub scopes: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl Store {
    /// Stores a key, and records who created it in the audit.
    pub async fn insert_api_key(
        &self,
        key_id: &str,
        name: &str,
        secret_hash: &[u8],
        event_types: &[String],
        scopes: &[String],
        actor: &str,
    ) -> Result<(), Error> {
        let mut tx = self.begin().await?;
        sqlx::query!(
            "INSERT INTO eventline_api_keys (key_id, name, secret_hash, event_types, scopes) VALUES ($1, $2, $3, $4, $5)",
            key_id,
            name,
            secret_hash,
            event_types,
            scopes
        )
        .execute(&mut *tx.tx)
        .await?;
        tx.audit(NewAuditEntry {
            actor,
            action: "keys.create",
            projection: None,
            target: json!({ "key_id": key_id, "name": name, "types": event_types, "scopes": scopes }),
            reason: None,
            outcome: json!({ "created": true }),
        })
        .await?;
        tx.commit().await
    }

    /// The key with this id, revoked or not.
    pub async fn api_key(&self, key_id: &str) -> Result<Option<ApiKey>, Error> {
        Ok(sqlx::query_as!(
            ApiKey,
            "SELECT key_id, name, secret_hash, event_types, scopes, created_at, revoked_at FROM eventline_api_keys WHERE key_id = $1",
            key_id
        )
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Every key, oldest first.
    pub async fn api_keys(&self) -> Result<Vec<ApiKey>, Error> {
        Ok(sqlx::query_as!(
            ApiKey,
            "SELECT key_id, name, secret_hash, event_types, scopes, created_at, revoked_at FROM eventline_api_keys ORDER BY created_at, key_id"
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Revokes a key, recording who did in the audit; returns false (and records nothing) when
    /// there is no such key or it was already revoked.
    pub async fn revoke_api_key(&self, key_id: &str, actor: &str) -> Result<bool, Error> {
        let mut tx = self.begin().await?;
        let revoked = sqlx::query!(
            "UPDATE eventline_api_keys SET revoked_at = now() WHERE key_id = $1 AND revoked_at IS NULL",
            key_id
        )
        .execute(&mut *tx.tx)
        .await?
        .rows_affected()
            == 1;
        if revoked {
            tx.audit(NewAuditEntry {
                actor,
                action: "keys.revoke",
                projection: None,
                target: json!({ "key_id": key_id }),
                reason: None,
                outcome: json!({ "revoked": true }),
            })
            .await?;
            tx.commit().await?;
        }
        Ok(revoked)
    }
}
