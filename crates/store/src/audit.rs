//! The append-only, hash-chained audit log. Each record's hash covers its
//! fields and the previous record's hash, so editing, deleting or
//! reordering a row breaks the chain from that row on; `verify` finds the
//! first broken row. Appends run inside the caller's transaction, so the
//! record and the change it records commit together or not at all.

use std::time::SystemTime;

use aws_lc_rs::digest;
use sqlx::{Any, Row, Transaction};

use crate::{Actor, Store, StoreError};

/// Domain separation for the v1 record hash.
const LABEL: &[u8] = b"pairgate audit v1";

/// One audit record.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
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

/// The outcome of checking the chain.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AuditVerification {
    /// Records checked.
    pub records: i64,
    /// The first record whose hash or link does not match, if any.
    pub first_broken: Option<i64>,
}

impl AuditVerification {
    /// Whether the whole chain is intact.
    pub fn intact(&self) -> bool {
        self.first_broken.is_none()
    }
}

fn field(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// The v1 hash of a record: SHA-256 over the label and every field,
/// length-prefixed so no two records encode alike.
pub(crate) fn record_hash(
    seq: i64,
    at: i64,
    actor: &str,
    action: &str,
    subject: &str,
    detail: &str,
    prev: &str,
) -> String {
    let mut input = Vec::with_capacity(256);
    field(&mut input, LABEL);
    field(&mut input, &seq.to_be_bytes());
    field(&mut input, &at.to_be_bytes());
    field(&mut input, actor.as_bytes());
    field(&mut input, action.as_bytes());
    field(&mut input, subject.as_bytes());
    field(&mut input, detail.as_bytes());
    field(&mut input, prev.as_bytes());
    hex::encode(digest::digest(&digest::SHA256, &input))
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

    /// Recomputes the whole chain: every record's hash, its link to the
    /// previous one, gapless sequence numbers, and the head.
    pub async fn verify_audit(&self) -> Result<AuditVerification, StoreError> {
        let rows = sqlx::query("SELECT seq, at, actor, action, subject, detail, prev_hash, hash FROM audit_log ORDER BY seq")
            .fetch_all(&self.pool)
            .await?;
        let mut prev = "0".repeat(64);
        let mut expected_seq = 1;
        let mut count = 0;
        for row in &rows {
            let r = record(row)?;
            count += 1;
            let recomputed = record_hash(
                r.seq,
                r.at,
                &r.actor,
                &r.action,
                &r.subject,
                &r.detail,
                &r.prev_hash,
            );
            if r.seq != expected_seq || r.prev_hash != prev || recomputed != r.hash {
                return Ok(AuditVerification {
                    records: count,
                    first_broken: Some(expected_seq.min(r.seq)),
                });
            }
            prev = r.hash;
            expected_seq += 1;
        }
        let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        let (head_seq, head_hash): (i64, String) = (head.try_get("seq")?, head.try_get("hash")?);
        if head_seq != expected_seq - 1 || head_hash != prev {
            // Rows were deleted from the end.
            return Ok(AuditVerification {
                records: count,
                first_broken: Some(expected_seq),
            });
        }
        Ok(AuditVerification {
            records: count,
            first_broken: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_binds_every_field() {
        let base = record_hash(1, 2, "a", "b", "c", "{}", &"0".repeat(64));
        assert_eq!(base.len(), 64);
        assert_ne!(
            base,
            record_hash(2, 2, "a", "b", "c", "{}", &"0".repeat(64))
        );
        assert_ne!(
            base,
            record_hash(1, 2, "ab", "", "c", "{}", &"0".repeat(64))
        );
        assert_ne!(
            base,
            record_hash(1, 2, "a", "b", "c", "{ }", &"0".repeat(64))
        );
    }
}
