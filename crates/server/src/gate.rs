//! The gate service (TCP 7741): the only endpoint an unpaired terminal may
//! reach. JSON over HTTPS with a client certificate whose key was proved
//! in the handshake (self-signed is the norm). It speaks the pairing
//! protocol of docs/protocol.md, with the bodies of `pairgate_proto::gate`:
//!
//! - `POST /v1/pairing` `{"serial", "model", "firmware", "commitment"}` →
//!   `200 {"status": "paired", "config"}` for an already paired
//!   fingerprint, else `202 {"status": "pending", "request_id",
//!   "server_nonce", "expires_at"}`;
//! - `POST /v1/pairing/{id}/reveal` `{"terminal_nonce"}`;
//! - `GET /v1/pairing/{id}[?wait=SECONDS]` → `{"status", "request_id",
//!   "expires_at", "config"?}`, long-polling while the request is open.
//!
//! Unknown serials and blocked keys are refused, counted and audited in
//! aggregate ([`crate::refusals`]); a certificate that keeps trying
//! unknown serials from one address is answered `429` without touching
//! the store, and so is an address past its larger budget, for unknown
//! serials only.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use pairgate_pki::{Commitment, Nonce};
use pairgate_proto::ErrorCode;
use pairgate_proto::{OpenAnswer, PairingHello, PairingStatus, RequestStatus, RevealRequest};
use pairgate_store::{
    AttemptScope, Opened, PairingAttempt, PairingLimits, PairingRequest, PairingState, Serial,
    Store, StoreError, Terminal,
};

use crate::http::{JsonBody, JsonPath, JsonQuery, Peer, no_route, rfc3339, wrong_method};
use crate::refusals::{RefusalLog, UnknownSerialLimiter};
use crate::{ApiError, TerminalConfig};

/// Gate state.
#[derive(Clone)]
pub(crate) struct Gate {
    pub store: Store,
    pub limits: PairingLimits,
    pub long_poll_max: Duration,
    pub master_url: String,
    pub unknown_serials: Arc<UnknownSerialLimiter>,
    pub refusals: Arc<RefusalLog>,
    pub clock: pairgate_clock::Clock,
    /// This instance's master paired set, caught up before an approval
    /// is answered.
    pub paired: Option<Arc<crate::paired::PairedSet>>,
    /// Long polls waiting for a decision.
    pub waiters: Arc<crate::waiters::Waiters>,
    /// The VPN offered to paired terminals, if any.
    pub vpn: Option<Arc<crate::vpn::Vpn>>,
}

fn rate_limited(why: &str) -> ApiError {
    ApiError::new(StatusCode::TOO_MANY_REQUESTS, ErrorCode::RateLimited, why)
}

/// The status a terminal sees for a stored request state.
fn wire_status(state: PairingState) -> PairingStatus {
    match state {
        PairingState::AwaitingReveal | PairingState::Pending => PairingStatus::Pending,
        PairingState::Approved => PairingStatus::Approved,
        PairingState::Rejected | PairingState::Failed => PairingStatus::Rejected,
        PairingState::Expired => PairingStatus::Expired,
        PairingState::Superseded => PairingStatus::Superseded,
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct WaitQuery {
    #[serde(default)]
    wait: Option<u64>,
}

/// The gate's routes.
pub(crate) fn router(gate: Gate) -> Router {
    Router::new()
        .route("/v1/pairing", post(open))
        .route("/v1/pairing/{id}", get(status))
        .route("/v1/pairing/{id}/reveal", post(reveal))
        .route("/v1/server-keys", get(server_keys))
        .route(
            "/v1/vpn",
            get(crate::vpn::routes::gate_status).post(crate::vpn::routes::gate_enrol),
        )
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .with_state(gate)
}

/// `GET /v1/server-keys`: any client, since a terminal that meets a key
/// it does not know asks here for the chain of rotation statements.
async fn server_keys(
    State(gate): State<Gate>,
    Extension(peer): Extension<Peer>,
) -> Result<Response, ApiError> {
    crate::server_keys::answer(&gate.store, peer.server_pin).await
}

/// The configuration a paired terminal receives: the server key it paired
/// with and the next one when a rotation is announced, and the
/// operator's recovery pins.
async fn config(gate: &Gate, peer: &Peer, terminal: &Terminal) -> Result<TerminalConfig, ApiError> {
    let mut server_pins = vec![peer.server_pin];
    let announced = gate
        .store
        .rotations()
        .await?
        .into_iter()
        .filter(|r| r.activated_at.is_none())
        .filter_map(|r| r.rotation.signed().ok())
        .map(|s| s.statement.next_pin())
        .filter(|pin| *pin != peer.server_pin);
    server_pins.extend(announced);
    Ok(TerminalConfig {
        master_url: gate.master_url.clone(),
        server_pins,
        recovery_pins: gate.store.recovery_pins().await?,
        vpn_profile: terminal.vpn_profile.clone(),
        vpn: gate.vpn.as_ref().map(|v| v.settings().vpn_type),
        heartbeat_counter: true,
    })
}

async fn open(
    State(gate): State<Gate>,
    Extension(peer): Extension<Peer>,
    JsonBody(body): JsonBody<PairingHello>,
) -> Result<Response, ApiError> {
    let ip = peer.address.ip();
    if gate
        .unknown_serials
        .key_blocked(ip, peer.fingerprint, gate.clock.instant())
    {
        gate.refusals
            .record(ip, "pairing.rate_limited", example(&peer, &body.serial));
        return Err(rate_limited(
            "too many pairing attempts for unknown serials with this certificate; wait a minute",
        ));
    }
    let attempt = attempt(&peer, &body)?;
    match gate
        .store
        .open_pairing_request(&attempt, &gate.limits, gate.clock.now())
        .await
    {
        Ok(Opened::Paired(terminal)) => Ok((
            StatusCode::OK,
            Json(OpenAnswer::Paired {
                config: config(&gate, &peer, &terminal).await?,
            }),
        )
            .into_response()),
        Ok(Opened::Pending(req)) => {
            tracing::info!(serial = %req.serial, request = %req.id, "pairing request opened");
            Ok((
                StatusCode::ACCEPTED,
                Json(OpenAnswer::Pending {
                    request_id: req.id,
                    server_nonce: req.server_nonce,
                    expires_at: rfc3339(req.expires_at),
                }),
            )
                .into_response())
        }
        Err(e) => Err(refused(&gate, &peer, &body.serial, e).await),
    }
}

/// What a refusal's aggregate audit keeps of an attempt: the serial asked
/// for (at most 64 characters) and the certificate's fingerprint.
fn example(peer: &Peer, serial: &str) -> impl FnOnce() -> serde_json::Value + use<> {
    let serial = serial.chars().take(64).collect::<String>();
    let fingerprint = peer.fingerprint.to_hex();
    move || serde_json::json!({ "serial": serial, "fingerprint": fingerprint })
}

/// The store's input for a hello, or `400` naming the bad field.
fn attempt(peer: &Peer, body: &PairingHello) -> Result<PairingAttempt, ApiError> {
    let serial = Serial::new(body.serial.trim())
        .map_err(|e| ApiError::bad_request(ErrorCode::BadSerial, e.to_string()))?;
    let commitment: Commitment = body.commitment.parse().map_err(|_| {
        ApiError::bad_request(
            ErrorCode::BadCommitment,
            "commitment must be 64 lowercase hex digits: hex(SHA-256(terminal_nonce))",
        )
    })?;
    // The gate's listener keeps every connection's certificate; without
    // one, nothing is stored (an empty certificate would be).
    let Some(certificate) = peer.certificate.as_deref() else {
        tracing::error!("the gate's connection kept no client certificate");
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            "internal error; the server log has details",
        ));
    };
    Ok(PairingAttempt {
        serial,
        fingerprint: peer.fingerprint,
        certificate: certificate.clone(),
        remote_address: peer.address.to_string(),
        model: body.model.clone(),
        firmware: body.firmware.clone(),
        commitment,
        server_pin: peer.server_pin,
    })
}

/// Counts and audits a refused hello; an address past its budget for
/// unknown serials is answered `429` instead.
async fn refused(gate: &Gate, peer: &Peer, serial: &str, e: StoreError) -> ApiError {
    let ip = peer.address.ip();
    let kind = match &e {
        StoreError::UnknownSerial(_) => {
            if let Err(limited) = count_unknown_serial(gate, peer).await {
                gate.refusals
                    .record(ip, "pairing.rate_limited", example(peer, serial));
                return limited;
            }
            "pairing.unknown_serial"
        }
        StoreError::Blocked(_) => "pairing.blocked_key",
        StoreError::RateLimited(_) | StoreError::Limit(_) => "pairing.rate_limited",
        _ => return e.into(),
    };
    gate.refusals.record(ip, kind, example(peer, serial));
    e.into()
}

/// Counts an unknown-serial attempt here and in the store, where every
/// instance counts: `Err(429)` once the address is past its budget
/// across the cluster (or the store cannot count: closed, not open).
/// Once over, the address is answered here without asking the store
/// again for the rest of its minute.
async fn count_unknown_serial(gate: &Gate, peer: &Peer) -> Result<(), ApiError> {
    let ip = peer.address.ip();
    let limiter = &gate.unknown_serials;
    let over = || {
        rate_limited(
            "too many pairing attempts for unknown serials from this address; wait a minute",
        )
    };
    if limiter.address_blocked(ip, gate.clock.instant()) {
        return Err(over());
    }
    limiter.count(ip, peer.fingerprint, gate.clock.instant());
    let counted = gate
        .store
        .count_attempt(
            AttemptScope::UnknownSerialAddress,
            &ip.to_string(),
            Duration::from_secs(60),
            gate.clock.now(),
        )
        .await?;
    if counted.count > limiter.per_address() {
        limiter.saturate(ip, gate.clock.instant());
        return Err(over());
    }
    Ok(())
}

/// A request as the terminal that opened it may see it; anyone else gets
/// `404`, so request ids reveal nothing.
async fn own_request(gate: &Gate, peer: &Peer, id: &str) -> Result<PairingRequest, ApiError> {
    match gate.store.pairing_request(id).await? {
        Some(req) if req.fingerprint == peer.fingerprint => Ok(req),
        _ => Err(StoreError::NotFound(format!("pairing request {id}")).into()),
    }
}

async fn reveal(
    State(gate): State<Gate>,
    Extension(peer): Extension<Peer>,
    JsonPath(id): JsonPath<String>,
    JsonBody(body): JsonBody<RevealRequest>,
) -> Result<Response, ApiError> {
    let nonce: Nonce = body.terminal_nonce.parse().map_err(|_| {
        ApiError::bad_request(
            ErrorCode::BadNonce,
            "terminal_nonce must be 64 lowercase hex digits",
        )
    })?;
    let req = gate
        .store
        .reveal_pairing_nonce(&id, &peer.fingerprint, &nonce, gate.clock.now())
        .await?;
    Ok(Json(RequestStatus {
        status: wire_status(req.state),
        request_id: req.id,
        expires_at: rfc3339(req.expires_at),
        config: None,
    })
    .into_response())
}

async fn status(
    State(gate): State<Gate>,
    Extension(peer): Extension<Peer>,
    JsonPath(id): JsonPath<String>,
    JsonQuery(query): JsonQuery<WaitQuery>,
) -> Result<Response, ApiError> {
    let wait = Duration::from_secs(query.wait.unwrap_or(0)).min(gate.long_poll_max);
    // How long to hold the connection is the runtime's time, not the
    // clock's: a stopped test clock must not hold it forever.
    let deadline = tokio::time::Instant::now() + wait;
    let mut waiting = (wait > Duration::ZERO).then(|| gate.waiters.register(&id));
    let mut req = own_request(&gate, &peer, &id).await?;
    while let Some(w) = waiting.as_mut()
        && req.state.is_open()
        && tokio::time::Instant::now() < deadline
    {
        // Woken by a decision (or a check); an expiry is caught by the
        // deadline, which is at most long_poll_max away.
        tokio::select! {
            () = w.woken() => {}
            () = tokio::time::sleep_until(deadline) => {}
        }
        req = own_request(&gate, &peer, &id).await?;
    }
    drop(waiting);
    let mut status = wire_status(req.state);
    let mut config_now = None;
    if req.state == PairingState::Approved {
        // Only while this fingerprint is still the paired one: an approval
        // later undone by unpair hands out nothing.
        let terminal = match &gate.paired {
            Some(paired) => paired.admit(&gate.store, &peer.fingerprint).await?,
            None => gate
                .store
                .paired_terminal(&peer.fingerprint)
                .await?
                .map(Arc::new),
        };
        match terminal {
            Some(terminal) => config_now = Some(config(&gate, &peer, &terminal).await?),
            // Unpaired since: the protocol's closest status.
            None => status = PairingStatus::Rejected,
        }
    }
    Ok(Json(RequestStatus {
        status,
        request_id: req.id,
        expires_at: rfc3339(req.expires_at),
        config: config_now,
    })
    .into_response())
}
