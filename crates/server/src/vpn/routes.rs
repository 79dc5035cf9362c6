//! `GET` and `POST /v1/vpn` at the gate and at the master. The master's
//! per-request check has found the paired terminal already; the gate
//! looks it up by the connection's key and refuses anyone else.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use pairgate_proto::{ErrorCode, VpnEnrolment};
use pairgate_store::{Actor, Store, Terminal};

use super::Vpn;
use crate::ApiError;
use crate::gate::Gate;
use crate::http::{JsonBody, Peer};
use crate::master::{Master, PairedPeer};

fn offered(vpn: Option<&Arc<Vpn>>) -> Result<&Arc<Vpn>, ApiError> {
    vpn.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            "this server offers no VPN (vpn_type = \"none\")",
        )
    })
}

/// The paired terminal of the gate connection's key.
async fn paired_at_gate(store: &Store, peer: &Peer) -> Result<Terminal, ApiError> {
    store
        .paired_terminal(&peer.fingerprint)
        .await?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::FORBIDDEN,
                ErrorCode::NotPaired,
                format!(
                    "certificate {} is not paired with any terminal: pair first",
                    peer.fingerprint
                ),
            )
        })
}

/// `GET /v1/vpn` at the gate.
pub(crate) async fn gate_status(
    State(gate): State<Gate>,
    Extension(peer): Extension<Peer>,
) -> Result<Response, ApiError> {
    let vpn = offered(gate.vpn.as_ref())?;
    let terminal = paired_at_gate(&gate.store, &peer).await?;
    Ok(Json(vpn.status(&gate.store, &terminal).await?).into_response())
}

/// `POST /v1/vpn` at the gate.
pub(crate) async fn gate_enrol(
    State(gate): State<Gate>,
    Extension(peer): Extension<Peer>,
    JsonBody(body): JsonBody<VpnEnrolment>,
) -> Result<Response, ApiError> {
    let vpn = offered(gate.vpn.as_ref())?;
    let terminal = paired_at_gate(&gate.store, &peer).await?;
    let by = (&Actor::new("gate"), gate.clock.now());
    let status = vpn
        .enrol(&gate.store, &terminal, &peer.fingerprint, body, by)
        .await?;
    Ok(Json(status).into_response())
}

/// `GET /v1/vpn` at the master.
pub(crate) async fn master_status(
    State(master): State<Master>,
    Extension(paired): Extension<PairedPeer>,
) -> Result<Response, ApiError> {
    let vpn = offered(master.vpn.as_ref())?;
    Ok(Json(vpn.status(&master.store, &paired.terminal).await?).into_response())
}

/// `POST /v1/vpn` at the master.
pub(crate) async fn master_enrol(
    State(master): State<Master>,
    Extension(peer): Extension<Peer>,
    Extension(paired): Extension<PairedPeer>,
    JsonBody(body): JsonBody<VpnEnrolment>,
) -> Result<Response, ApiError> {
    let vpn = offered(master.vpn.as_ref())?;
    let by = (&Actor::new("master"), master.clock.now());
    let status = vpn
        .enrol(&master.store, &paired.terminal, &peer.fingerprint, body, by)
        .await?;
    Ok(Json(status).into_response())
}
