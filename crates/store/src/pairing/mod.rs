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

mod decide;
mod state;

use decide::{OnApprove, OnReveal};
pub use state::PairingState;

/// Wrong codes that end a request.
pub const MAX_CODE_ATTEMPTS: i64 = 3;

/// A pairing request as stored.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PairingRequest {
    /// Request id (32 hex digits).
    pub id: String,
    /// Terminal serial.
    pub serial: Serial,
    /// Fingerprint of the TLS client certificate that asked.
    pub fingerprint: TerminalFingerprint,
    /// That certificate (DER).
    #[serde(skip)]
    pub certificate: Vec<u8>,
    /// The address it came from.
    pub remote_address: String,
    /// Model reported by the terminal.
    pub model: String,
    /// Firmware reported by the terminal.
    pub firmware: String,
    /// SHA-256 of the terminal's nonce (hex on the wire and in JSON).
    pub commitment: Commitment,
    /// The revealed terminal nonce.
    pub terminal_nonce: Option<Nonce>,
    /// The server's nonce.
    pub server_nonce: Nonce,
    /// SPKI pin of the server key the gate presented in this session.
    pub server_pin: SpkiPin,
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
    pub fn code(&self) -> Option<PairingCode> {
        let terminal_nonce = self.terminal_nonce.as_ref()?;
        Some(PairingCode::derive(
            &self.fingerprint,
            &self.server_pin,
            terminal_nonce,
            &self.server_nonce,
        ))
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
pub use reading::RequestFilter;
mod rules;

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
    let id: String = row.try_get("id")?;
    let what = |column: &str| format!("{column} of request {id}");
    Ok(PairingRequest {
        serial: crate::parsed(row, "serial", || what("serial"))?,
        fingerprint: crate::parsed(row, "fingerprint", || what("fingerprint"))?,
        certificate: row.try_get("certificate")?,
        remote_address: row.try_get("remote_address")?,
        model: row.try_get("model")?,
        firmware: row.try_get("firmware")?,
        commitment: crate::parsed(row, "commitment", || what("commitment"))?,
        terminal_nonce: crate::parsed_opt(row, "terminal_nonce", || what("terminal nonce"))?,
        server_nonce: crate::parsed(row, "server_nonce", || what("server nonce"))?,
        server_pin: crate::parsed(row, "server_pin", || what("server pin"))?,
        state: PairingState::parse(&state)?,
        flagged: row.try_get::<i64, _>("flagged")? != 0,
        supersedes: row.try_get("supersedes")?,
        failed_attempts: row.try_get("failed_attempts")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        decided_at: row.try_get("decided_at")?,
        decided_by: row.try_get("decided_by")?,
        id,
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
    append(tx, at, actor, action, req.serial.as_str(), &detail).await?;
    crate::decisions::announce(tx, &req.id).await
}

/// Marks an open request expired (audited).
async fn expire(
    tx: &mut Transaction<'_, Any>,
    req: &PairingRequest,
    at: i64,
) -> Result<(), StoreError> {
    let detail = serde_json::json!({ "request": req.id, "fingerprint": req.fingerprint });
    let gate = Actor::new("gate");
    close(
        tx,
        req,
        PairingState::Expired,
        &gate,
        "pairing.expire",
        at,
        detail,
    )
    .await
}

/// If `req` is open but past its expiry, marks it expired (audited) and
/// says so.
pub(super) async fn expire_if_due(
    tx: &mut Transaction<'_, Any>,
    req: &PairingRequest,
    at: i64,
) -> Result<bool, StoreError> {
    let due = decide::is_due(req, at);
    if due {
        expire(tx, req, at).await?;
    }
    Ok(due)
}

/// Counts a wrong code inside `tx`, audited; the last allowed one fails
/// the request.
async fn wrong_code(
    tx: &mut Transaction<'_, Any>,
    req: &PairingRequest,
    actor: &Actor,
    attempts: i64,
    ends: bool,
    at: i64,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE pairing_requests SET failed_attempts = $1 WHERE id = $2")
        .bind(attempts)
        .bind(&req.id)
        .execute(&mut **tx)
        .await?;
    let detail = serde_json::json!({
        "request": req.id, "fingerprint": req.fingerprint, "failed_attempts": attempts,
    });
    if ends {
        close(
            tx,
            req,
            PairingState::Failed,
            actor,
            "pairing.fail",
            at,
            detail,
        )
        .await
    } else {
        let serial = req.serial.as_str();
        append(tx, at, actor, "pairing.wrong_code", serial, &detail).await?;
        Ok(())
    }
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
        let _signal = self.signal_decisions();
        check_request_id(id)?;
        let at = millis(now);
        let mut tx = self.begin_write().await?;
        let req = match lock_request(&mut tx, id).await? {
            Some(req) if req.fingerprint == *fingerprint => req,
            _ => return Err(StoreError::NotFound(format!("pairing request {id}"))),
        };
        let gate = Actor::new("gate");
        let detail = serde_json::json!({ "request": id, "fingerprint": req.fingerprint });
        match decide::on_reveal(&req, nonce, at) {
            OnReveal::Expire => {
                expire(&mut tx, &req, at).await?;
                tx.commit().await?;
                Err(StoreError::Expired(id.to_owned()))
            }
            OnReveal::Repeat => Ok(req),
            OnReveal::OtherNonce => Err(StoreError::Conflict(format!(
                "pairing request {id} was already revealed with another nonce"
            ))),
            OnReveal::Closed(state) => Err(StoreError::Closed {
                id: id.to_owned(),
                state: state.wire_status().to_owned(),
            }),
            OnReveal::Mismatch => {
                let fail = PairingState::Failed;
                close(
                    &mut tx,
                    &req,
                    fail,
                    &gate,
                    "pairing.reveal_mismatch",
                    at,
                    detail,
                )
                .await?;
                tx.commit().await?;
                Err(StoreError::RevealMismatch(id.to_owned()))
            }
            OnReveal::Accept => {
                // Revealed: the request now waits for an operator, up to
                // its full lifetime (an unrevealed one expires within
                // minutes).
                sqlx::query(
                    "UPDATE pairing_requests SET terminal_nonce = $1, state = 'pending', \
                     expires_at = COALESCE(decide_by, expires_at) WHERE id = $2",
                )
                .bind(nonce.to_hex())
                .bind(id)
                .execute(&mut *tx)
                .await?;
                let serial = req.serial.as_str();
                append(&mut tx, at, &gate, "pairing.reveal", serial, &detail).await?;
                let req = reread(&mut tx, id).await?;
                let req = self.apply_rules(&mut tx, req, at).await?;
                tx.commit().await?;
                Ok(req)
            }
        }
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
        let _signal = self.signal_decisions();
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
        match decide::on_approve(&req, code, at) {
            OnApprove::Expire => {
                expire(&mut tx, &req, at).await?;
                tx.commit().await?;
                Err(StoreError::Expired(id.to_owned()))
            }
            OnApprove::Closed(state) => Err(StoreError::Closed {
                id: id.to_owned(),
                state: state.as_str().to_owned(),
            }),
            OnApprove::NotRevealed => Err(StoreError::NotRevealed(id.to_owned())),
            OnApprove::WrongCode { attempts, ends } => {
                wrong_code(&mut tx, &req, &actor, attempts, ends, at).await?;
                tx.commit().await?;
                Err(StoreError::WrongCode {
                    id: id.to_owned(),
                    remaining: (MAX_CODE_ATTEMPTS - attempts).max(0),
                })
            }
            OnApprove::Pair => {
                self.pair(&mut tx, &req, (&actor, &req.model), at, None)
                    .await?;
                tx.commit().await?;
                self.terminal(&req.serial)
                    .await?
                    .ok_or_else(|| StoreError::NotFound(format!("terminal {}", req.serial)))
            }
        }
    }

    /// Pairs the request's terminal with its key inside `tx`, recording
    /// `model` on the terminal: refused when another terminal holds that
    /// key; audited with the key it had, and with `rule`'s fields when a
    /// rule approved it.
    async fn pair(
        &self,
        tx: &mut Transaction<'static, Any>,
        req: &PairingRequest,
        (actor, model): (&Actor, &str),
        at: i64,
        rule: Option<serde_json::Value>,
    ) -> Result<(), StoreError> {
        let other = sqlx::query(
            "SELECT serial FROM terminals WHERE (paired_fingerprint = $1 OR successor_fingerprint = $1) \
             AND serial <> $2",
        )
        .bind(req.fingerprint.to_hex())
        .bind(req.serial.as_str())
        .fetch_optional(&mut **tx)
        .await?;
        if let Some(other) = other {
            let other: String = other.try_get("serial")?;
            return Err(StoreError::Conflict(format!(
                "fingerprint {} is already paired to terminal {other}; unpair it first",
                req.fingerprint
            )));
        }
        let previous = self
            .terminal_in(tx, &req.serial)
            .await?
            .and_then(|t| t.paired_fingerprint);
        sqlx::query(
            "UPDATE terminals SET state = 'paired', paired_fingerprint = $1, paired_at = $2, paired_by = $3, \
             suspended_at = NULL, suspended_by = NULL, suspected_clone = 0, clone_evidence = NULL, \
             heartbeat_counter = NULL, model = $5, successor_fingerprint = NULL, successor_until = NULL \
             WHERE serial = $4",
        )
        .bind(req.fingerprint.to_hex())
        .bind(at)
        .bind(actor.name())
        .bind(req.serial.as_str())
        .bind(model)
        .execute(&mut **tx)
        .await?;
        crate::rekey::retire_lineage(tx, &req.serial, at).await?;
        crate::vpn_credentials::revoke_in(tx, &req.serial, "repair", actor, at, false).await?;
        let mut detail = serde_json::json!({
            "request": req.id, "fingerprint": req.fingerprint,
            "previous_fingerprint": previous, "flagged": req.flagged,
        });
        if let (Some(serde_json::Value::Object(why)), Some(map)) = (rule, detail.as_object_mut()) {
            map.extend(why);
        }
        let approved = PairingState::Approved;
        close(tx, req, approved, actor, "pairing.approve", at, detail).await?;
        bump_generation(tx, self.backend, req.serial.as_str(), at).await
    }

    /// An operator rejects an open request; audited.
    pub async fn reject_pairing(
        &self,
        id: &str,
        by: &Changer,
        now: SystemTime,
    ) -> Result<PairingRequest, StoreError> {
        let _signal = self.signal_decisions();
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
