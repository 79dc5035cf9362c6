//! Pairing requests, the verbs of the pairing protocol (docs/protocol.md): a terminal
//! opens a request with a commitment to its nonce, reveals the nonce, and
//! an operator with a fresh TOTP approves it by the code the location
//! contact reads out. Each verb is one transaction with its audit record;
//! approval also sets the terminal's paired fingerprint and bumps the
//! paired-set generation.
//!
//! States: `awaiting_reveal` → `pending` → `approved`; or `rejected`,
//! `expired`, `superseded` (another fingerprint asked for the same serial),
//! `failed` (a wrong reveal or three wrong codes). On the wire the two open
//! states are both `pending` and `failed` is `rejected`.

use std::time::{Duration, SystemTime};

use pairgate_pki::{Commitment, Nonce, PairingCode, SpkiPin, TerminalFingerprint};
use sqlx::{Any, Row, Transaction};

use crate::audit::append;
use crate::operators::SecondFactor;
use crate::paired::bump_generation;
use crate::{Actor, Changer, Serial, Store, StoreError, Terminal, millis};

mod state;

pub use state::PairingState;

/// Wrong codes that end a request.
pub const MAX_CODE_ATTEMPTS: i64 = 3;

/// A pairing request as stored.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PairingRequest {
    /// Request id (32 hex digits).
    pub id: String,
    /// Terminal serial.
    pub serial: String,
    /// Fingerprint of the TLS client certificate that asked.
    pub fingerprint: String,
    /// That certificate (DER).
    #[serde(skip)]
    pub certificate: Vec<u8>,
    /// The address it came from.
    pub remote_address: String,
    /// Model reported by the terminal.
    pub model: String,
    /// Firmware reported by the terminal.
    pub firmware: String,
    /// hex(SHA-256(terminal nonce)).
    pub commitment: String,
    /// The revealed terminal nonce.
    pub terminal_nonce: Option<String>,
    /// The server's nonce.
    pub server_nonce: String,
    /// SPKI pin of the server key the gate presented in this session.
    pub server_pin: String,
    /// State.
    pub state: PairingState,
    /// Flagged for the operator's attention: it superseded another
    /// fingerprint's request, or the terminal is paired with another key.
    pub flagged: bool,
    /// The request it superseded.
    pub supersedes: Option<String>,
    /// Wrong codes entered so far.
    pub failed_attempts: i64,
    /// Opened (Unix ms).
    pub created_at: i64,
    /// Expires (Unix ms).
    pub expires_at: i64,
    /// Decided (Unix ms).
    pub decided_at: Option<i64>,
    /// Decided by (operator or service).
    pub decided_by: Option<String>,
}

impl PairingRequest {
    /// The code the server derives from what it saw, once revealed.
    pub fn code(&self) -> Result<Option<PairingCode>, StoreError> {
        let Some(terminal_nonce) = &self.terminal_nonce else {
            return Ok(None);
        };
        let corrupt = |what: &str| StoreError::Corrupt(format!("{what} of request {}", self.id));
        let fp: TerminalFingerprint = self
            .fingerprint
            .parse()
            .map_err(|_| corrupt("fingerprint"))?;
        let pin: SpkiPin = self.server_pin.parse().map_err(|_| corrupt("server pin"))?;
        let tn: Nonce = terminal_nonce
            .parse()
            .map_err(|_| corrupt("terminal nonce"))?;
        let sn: Nonce = self
            .server_nonce
            .parse()
            .map_err(|_| corrupt("server nonce"))?;
        Ok(Some(PairingCode::derive(&fp, &pin, &tn, &sn)))
    }
}

/// What the gate saw when a terminal asked to pair.
#[derive(Clone, Debug)]
pub struct PairingAttempt {
    /// The serial it claims.
    pub serial: Serial,
    /// Fingerprint of its TLS client certificate.
    pub fingerprint: TerminalFingerprint,
    /// That certificate (DER).
    pub certificate: Vec<u8>,
    /// Its address.
    pub remote_address: String,
    /// Reported model.
    pub model: String,
    /// Reported firmware.
    pub firmware: String,
    /// Its commitment to a nonce.
    pub commitment: Commitment,
    /// The SPKI pin of the server key presented in this TLS session.
    pub server_pin: SpkiPin,
}

/// Bounds on pairing requests, so that no single unauthenticated client
/// can fill the queue or keep a serial from pairing.
#[derive(Clone, Copy, Debug)]
pub struct PairingLimits {
    /// How long a revealed request stays open.
    pub ttl: Duration,
    /// How long a request may wait for its nonce to be revealed.
    pub reveal_ttl: Duration,
    /// How many requests may be open at once, across all serials.
    pub max_open: i64,
    /// Open requests one client certificate may hold.
    pub max_open_per_key: i64,
    /// Open requests from one source address.
    pub max_open_per_address: i64,
    /// The window of the supersede limits.
    pub supersede_window: Duration,
    /// Requests one certificate may supersede within the window.
    pub supersedes_per_key: i64,
    /// Requests superseded from one address within the window.
    pub supersedes_per_address: i64,
    /// Times one serial's request may be superseded within the window.
    pub supersedes_per_serial: i64,
    /// Renewals (the same key, a new commitment) one request allows.
    pub max_renewals: i64,
}

impl Default for PairingLimits {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(24 * 3600),
            reveal_ttl: Duration::from_secs(300),
            max_open: 1000,
            max_open_per_key: 2,
            max_open_per_address: 50,
            supersede_window: Duration::from_secs(3600),
            supersedes_per_key: 2,
            supersedes_per_address: 10,
            supersedes_per_serial: 6,
            max_renewals: 10,
        }
    }
}

/// The answer to a pairing attempt.
#[derive(Clone, Debug)]
pub enum Opened {
    /// The fingerprint is already paired to this serial.
    Paired(Terminal),
    /// An open request (new, or the same one again).
    Pending(PairingRequest),
}

/// The columns `request()` reads.
macro_rules! request_columns {
    () => {
        "id, serial, fingerprint, certificate, remote_address, model, firmware, commitment, \
         terminal_nonce, server_nonce, server_pin, state, flagged, supersedes, failed_attempts, \
         created_at, expires_at, decided_at, decided_by"
    };
}

/// The columns the row reader takes, for queries built elsewhere.
pub(crate) const COLUMNS: &str = request_columns!();

// After the macro, which they use.
mod open;
mod reading;

/// The open requests a certificate holds, inside `tx`.
pub(crate) async fn open_requests_of(
    tx: &mut Transaction<'_, Any>,
    fingerprint: &str,
) -> Result<Vec<PairingRequest>, StoreError> {
    sqlx::query(concat!(
        "SELECT ",
        request_columns!(),
        " FROM pairing_requests WHERE fingerprint = $1 AND state IN ('awaiting_reveal', 'pending')"
    ))
    .bind(fingerprint)
    .fetch_all(&mut **tx)
    .await?
    .iter()
    .map(request)
    .collect()
}

pub(crate) fn request(row: &sqlx::any::AnyRow) -> Result<PairingRequest, StoreError> {
    let state: String = row.try_get("state")?;
    Ok(PairingRequest {
        id: row.try_get("id")?,
        serial: row.try_get("serial")?,
        fingerprint: row.try_get("fingerprint")?,
        certificate: row.try_get("certificate")?,
        remote_address: row.try_get("remote_address")?,
        model: row.try_get("model")?,
        firmware: row.try_get("firmware")?,
        commitment: row.try_get("commitment")?,
        terminal_nonce: row.try_get("terminal_nonce")?,
        server_nonce: row.try_get("server_nonce")?,
        server_pin: row.try_get("server_pin")?,
        state: PairingState::parse(&state)?,
        flagged: row.try_get::<i64, _>("flagged")? != 0,
        supersedes: row.try_get("supersedes")?,
        failed_attempts: row.try_get("failed_attempts")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        decided_at: row.try_get("decided_at")?,
        decided_by: row.try_get("decided_by")?,
    })
}

pub(super) fn request_id() -> String {
    let mut bytes = [0u8; 16];
    // aws-lc aborts the process rather than return weak randomness.
    let _ = aws_lc_rs::rand::fill(&mut bytes);
    hex::encode(bytes)
}

fn check_request_id(id: &str) -> Result<(), StoreError> {
    if id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(())
    } else {
        Err(StoreError::NotFound(format!("pairing request {id:?}")))
    }
}

/// Loads a request inside `tx`, taking its row lock on PostgreSQL (a no-op
/// update), so decisions on one request queue instead of racing.
async fn lock_request(
    tx: &mut Transaction<'_, Any>,
    id: &str,
) -> Result<Option<PairingRequest>, StoreError> {
    let row = sqlx::query(concat!(
        "UPDATE pairing_requests SET state = state WHERE id = $1 RETURNING ",
        request_columns!()
    ))
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?;
    row.as_ref().map(request).transpose()
}

/// Reads a request back after changing it in `tx`.
pub(super) async fn reread(
    tx: &mut Transaction<'_, Any>,
    id: &str,
) -> Result<PairingRequest, StoreError> {
    lock_request(tx, id)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("pairing request {id}")))
}

/// Ends an open request in `state`, audited as `action`.
pub(crate) async fn close(
    tx: &mut Transaction<'_, Any>,
    req: &PairingRequest,
    state: PairingState,
    actor: &Actor,
    action: &str,
    at: i64,
    detail: serde_json::Value,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE pairing_requests SET state = $1, decided_at = $2, decided_by = $3 WHERE id = $4",
    )
    .bind(state.as_str())
    .bind(at)
    .bind(actor.name())
    .bind(&req.id)
    .execute(&mut **tx)
    .await?;
    append(tx, at, actor, action, &req.serial, &detail).await?;
    Ok(())
}

/// If `req` is open but past its expiry, marks it expired (audited) and
/// says so.
pub(super) async fn expire_if_due(
    tx: &mut Transaction<'_, Any>,
    req: &PairingRequest,
    at: i64,
) -> Result<bool, StoreError> {
    if req.state.is_open() && req.expires_at <= at {
        close(
            tx,
            req,
            PairingState::Expired,
            &Actor::new("gate"),
            "pairing.expire",
            at,
            serde_json::json!({ "request": req.id, "fingerprint": req.fingerprint }),
        )
        .await?;
        return Ok(true);
    }
    Ok(false)
}

impl Store {
    /// The terminal reveals its nonce (protocol step 3). Only the
    /// fingerprint that opened the request may; a nonce that does not open
    /// the commitment ends the request.
    pub async fn reveal_pairing_nonce(
        &self,
        id: &str,
        fingerprint: &TerminalFingerprint,
        nonce: &Nonce,
        now: SystemTime,
    ) -> Result<PairingRequest, StoreError> {
        check_request_id(id)?;
        let at = millis(now);
        let mut tx = self.begin_write().await?;
        let req = match lock_request(&mut tx, id).await? {
            Some(req) if req.fingerprint == fingerprint.to_hex() => req,
            _ => return Err(StoreError::NotFound(format!("pairing request {id}"))),
        };
        if expire_if_due(&mut tx, &req, at).await? {
            tx.commit().await?;
            return Err(StoreError::Expired(id.to_owned()));
        }
        let revealed = nonce.to_hex();
        match req.state {
            PairingState::AwaitingReveal => {}
            PairingState::Pending if req.terminal_nonce.as_deref() == Some(revealed.as_str()) => {
                return Ok(req);
            }
            PairingState::Pending => {
                return Err(StoreError::Conflict(format!(
                    "pairing request {id} was already revealed with another nonce"
                )));
            }
            state => {
                return Err(StoreError::Closed {
                    id: id.to_owned(),
                    state: state.wire_status().to_owned(),
                });
            }
        }
        let commitment: Commitment = req
            .commitment
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("commitment of request {id}")))?;
        if !commitment.opens_to(nonce) {
            close(
                &mut tx,
                &req,
                PairingState::Failed,
                &Actor::new("gate"),
                "pairing.reveal_mismatch",
                at,
                serde_json::json!({ "request": id, "fingerprint": req.fingerprint }),
            )
            .await?;
            tx.commit().await?;
            return Err(StoreError::RevealMismatch(id.to_owned()));
        }
        // Revealed: the request now waits for an operator, up to its full
        // lifetime (an unrevealed one expires within minutes).
        sqlx::query(
            "UPDATE pairing_requests SET terminal_nonce = $1, state = 'pending', \
             expires_at = COALESCE(decide_by, expires_at) WHERE id = $2",
        )
        .bind(&revealed)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        append(
            &mut tx,
            at,
            &Actor::new("gate"),
            "pairing.reveal",
            &req.serial,
            &serde_json::json!({ "request": id, "fingerprint": req.fingerprint }),
        )
        .await?;
        let req = reread(&mut tx, id).await?;
        tx.commit().await?;
        Ok(req)
    }

    /// An operator approves a request by the code the location contact
    /// read out (protocol step 4–5). A wrong code counts as a failed
    /// attempt (kept even though the call fails); the third ends the
    /// request. On success the terminal is paired with the request's
    /// fingerprint, in one transaction with the audit record.
    pub async fn approve_pairing(
        &self,
        id: &str,
        code: &PairingCode,
        operator: &SecondFactor,
        now: SystemTime,
    ) -> Result<Terminal, StoreError> {
        check_request_id(id)?;
        let actor = operator.actor();
        if !operator.role().may_change_trust() {
            return Err(StoreError::Forbidden(format!(
                "{} is a {} and may not approve pairings",
                actor.name(),
                operator.role().as_str()
            )));
        }
        let at = millis(now);
        let mut tx = self.begin_write().await?;
        let Some(req) = lock_request(&mut tx, id).await? else {
            return Err(StoreError::NotFound(format!("pairing request {id}")));
        };
        if expire_if_due(&mut tx, &req, at).await? {
            tx.commit().await?;
            return Err(StoreError::Expired(id.to_owned()));
        }
        if !req.state.is_open() {
            return Err(StoreError::Closed {
                id: id.to_owned(),
                state: req.state.as_str().to_owned(),
            });
        }
        let Some(expected) = req.code()? else {
            return Err(StoreError::NotRevealed(id.to_owned()));
        };
        if !expected.matches(code) {
            let attempts = req.failed_attempts + 1;
            sqlx::query("UPDATE pairing_requests SET failed_attempts = $1 WHERE id = $2")
                .bind(attempts)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            let detail = serde_json::json!({
                "request": id, "fingerprint": req.fingerprint, "failed_attempts": attempts,
            });
            if attempts >= MAX_CODE_ATTEMPTS {
                close(
                    &mut tx,
                    &req,
                    PairingState::Failed,
                    &actor,
                    "pairing.fail",
                    at,
                    detail,
                )
                .await?;
            } else {
                append(
                    &mut tx,
                    at,
                    &actor,
                    "pairing.wrong_code",
                    &req.serial,
                    &detail,
                )
                .await?;
            }
            tx.commit().await?;
            return Err(StoreError::WrongCode {
                id: id.to_owned(),
                remaining: (MAX_CODE_ATTEMPTS - attempts).max(0),
            });
        }
        let other = sqlx::query(
            "SELECT serial FROM terminals WHERE paired_fingerprint = $1 AND serial <> $2",
        )
        .bind(&req.fingerprint)
        .bind(&req.serial)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(other) = other {
            let other: String = other.try_get("serial")?;
            return Err(StoreError::Conflict(format!(
                "fingerprint {} is already paired to terminal {other}; unpair it first",
                req.fingerprint
            )));
        }
        let serial = Serial::new(&req.serial)
            .map_err(|_| StoreError::Corrupt(format!("serial of request {id}")))?;
        let previous = self
            .terminal_in(&mut tx, &serial)
            .await?
            .and_then(|t| t.paired_fingerprint);
        sqlx::query(
            "UPDATE terminals SET state = 'paired', paired_fingerprint = $1, paired_at = $2, paired_by = $3 \
             WHERE serial = $4",
        )
        .bind(&req.fingerprint)
        .bind(at)
        .bind(actor.name())
        .bind(&req.serial)
        .execute(&mut *tx)
        .await?;
        close(
            &mut tx,
            &req,
            PairingState::Approved,
            &actor,
            "pairing.approve",
            at,
            serde_json::json!({
                "request": id, "fingerprint": req.fingerprint,
                "previous_fingerprint": previous, "flagged": req.flagged,
            }),
        )
        .await?;
        bump_generation(&mut tx, self.backend).await?;
        tx.commit().await?;
        self.terminal(&serial)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("terminal {serial}")))
    }

    /// An operator rejects an open request; audited.
    pub async fn reject_pairing(
        &self,
        id: &str,
        by: &Changer,
        now: SystemTime,
    ) -> Result<PairingRequest, StoreError> {
        let actor = by.actor();
        check_request_id(id)?;
        let at = millis(now);
        let mut tx = self.begin_write().await?;
        let Some(req) = lock_request(&mut tx, id).await? else {
            return Err(StoreError::NotFound(format!("pairing request {id}")));
        };
        if !req.state.is_open() {
            return Err(StoreError::Closed {
                id: id.to_owned(),
                state: req.state.as_str().to_owned(),
            });
        }
        close(
            &mut tx,
            &req,
            PairingState::Rejected,
            actor,
            "pairing.reject",
            at,
            serde_json::json!({ "request": id, "fingerprint": req.fingerprint }),
        )
        .await?;
        let req = reread(&mut tx, id).await?;
        tx.commit().await?;
        Ok(req)
    }
}
