//! Terminal re-key (issue 17): the server's single-use challenges, the
//! successor key a terminal proves over the master, its switch to that
//! key, and each terminal's key lineage. Recording a successor and
//! switching to it each happen in one transaction with their audit record
//! and a paired-set generation bump, so every instance's master learns of
//! them as it learns of an unpair.

use std::time::SystemTime;

use pairgate_pki::{CertificateInfo, ProvenSuccessor, TerminalFingerprint};
use sqlx::{Any, Row, Transaction};

use crate::audit::append;
use crate::paired::bump_generation;
use crate::terminals::{Serial, TerminalState};
use crate::{Actor, Store, StoreError, millis};

/// One key of a terminal's lineage.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TerminalKey {
    /// Its certificate's fingerprint.
    pub fingerprint: TerminalFingerprint,
    /// The key it replaced (`None` for the key the terminal paired with).
    pub predecessor: Option<TerminalFingerprint>,
    /// When the server recorded it (Unix ms).
    pub recorded_at: i64,
    /// When it was first used (Unix ms); for the paired key, when paired.
    pub activated_at: Option<i64>,
    /// When it stopped being served (Unix ms).
    pub retired_at: Option<i64>,
    /// Its certificate's end of validity (Unix ms).
    pub not_after: i64,
}

/// Why a re-key was not recorded (each a refusal the terminal can act on).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RekeyRefusal {
    /// The challenge is unknown, already used, expired, or another key's.
    BadChallenge,
    /// The terminal is not paired with the key the request came with.
    NotCurrent,
    /// The new key is, or was, some terminal's key.
    KeyInUse,
}

/// What [`Store::record_successor`] records.
#[derive(Clone, Copy, Debug)]
pub struct SuccessorRequest<'a> {
    /// The new key, proven.
    pub proven: &'a ProvenSuccessor,
    /// The challenge the proof signed (hex), used up here.
    pub challenge: &'a str,
    /// The new certificate (DER).
    pub certificate: &'a [u8],
    /// How long the old key stays served beside the new one at most.
    pub overlap: std::time::Duration,
    /// The request came with an expired certificate (within the grace).
    pub predecessor_expired: bool,
}

/// A successor just recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedSuccessor {
    /// The new fingerprint.
    pub fingerprint: TerminalFingerprint,
    /// The one it replaces.
    pub previous: TerminalFingerprint,
    /// The old key is served until then at the latest (Unix ms).
    pub old_key_until: i64,
}

fn terminal_actor(serial: &str) -> Actor {
    Actor::new(format!("terminal:{serial}"))
}

fn not_after_millis(certificate: &[u8]) -> i64 {
    CertificateInfo::parse(certificate)
        .map(|info| millis(info.validity().1))
        .unwrap_or(0)
}

impl Store {
    /// Keeps `challenge` (hex) as the one open re-key challenge of
    /// terminal `serial` on key `fingerprint` until `expires_at`,
    /// replacing any earlier one.
    pub async fn issue_rekey_challenge(
        &self,
        serial: &Serial,
        fingerprint: &TerminalFingerprint,
        challenge: &str,
        expires_at: SystemTime,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO rekey_challenges (serial, fingerprint, challenge, expires_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (serial) DO UPDATE SET \
             fingerprint = excluded.fingerprint, challenge = excluded.challenge, \
             expires_at = excluded.expires_at",
        )
        .bind(serial.as_str())
        .bind(fingerprint.to_hex())
        .bind(challenge)
        .bind(millis(expires_at))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records `proven` as the successor of its terminal's paired key,
    /// using up `challenge`: the old key stays served until the new one
    /// is first used or `overlap` has passed. Audited as `terminal.rekey`.
    pub async fn record_successor(
        &self,
        request: SuccessorRequest<'_>,
        now: SystemTime,
    ) -> Result<Result<RecordedSuccessor, RekeyRefusal>, StoreError> {
        let SuccessorRequest {
            proven,
            challenge,
            certificate,
            overlap,
            predecessor_expired,
        } = request;
        let at = millis(now);
        let serial = Serial::new(&proven.serial)
            .map_err(|_| StoreError::Invalid(format!("serial {:?}", proven.serial)))?;
        let mut tx = self.begin_write().await?;
        let used = sqlx::query(
            "DELETE FROM rekey_challenges WHERE serial = $1 AND fingerprint = $2 \
             AND challenge = $3 AND expires_at >= $4",
        )
        .bind(serial.as_str())
        .bind(proven.predecessor.to_hex())
        .bind(challenge)
        .bind(at)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if used != 1 {
            return Ok(Err(RekeyRefusal::BadChallenge));
        }
        let Some(terminal) = self.terminal_in(&mut tx, &serial).await? else {
            return Ok(Err(RekeyRefusal::NotCurrent));
        };
        if terminal.state != TerminalState::Paired
            || terminal.suspended_at.is_some()
            || terminal.paired_fingerprint != Some(proven.predecessor)
        {
            return Ok(Err(RekeyRefusal::NotCurrent));
        }
        if key_known(&mut tx, &proven.fingerprint).await? {
            return Ok(Err(RekeyRefusal::KeyInUse));
        }
        let paired_at = terminal.paired_at.unwrap_or(at);
        ensure_root(&mut tx, &serial, &proven.predecessor, paired_at).await?;
        if let Some(earlier) = terminal.successor_fingerprint {
            retire(&mut tx, &earlier, at).await?;
        }
        sqlx::query(
            "INSERT INTO terminal_keys (fingerprint, serial, certificate, predecessor, recorded_at, \
             not_after) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(proven.fingerprint.to_hex())
        .bind(serial.as_str())
        .bind(certificate)
        .bind(proven.predecessor.to_hex())
        .bind(at)
        .bind(not_after_millis(certificate))
        .execute(&mut *tx)
        .await?;
        let until = at.saturating_add(i64::try_from(overlap.as_millis()).unwrap_or(i64::MAX));
        sqlx::query(
            "UPDATE terminals SET successor_fingerprint = $1, successor_until = $2 WHERE serial = $3",
        )
        .bind(proven.fingerprint.to_hex())
        .bind(until)
        .bind(serial.as_str())
        .execute(&mut *tx)
        .await?;
        let detail = serde_json::json!({
            "fingerprint": proven.fingerprint, "previous_fingerprint": proven.predecessor,
            "replaced_successor": terminal.successor_fingerprint, "old_key_until": until,
            "previous_certificate_expired": predecessor_expired,
        });
        let actor = terminal_actor(serial.as_str());
        append(
            &mut tx,
            at,
            &actor,
            "terminal.rekey",
            serial.as_str(),
            &detail,
        )
        .await?;
        bump_generation(&mut tx, self.backend, serial.as_str(), at).await?;
        tx.commit().await?;
        Ok(Ok(RecordedSuccessor {
            fingerprint: proven.fingerprint,
            previous: proven.predecessor,
            old_key_until: until,
        }))
    }

    /// Makes `successor` terminal `serial`'s paired key on its first use
    /// and retires the old one; `false` when it is not (or no longer) the
    /// terminal's successor. Audited as `terminal.rekey.activate`.
    pub async fn activate_successor(
        &self,
        serial: &Serial,
        successor: &TerminalFingerprint,
        now: SystemTime,
    ) -> Result<bool, StoreError> {
        let at = millis(now);
        let mut tx = self.begin_write().await?;
        let Some(terminal) = self.terminal_in(&mut tx, serial).await? else {
            return Ok(false);
        };
        let (Some(old), Some(current)) =
            (terminal.paired_fingerprint, terminal.successor_fingerprint)
        else {
            return Ok(false);
        };
        if current != *successor || terminal.state != TerminalState::Paired {
            return Ok(false);
        }
        sqlx::query(
            "UPDATE terminals SET paired_fingerprint = successor_fingerprint, \
             successor_fingerprint = NULL, successor_until = NULL WHERE serial = $1",
        )
        .bind(serial.as_str())
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE terminal_keys SET activated_at = $1 WHERE fingerprint = $2")
            .bind(at)
            .bind(successor.to_hex())
            .execute(&mut *tx)
            .await?;
        retire(&mut tx, &old, at).await?;
        let detail = serde_json::json!({ "fingerprint": successor, "previous_fingerprint": old });
        let actor = terminal_actor(serial.as_str());
        append(
            &mut tx,
            at,
            &actor,
            "terminal.rekey.activate",
            serial.as_str(),
            &detail,
        )
        .await?;
        bump_generation(&mut tx, self.backend, serial.as_str(), at).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Terminal `serial`'s keys since it last paired, oldest first (empty
    /// until it first re-keys: then the paired key is its root).
    pub async fn key_lineage(&self, serial: &Serial) -> Result<Vec<TerminalKey>, StoreError> {
        let rows = sqlx::query(
            "SELECT k.fingerprint, k.predecessor, k.recorded_at, k.activated_at, k.retired_at, \
             k.not_after FROM terminal_keys k JOIN terminals t ON t.serial = k.serial \
             WHERE k.serial = $1 AND k.recorded_at >= COALESCE(t.paired_at, 0) \
             ORDER BY k.recorded_at, k.fingerprint",
        )
        .bind(serial.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(TerminalKey {
                    fingerprint: crate::parsed(row, "fingerprint", || {
                        format!("key fingerprint of {serial}")
                    })?,
                    predecessor: crate::parsed_opt(row, "predecessor", || {
                        format!("key predecessor of {serial}")
                    })?,
                    recorded_at: row.try_get("recorded_at")?,
                    activated_at: row.try_get("activated_at")?,
                    retired_at: row.try_get("retired_at")?,
                    not_after: row.try_get("not_after")?,
                })
            })
            .collect()
    }
}

/// Whether `fingerprint` is, or was, any terminal's key.
async fn key_known(
    tx: &mut Transaction<'static, Any>,
    fingerprint: &TerminalFingerprint,
) -> Result<bool, StoreError> {
    let hex = fingerprint.to_hex();
    let row = sqlx::query(
        "SELECT (SELECT COUNT(*) FROM terminal_keys WHERE fingerprint = $1) + \
         (SELECT COUNT(*) FROM terminals WHERE paired_fingerprint = $1 OR successor_fingerprint = $1) \
         AS n",
    )
    .bind(&hex)
    .fetch_one(&mut **tx)
    .await?;
    Ok(row.try_get::<i64, _>("n")? > 0)
}

/// Puts the key a terminal paired with at the root of its lineage, from
/// its approved pairing request, when it is not there yet.
async fn ensure_root(
    tx: &mut Transaction<'static, Any>,
    serial: &Serial,
    fingerprint: &TerminalFingerprint,
    paired_at: i64,
) -> Result<(), StoreError> {
    let hex = fingerprint.to_hex();
    let known = sqlx::query("SELECT 1 AS one FROM terminal_keys WHERE fingerprint = $1")
        .bind(&hex)
        .fetch_optional(&mut **tx)
        .await?;
    if known.is_some() {
        return Ok(());
    }
    let certificate: Vec<u8> = sqlx::query(
        "SELECT certificate FROM pairing_requests WHERE serial = $1 AND fingerprint = $2 \
         AND state = 'approved' ORDER BY created_at DESC LIMIT 1",
    )
    .bind(serial.as_str())
    .bind(&hex)
    .fetch_optional(&mut **tx)
    .await?
    .map(|row| row.try_get("certificate"))
    .transpose()?
    .unwrap_or_default();
    sqlx::query(
        "INSERT INTO terminal_keys (fingerprint, serial, certificate, recorded_at, activated_at, \
         not_after) VALUES ($1, $2, $3, $4, $4, $5)",
    )
    .bind(&hex)
    .bind(serial.as_str())
    .bind(&certificate)
    .bind(paired_at)
    .bind(not_after_millis(&certificate))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Marks a key of a lineage as no longer served.
pub(crate) async fn retire(
    tx: &mut Transaction<'static, Any>,
    fingerprint: &TerminalFingerprint,
    at: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE terminal_keys SET retired_at = $1 WHERE fingerprint = $2 AND retired_at IS NULL",
    )
    .bind(at)
    .bind(fingerprint.to_hex())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Marks every key of terminal `serial` as no longer served (it was
/// unpaired, or paired again with another key).
pub(crate) async fn retire_lineage(
    tx: &mut Transaction<'static, Any>,
    serial: &Serial,
    at: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE terminal_keys SET retired_at = $1 WHERE serial = $2 AND retired_at IS NULL",
    )
    .bind(at)
    .bind(serial.as_str())
    .execute(&mut **tx)
    .await?;
    Ok(())
}
