//! The append-only, hash-chained audit log. Each record's hash covers its
//! fields and the previous record's hash, so editing, deleting or
//! reordering a row breaks the chain from that row on. Appends run inside
//! the caller's transaction, so the record and the change it records
//! commit together or not at all.
//!
//! A chain alone does not stop someone who can write to the database:
//! they can edit a record and recompute every hash after it. So the
//! server signs checkpoints with its identity key (`checkpoints`): each
//! lists the hashes of a run of records, and verification (`chain`, pure)
//! compares every record with the signed list, naming the record that
//! was changed. Exports (`export`) carry records and checkpoints as JSON
//! lines, verified offline against the server's pin.

use std::time::SystemTime;

use sqlx::{Any, Row, Transaction};

use crate::{Actor, Store, StoreError};

mod chain;
mod checkpoints;
mod export;

pub use chain::record_hash;
pub use chain::{AuditVerification, ChainVerifier, Checkpoint};
pub use checkpoints::CheckpointSigner;
pub use export::{EXPORT_FORMAT, ExportLine, verify_export};

/// One audit record.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuditRecord {
    /// Position in the chain, from 1.
    pub seq: i64,
    /// Unix milliseconds.
    pub at: i64,
    /// Operator or service.
    pub actor: String,
    /// What happened, e.g. `terminal.register`.
    pub action: String,
    /// What it happened to, e.g. a serial.
    pub subject: String,
    /// JSON details.
    pub detail: String,
    /// Hash of the previous record (64 hex digits).
    pub prev_hash: String,
    /// This record's hash.
    pub hash: String,
}

/// Appends a record inside `tx`. Updating the chain head first takes its
/// row lock (PostgreSQL) or the write lock (SQLite), so concurrent appends
/// queue instead of forking the chain.
pub(crate) async fn append(
    tx: &mut Transaction<'_, Any>,
    at: i64,
    actor: &Actor,
    action: &str,
    subject: &str,
    detail: &serde_json::Value,
) -> Result<i64, StoreError> {
    let head = sqlx::query("UPDATE audit_head SET seq = seq + 1 WHERE id = 1 RETURNING seq, hash")
        .fetch_one(&mut **tx)
        .await?;
    let seq: i64 = head.try_get("seq")?;
    let prev: String = head.try_get("hash")?;
    let detail = detail.to_string();
    let hash = record_hash(seq, at, actor.name(), action, subject, &detail, &prev);
    sqlx::query("UPDATE audit_head SET hash = $1 WHERE id = 1")
        .bind(&hash)
        .execute(&mut **tx)
        .await?;
    sqlx::query(
        "INSERT INTO audit_log (seq, at, actor, action, subject, detail, prev_hash, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(seq)
    .bind(at)
    .bind(actor.name())
    .bind(action)
    .bind(subject)
    .bind(&detail)
    .bind(&prev)
    .bind(&hash)
    .execute(&mut **tx)
    .await?;
    Ok(seq)
}

pub(crate) fn record(row: &sqlx::any::AnyRow) -> Result<AuditRecord, StoreError> {
    Ok(AuditRecord {
        seq: row.try_get("seq")?,
        at: row.try_get("at")?,
        actor: row.try_get("actor")?,
        action: row.try_get("action")?,
        subject: row.try_get("subject")?,
        detail: row.try_get("detail")?,
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
    })
}

/// A record of refused outside traffic, written by the gate in bulk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The audit action, e.g. `pairing.unknown_serial`.
    pub action: String,
    /// What it was about (a source address).
    pub subject: String,
    /// Counts and an example.
    pub detail: serde_json::Value,
}

impl Store {
    /// Appends `refusals` as audit records of the actor `gate`, in one
    /// transaction.
    pub async fn record_refusals(
        &self,
        refusals: &[Refusal],
        now: SystemTime,
    ) -> Result<(), StoreError> {
        if refusals.is_empty() {
            return Ok(());
        }
        let at = crate::millis(now);
        let gate = Actor::new("gate");
        let mut tx = self.begin_write().await?;
        for r in refusals {
            append(&mut tx, at, &gate, &r.action, &r.subject, &r.detail).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The most recent `limit` audit records, newest first.
    pub async fn audit_records(&self, limit: i64) -> Result<Vec<AuditRecord>, StoreError> {
        let rows = sqlx::query("SELECT seq, at, actor, action, subject, detail, prev_hash, hash FROM audit_log ORDER BY seq DESC LIMIT $1")
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(record).collect()
    }
}
