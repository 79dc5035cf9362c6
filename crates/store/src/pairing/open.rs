//! Opening a pairing request (protocol step 2), and the bounds that keep
//! one unauthenticated client from using up what genuine terminals need:
//! quotas of open requests per certificate, per source address and in
//! total; unrevealed requests that expire within minutes; limits on
//! superseding per certificate, per address and per serial; the block
//! list. A refusal writes nothing (the gate counts refusals and audits
//! them aggregated), so refused traffic cannot grow the database.

use std::net::SocketAddr;
use std::time::SystemTime;

use pairgate_pki::Nonce;
use sqlx::{Any, Row, Transaction};

use super::decide::{self, OnOpen};
use super::{
    Opened, PairingAttempt, PairingLimits, PairingRequest, PairingState, close, expire_if_due,
    request, request_id, reread,
};
use crate::audit::append;
use crate::terminals::bounded;
use crate::{Actor, Serial, Store, StoreError, millis};

/// The address without its port, as the quotas count it.
fn source_ip(remote_address: &str) -> String {
    remote_address
        .parse::<SocketAddr>()
        .map_or_else(|_| remote_address.to_owned(), |a| a.ip().to_string())
}

fn ms(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Runs a `SELECT COUNT(*) AS n` query with `$1` bound to `value` and
/// `$2` to `at`.
async fn count(
    tx: &mut Transaction<'static, Any>,
    sql: &'static str,
    value: &str,
    at: i64,
) -> Result<i64, StoreError> {
    let row = sqlx::query(sql)
        .bind(value)
        .bind(at)
        .fetch_one(&mut **tx)
        .await?;
    Ok(row.try_get("n")?)
}

macro_rules! count_where {
    ($filter:literal) => {
        concat!("SELECT COUNT(*) AS n FROM pairing_requests WHERE ", $filter)
    };
}

/// Open requests (`$2`: now) of a certificate, an address, or all.
const OPEN_BY_KEY: &str = count_where!(
    "fingerprint = $1 AND state IN ('awaiting_reveal', 'pending') AND expires_at > $2"
);
const OPEN_BY_ADDRESS: &str =
    count_where!("source_ip = $1 AND state IN ('awaiting_reveal', 'pending') AND expires_at > $2");
const OPEN_ALL: &str =
    count_where!("$1 = $1 AND state IN ('awaiting_reveal', 'pending') AND expires_at > $2");
/// Supersedes (`$2`: the window's start) by a certificate, an address, or
/// of a serial.
const SUPERSEDED_BY_KEY: &str =
    count_where!("fingerprint = $1 AND supersedes IS NOT NULL AND created_at > $2");
const SUPERSEDED_BY_ADDRESS: &str =
    count_where!("source_ip = $1 AND supersedes IS NOT NULL AND created_at > $2");
const SUPERSEDED_OF_SERIAL: &str =
    count_where!("serial = $1 AND supersedes IS NOT NULL AND created_at > $2");

impl Store {
    /// A terminal asks to pair (protocol step 2). Blocked keys and unknown
    /// serials are refused without a write (the caller audits refusals,
    /// aggregated). An already paired fingerprint gets
    /// its terminal; the same fingerprint and commitment again get the
    /// same request; the same fingerprint with a new commitment (the
    /// terminal restarted) renews the request with a fresh server nonce;
    /// another fingerprint supersedes the open request and is flagged,
    /// within the supersede limits; a new request must fit the quotas of
    /// its certificate, its address and the whole server.
    pub async fn open_pairing_request(
        &self,
        attempt: &PairingAttempt,
        limits: &PairingLimits,
        now: SystemTime,
    ) -> Result<Opened, StoreError> {
        // Set once this hello supersedes (closes) an older request.
        let mut _signal = None;
        bounded("model", &attempt.model, 100)?;
        bounded("firmware", &attempt.firmware, 100)?;
        let at = millis(now);
        let serial = attempt.serial.as_str();
        // Refusals read only: no write lock, no row.
        if self.is_blocked(&attempt.fingerprint).await? {
            return Err(StoreError::Blocked(attempt.fingerprint.to_hex()));
        }
        if self.terminal(&attempt.serial).await?.is_none() {
            return Err(StoreError::UnknownSerial(serial.to_owned()));
        }
        let mut tx = self.begin_write().await?;
        let Some(terminal) = self.terminal_in(&mut tx, &attempt.serial).await? else {
            return Err(StoreError::UnknownSerial(serial.to_owned()));
        };
        if decide::already_paired(&terminal, &attempt.fingerprint) {
            tx.commit().await?;
            return Ok(Opened::Paired(terminal));
        }
        let open = still_open(&mut tx, &attempt.serial, at).await?;
        let supersedes = match (decide::on_open(open.as_ref(), attempt), open) {
            (OnOpen::Again, Some(req)) => {
                tx.commit().await?;
                return Ok(Opened::Pending(req));
            }
            (OnOpen::Renew, Some(req)) => return self.renew(tx, req, attempt, limits, at).await,
            (OnOpen::Supersede, Some(req)) => {
                _signal = Some(self.signal_decisions());
                supersede(&mut tx, limits, &req, attempt, at).await?;
                Some(req.id)
            }
            _ => None,
        };
        let source = source_ip(&attempt.remote_address);
        open_quota(&mut tx, limits, &attempt.fingerprint.to_hex(), &source, at).await?;
        let flagged = decide::flagged(supersedes.is_some(), &terminal);
        let id = insert(&mut tx, attempt, limits, supersedes.as_deref(), flagged, at).await?;
        let detail = serde_json::json!({
            "request": id, "fingerprint": attempt.fingerprint,
            "remote_address": attempt.remote_address,
            "model": attempt.model, "firmware": attempt.firmware,
            "flagged": flagged, "supersedes": supersedes,
            "paired_fingerprint": terminal.paired_fingerprint,
        });
        append(
            &mut tx,
            at,
            &Actor::new("gate"),
            "pairing.open",
            serial,
            &detail,
        )
        .await?;
        let req = reread(&mut tx, &id).await?;
        tx.commit().await?;
        Ok(Opened::Pending(req))
    }

    /// The same fingerprint came back with a new commitment: a fresh
    /// server nonce, so that no nonce pair is ever reused and the one
    /// chance per request stays one.
    async fn renew(
        &self,
        mut tx: Transaction<'static, Any>,
        req: PairingRequest,
        attempt: &PairingAttempt,
        limits: &PairingLimits,
        at: i64,
    ) -> Result<Opened, StoreError> {
        // A restarting terminal renews its request a few times; a key that
        // loops on it would write an audit record each time.
        let renewals: i64 = sqlx::query("SELECT renewals FROM pairing_requests WHERE id = $1")
            .bind(&req.id)
            .fetch_one(&mut *tx)
            .await?
            .try_get("renewals")?;
        if renewals >= limits.max_renewals {
            return Err(StoreError::RateLimited(format!(
                "pairing request {} was renewed {renewals} times; let it expire or have an operator reject it",
                req.id
            )));
        }
        // Waiting for a reveal again: minutes, never past the decision
        // deadline.
        sqlx::query(
            "UPDATE pairing_requests SET commitment = $1, server_nonce = $2, terminal_nonce = NULL, \
             state = 'awaiting_reveal', server_pin = $3, model = $4, firmware = $5, remote_address = $6, \
             source_ip = $8, renewals = renewals + 1, expires_at = CASE WHEN COALESCE(decide_by, expires_at) < $9 \
             THEN COALESCE(decide_by, expires_at) ELSE $9 END WHERE id = $7",
        )
        .bind(attempt.commitment.to_hex())
        .bind(Nonce::random().to_hex())
        .bind(attempt.server_pin.to_hex())
        .bind(&attempt.model)
        .bind(&attempt.firmware)
        .bind(&attempt.remote_address)
        .bind(&req.id)
        .bind(source_ip(&attempt.remote_address))
        .bind(at.saturating_add(ms(limits.reveal_ttl)))
        .execute(&mut *tx)
        .await?;
        append(
            &mut tx,
            at,
            &Actor::new("gate"),
            "pairing.renew",
            req.serial.as_str(),
            &serde_json::json!({ "request": req.id, "fingerprint": req.fingerprint }),
        )
        .await?;
        let req = reread(&mut tx, &req.id).await?;
        tx.commit().await?;
        Ok(Opened::Pending(req))
    }
}

/// The serial's open request inside `tx`, after expiring those past
/// their expiry.
async fn still_open(
    tx: &mut Transaction<'static, Any>,
    serial: &Serial,
    at: i64,
) -> Result<Option<PairingRequest>, StoreError> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        request_columns!(),
        " FROM pairing_requests WHERE serial = $1 AND state IN ('awaiting_reveal', 'pending') ORDER BY created_at"
    ))
    .bind(serial.as_str())
    .fetch_all(&mut **tx)
    .await?;
    let mut open = None;
    for row in &rows {
        let req = request(row)?;
        if !expire_if_due(tx, &req, at).await? {
            open = Some(req);
        }
    }
    Ok(open)
}

/// Another key asks for a serial with an open request: within the
/// supersede limits, that request ends (audited).
async fn supersede(
    tx: &mut Transaction<'static, Any>,
    limits: &PairingLimits,
    req: &PairingRequest,
    attempt: &PairingAttempt,
    at: i64,
) -> Result<(), StoreError> {
    let by = attempt.fingerprint.to_hex();
    let source = source_ip(&attempt.remote_address);
    supersede_allowed(tx, limits, &by, &source, attempt.serial.as_str(), at).await?;
    let detail = serde_json::json!({
        "request": req.id, "fingerprint": req.fingerprint, "by_fingerprint": by,
    });
    let gate = Actor::new("gate");
    let superseded = PairingState::Superseded;
    close(tx, req, superseded, &gate, "pairing.supersede", at, detail).await
}

/// Writes a new request, waiting for its reveal; returns its id.
async fn insert(
    tx: &mut Transaction<'static, Any>,
    attempt: &PairingAttempt,
    limits: &PairingLimits,
    supersedes: Option<&str>,
    flagged: bool,
    at: i64,
) -> Result<String, StoreError> {
    let id = request_id();
    let (reveal_by, decide_by) = decide::deadlines(at, ms(limits.reveal_ttl), ms(limits.ttl));
    sqlx::query(
        "INSERT INTO pairing_requests (id, serial, fingerprint, certificate, remote_address, model, firmware, \
         commitment, server_nonce, server_pin, state, flagged, supersedes, failed_attempts, created_at, expires_at, \
         source_ip, decide_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'awaiting_reveal', $11, $12, 0, $13, $14, $15, $16)",
    )
    .bind(&id)
    .bind(attempt.serial.as_str())
    .bind(attempt.fingerprint.to_hex())
    .bind(attempt.certificate.clone())
    .bind(&attempt.remote_address)
    .bind(&attempt.model)
    .bind(&attempt.firmware)
    .bind(attempt.commitment.to_hex())
    .bind(Nonce::random().to_hex())
    .bind(attempt.server_pin.to_hex())
    .bind(i64::from(flagged))
    .bind(supersedes.map(str::to_owned))
    .bind(at)
    .bind(reveal_by)
    .bind(source_ip(&attempt.remote_address))
    .bind(decide_by)
    .execute(&mut **tx)
    .await?;
    Ok(id)
}

/// Refuses a supersede beyond the limits of the certificate, the address
/// or the serial within the window.
async fn supersede_allowed(
    tx: &mut Transaction<'static, Any>,
    limits: &PairingLimits,
    fingerprint: &str,
    source: &str,
    serial: &str,
    at: i64,
) -> Result<(), StoreError> {
    let since = at.saturating_sub(ms(limits.supersede_window));
    for (sql, value, limit, what) in [
        (
            SUPERSEDED_BY_KEY,
            fingerprint,
            limits.supersedes_per_key,
            "this certificate has",
        ),
        (
            SUPERSEDED_BY_ADDRESS,
            source,
            limits.supersedes_per_address,
            "this address has",
        ),
        (
            SUPERSEDED_OF_SERIAL,
            serial,
            limits.supersedes_per_serial,
            "this serial's requests were",
        ),
    ] {
        let n = count(tx, sql, value, since).await?;
        if n >= limit {
            return Err(StoreError::RateLimited(format!(
                "{what} superseded {n} pairing requests within {} s; an operator can reject the open request or block a key",
                limits.supersede_window.as_secs()
            )));
        }
    }
    Ok(())
}

/// Refuses a new request beyond the open-request quotas: the
/// certificate's, the address's, then the server's.
async fn open_quota(
    tx: &mut Transaction<'static, Any>,
    limits: &PairingLimits,
    fingerprint: &str,
    source: &str,
    at: i64,
) -> Result<(), StoreError> {
    for (sql, value, limit, what) in [
        (
            OPEN_BY_KEY,
            fingerprint,
            limits.max_open_per_key,
            "for this certificate",
        ),
        (
            OPEN_BY_ADDRESS,
            source,
            limits.max_open_per_address,
            "from this address",
        ),
        (OPEN_ALL, "", limits.max_open, "in all"),
    ] {
        let n = count(tx, sql, value, at).await?;
        if n >= limit {
            return Err(StoreError::Limit(format!(
                "{n} pairing requests are open {what} (the limit is {limit}); try again later"
            )));
        }
    }
    Ok(())
}
