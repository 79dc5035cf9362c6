//! The master service (TCP 7743): mutual TLS for paired terminals. Every
//! request — not every handshake, because a resumed session skips
//! certificate verification — is checked against the in-memory paired
//! set; anything else gets `403` with a JSON error and the connection is
//! closed after it.
//!
//! - `GET /v1/me`: the terminal's record, from the paired set in memory
//!   (last seen as this instance knows it).
//! - `POST /v1/heartbeat` `{"firmware"?}`: last seen, address, firmware.
//! - `/app/…` (any method): forwarded to `upstream_url` + the rest of the
//!   path, with `X-Pairgate-Terminal-Serial` and
//!   `X-Pairgate-Terminal-Fingerprint`; such headers sent by the terminal
//!   are stripped, as are hop-by-hop headers.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Extension, Json, Router};
use pairgate_proto::ErrorCode;
use pairgate_proto::{HeartbeatAnswer, HeartbeatRequest, Me};
use pairgate_store::{Store, Terminal};

use crate::ApiError;
use crate::http::{JsonBody, Peer, no_route, rfc3339, unix_millis, wrong_method};
use crate::paired::PairedSet;

/// Master state, cloned for every request (so nothing in it is copied).
#[derive(Clone)]
pub(crate) struct Master {
    pub store: Store,
    pub paired: Arc<PairedSet>,
    pub upstream: Option<Arc<crate::proxy::Upstream>>,
    pub clock: pairgate_clock::Clock,
}

/// The paired terminal a request comes from.
#[derive(Clone, Debug)]
pub(crate) struct PairedPeer {
    pub terminal: Arc<Terminal>,
}

/// The master's routes.
pub(crate) fn router(master: Master) -> Router {
    Router::new()
        .route("/v1/me", get(me))
        .route("/v1/heartbeat", post(heartbeat))
        .route("/app", any(crate::proxy::proxy))
        .route("/app/{*rest}", any(crate::proxy::proxy))
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(from_fn_with_state(master.clone(), require_paired))
        .with_state(master)
}

/// The per-request check.
async fn require_paired(
    State(master): State<Master>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(peer) = request.extensions().get::<Peer>().cloned() else {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::NotPaired,
            "no client certificate",
        )
        .closing()
        .into_response();
    };
    let Some(terminal) = master.paired.terminal(&peer.fingerprint) else {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::NotPaired,
            format!(
                "certificate {} is not paired with any terminal; pair it at the gate first",
                peer.fingerprint
            ),
        )
        .closing()
        .into_response();
    };
    request.extensions_mut().insert(PairedPeer { terminal });
    next.run(request).await
}

/// No database round trip: the paired check already found the record.
async fn me(
    State(master): State<Master>,
    Extension(peer): Extension<Peer>,
    Extension(paired): Extension<PairedPeer>,
) -> Result<Response, ApiError> {
    let t = &paired.terminal;
    Ok(Json(Me {
        serial: Cow::Borrowed(t.serial.as_str()),
        fingerprint: peer.fingerprint.to_hex(),
        name: Cow::Borrowed(&t.name),
        location: Cow::Borrowed(&t.location),
        paired_at: t.paired_at.map(rfc3339),
        last_seen_at: t.last_seen_at.map(rfc3339),
        firmware: t.firmware.as_deref().map(Cow::Borrowed),
        vpn_profile: Cow::Borrowed(&t.vpn_profile),
        server_time: rfc3339(unix_millis(master.clock.now())),
    })
    .into_response())
}

async fn heartbeat(
    State(master): State<Master>,
    Extension(peer): Extension<Peer>,
    Extension(paired): Extension<PairedPeer>,
    JsonBody(body): JsonBody<HeartbeatRequest>,
) -> Result<Response, ApiError> {
    let now = master.clock.now();
    let address = peer.address.to_string();
    let recorded = master
        .store
        .record_heartbeat(
            &paired.terminal.serial,
            &peer.fingerprint,
            &address,
            body.firmware.as_deref(),
            now,
        )
        .await?;
    if !recorded {
        return Err(
            ApiError::new(StatusCode::FORBIDDEN, ErrorCode::NotPaired, "not paired").closing(),
        );
    }
    let millis = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    master.paired.seen(
        &peer.fingerprint,
        millis,
        &address,
        body.firmware.as_deref(),
    );
    Ok(Json(HeartbeatAnswer {
        status: "ok".into(),
        server_time: rfc3339(unix_millis(master.clock.now())),
    })
    .into_response())
}
