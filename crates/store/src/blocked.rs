//! The operators' block list of terminal keys. A blocked certificate
//! fingerprint can no longer open pairing requests at the gate; blocking
//! it ends the requests it holds. Each change is one transaction with its
//! audit record. A key that is some terminal's paired key cannot be
//! blocked before that terminal is unpaired, so the list never silently
//! overrides a pairing an operator approved.

use std::time::SystemTime;

use pairgate_pki::TerminalFingerprint;
use sqlx::Row;

use crate::audit::append;
use crate::pairing::{PairingState, close, open_requests_of};
use crate::terminals::bounded;
use crate::{Actor, Store, StoreError, millis};

/// A blocked terminal key.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct BlockedKey {
    /// Certificate fingerprint.
    pub fingerprint: TerminalFingerprint,
    /// Why, as the operator wrote it.
    pub reason: String,
    /// Who blocked it.
    pub blocked_by: String,
    /// When (Unix ms).
    pub blocked_at: i64,
}

fn blocked_key(row: &sqlx::any::AnyRow) -> Result<BlockedKey, StoreError> {
    Ok(BlockedKey {
        fingerprint: crate::parsed(row, "fingerprint", || "blocked key".to_owned())?,
        reason: row.try_get("reason")?,
        blocked_by: row.try_get("blocked_by")?,
        blocked_at: row.try_get("blocked_at")?,
    })
}

impl Store {
    /// Whether `fingerprint` is blocked.
    pub async fn is_blocked(&self, fingerprint: &TerminalFingerprint) -> Result<bool, StoreError> {
        Ok(
            sqlx::query("SELECT fingerprint FROM blocked_keys WHERE fingerprint = $1")
                .bind(fingerprint.to_hex())
                .fetch_optional(self.pool())
                .await?
                .is_some(),
        )
    }

    /// The block list, newest first.
    pub async fn blocked_keys(&self) -> Result<Vec<BlockedKey>, StoreError> {
        sqlx::query(
            "SELECT fingerprint, reason, blocked_by, blocked_at FROM blocked_keys \
             ORDER BY blocked_at DESC, fingerprint",
        )
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(blocked_key)
        .collect()
    }

    /// Blocks `fingerprint` and ends the pairing requests it holds
    /// (rejected); audited.
    pub async fn block_key(
        &self,
        fingerprint: &TerminalFingerprint,
        reason: &str,
        actor: &Actor,
        now: SystemTime,
    ) -> Result<BlockedKey, StoreError> {
        let _signal = self.signal_decisions();
        bounded("reason", reason, 200)?;
        let at = millis(now);
        let fp = fingerprint.to_hex();
        let mut tx = self.begin_write().await?;
        if let Some(row) = sqlx::query("SELECT serial FROM terminals WHERE paired_fingerprint = $1")
            .bind(&fp)
            .fetch_optional(&mut *tx)
            .await?
        {
            let serial: String = row.try_get("serial")?;
            return Err(StoreError::Conflict(format!(
                "key {fp} is the paired key of terminal {serial}; unpair it first"
            )));
        }
        let exists = sqlx::query("SELECT fingerprint FROM blocked_keys WHERE fingerprint = $1")
            .bind(&fp)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_some() {
            return Err(StoreError::AlreadyExists(format!("block of key {fp}")));
        }
        sqlx::query(
            "INSERT INTO blocked_keys (fingerprint, reason, blocked_by, blocked_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&fp)
        .bind(reason)
        .bind(actor.name())
        .bind(at)
        .execute(&mut *tx)
        .await?;
        let mut ended = Vec::new();
        for req in open_requests_of(&mut tx, &fp).await? {
            close(
                &mut tx,
                &req,
                PairingState::Rejected,
                actor,
                "pairing.reject",
                at,
                serde_json::json!({ "request": req.id, "fingerprint": fp, "because": "key blocked" }),
            )
            .await?;
            ended.push(req.id);
        }
        append(
            &mut tx,
            at,
            actor,
            "key.block",
            &fp,
            &serde_json::json!({ "reason": reason, "ended_requests": ended }),
        )
        .await?;
        tx.commit().await?;
        Ok(BlockedKey {
            fingerprint: *fingerprint,
            reason: reason.to_owned(),
            blocked_by: actor.name().to_owned(),
            blocked_at: at,
        })
    }

    /// Takes `fingerprint` off the block list; audited.
    pub async fn unblock_key(
        &self,
        fingerprint: &TerminalFingerprint,
        actor: &Actor,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        let fp = fingerprint.to_hex();
        let mut tx = self.begin_write().await?;
        let removed = sqlx::query("DELETE FROM blocked_keys WHERE fingerprint = $1")
            .bind(&fp)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if removed == 0 {
            return Err(StoreError::NotFound(format!("block of key {fp}")));
        }
        append(
            &mut tx,
            millis(now),
            actor,
            "key.unblock",
            &fp,
            &serde_json::json!({}),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
