//! The master service (TCP 7743): mutual TLS for paired terminals. Every
//! request — not every handshake, because a resumed session skips
//! certificate verification — is checked against the in-memory paired
//! set; anything else gets `403` with a JSON error and the connection is
//! closed after it.
//!
//! - `GET /v1/me`: the terminal's record, from the paired set in memory
//!   (last seen as this instance knows it), with the server keys to pin
//!   and the rotation statements as the master last read them.
//! - `POST /v1/heartbeat` `{"firmware"?}`: last seen, address, firmware.
//! - `/app/…` (any method): forwarded to `upstream_url` + the rest of the
//!   path, with `X-Pairgate-Terminal-Serial` and
//!   `X-Pairgate-Terminal-Fingerprint`; such headers sent by the terminal
//!   are stripped, as are hop-by-hop headers.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Extension, Json, Router};
use futures_util::future::{Either, Ready, ready};
use pairgate_pki::TerminalFingerprint;
use pairgate_proto::ErrorCode;
use pairgate_proto::{HeartbeatAnswer, HeartbeatRequest, Me};
use pairgate_store::{Store, Terminal};

use crate::ApiError;
use crate::http::{JsonBody, Peer, no_route, rfc3339, unix_millis, wrong_method};
use crate::paired::PairedSet;
use pairgate_store::Heartbeat;

/// Master state, cloned for every request (so nothing in it is copied).
#[derive(Clone)]
pub(crate) struct Master {
    pub store: Store,
    pub paired: Arc<PairedSet>,
    pub upstream: Option<Arc<crate::proxy::Upstream>>,
    pub clock: pairgate_clock::Clock,
    /// Where suspected clones are reported.
    pub presence: Arc<crate::clones::Presence>,
    /// How long an old key is served beside a proven successor at most.
    pub rekey_overlap: std::time::Duration,
    /// The terminal CA that certifies re-key CSRs, when configured.
    pub terminal_ca: Option<Arc<crate::terminal_ca::TerminalCa>>,
    /// The VPN offered to paired terminals, if any.
    pub vpn: Option<Arc<crate::vpn::Vpn>>,
    /// The server keys as this master last read them, for `GET /v1/me`.
    pub keys: Arc<crate::server_keys::KeysView>,
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
        .route("/v1/rekey/challenge", post(crate::rekey::challenge))
        .route("/v1/rekey", post(crate::rekey::rekey))
        .route(
            "/v1/server-keys",
            get(
                async |State(m): State<Master>, Extension(peer): Extension<Peer>| {
                    crate::server_keys::answer(&m.store, peer.server_pin).await
                },
            ),
        )
        .route(
            "/v1/vpn",
            get(crate::vpn::routes::master_status).post(crate::vpn::routes::master_enrol),
        )
        .route("/app", any(crate::proxy::proxy))
        .route("/app/{*rest}", any(crate::proxy::proxy))
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(RequirePairedLayer(master.clone()))
        .with_state(master)
}

/// The per-request check, as a layer over every route: a plain service
/// rather than `from_fn`, which boxes a clone of the route and a future on
/// every request. Only a successor key's first request takes a boxed
/// future: the switch to it is written to the store before it is served.
#[derive(Clone)]
struct RequirePaired<S> {
    inner: S,
    master: Master,
}

impl<S> tower::Layer<S> for RequirePairedLayer {
    type Service = RequirePaired<S>;

    fn layer(&self, inner: S) -> RequirePaired<S> {
        RequirePaired {
            inner,
            master: self.0.clone(),
        }
    }
}

/// Makes [`RequirePaired`] services.
#[derive(Clone)]
struct RequirePairedLayer(Master);

type Boxed<E> = Pin<Box<dyn Future<Output = Result<Response, E>> + Send>>;

impl<S> tower::Service<Request> for RequirePaired<S>
where
    S: tower::Service<Request, Response = Response> + Clone + Send + 'static,
    S::Future: Send,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Either<Ready<Result<Response, S::Error>>, Either<S::Future, Boxed<S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let now = self.master.clock.now();
        match paired_terminal(&self.master.paired, &request, now) {
            Ok(Found::Current(terminal)) => {
                request.extensions_mut().insert(PairedPeer { terminal });
                Either::Right(Either::Left(self.inner.call(request)))
            }
            Ok(Found::Successor(terminal, fingerprint)) => {
                // The ready clone serves this request; the fresh one waits
                // for readiness in the next poll_ready.
                let fresh = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, fresh);
                let master = self.master.clone();
                Either::Right(Either::Right(Box::pin(async move {
                    match switch_to_successor(&master, &terminal, fingerprint, now).await {
                        Ok(terminal) => {
                            request.extensions_mut().insert(PairedPeer { terminal });
                            inner.call(request).await
                        }
                        Err(refused) => Ok(refused.into_response()),
                    }
                })))
            }
            Err(refused) => Either::Left(ready(Ok(refused.into_response()))),
        }
    }
}

/// How a request's key was found in the paired set.
enum Found {
    /// The terminal's paired key.
    Current(Arc<Terminal>),
    /// A successor key the terminal proved and now uses for the first time.
    Successor(Arc<Terminal>, TerminalFingerprint),
}

/// Makes `fingerprint` the terminal's paired key in the store (retiring
/// the old one) and in this instance's set, then serves it; another
/// instance may have switched it first.
async fn switch_to_successor(
    master: &Master,
    terminal: &Terminal,
    fingerprint: TerminalFingerprint,
    now: SystemTime,
) -> Result<Arc<Terminal>, ApiError> {
    let serial = &terminal.serial;
    if master
        .store
        .activate_successor(serial, &fingerprint, now)
        .await?
    {
        tracing::info!(serial = %serial, fingerprint = %fingerprint, "terminal switched to its new key; the old one is refused");
    }
    let fresh = master.paired.refresh_serial(&master.store, serial).await?;
    fresh
        .filter(|t| t.paired_fingerprint == Some(fingerprint))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::FORBIDDEN,
                ErrorCode::NotPaired,
                format!("certificate {fingerprint} is not paired with any terminal"),
            )
            .closing()
        })
}

/// The paired terminal a request comes from, or why it is refused (the
/// connection is closed after the answer).
fn paired_terminal(
    paired: &PairedSet,
    request: &Request,
    now: SystemTime,
) -> Result<Found, ApiError> {
    if paired.stale() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::StoreUnavailable,
            "this master has not reached its store for longer than stale_after_secs and cannot \
             tell which terminals are still paired; retry later",
        )
        .closing());
    }
    let Some(peer) = request.extensions().get::<Peer>() else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::NotPaired,
            "no client certificate",
        )
        .closing());
    };
    let terminal = paired.terminal(&peer.fingerprint).ok_or_else(|| {
        ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::NotPaired,
            format!(
                "certificate {} is not paired with any terminal; pair it at the gate first",
                peer.fingerprint
            ),
        )
        .closing()
    })?;
    if terminal.successor_fingerprint == Some(peer.fingerprint) {
        return Ok(Found::Successor(terminal, peer.fingerprint));
    }
    let overlap_over = terminal
        .successor_until
        .is_some_and(|until| unix_millis(now) > until);
    if terminal.successor_fingerprint.is_some() && overlap_over {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::KeyReplaced,
            format!(
                "certificate {} was replaced by the terminal's new key; connect with that one",
                peer.fingerprint
            ),
        )
        .closing());
    }
    Ok(Found::Current(terminal))
}

/// No database round trip: the paired check already found the record.
async fn me(
    State(master): State<Master>,
    Extension(peer): Extension<Peer>,
    Extension(paired): Extension<PairedPeer>,
) -> Result<Response, ApiError> {
    let t = &paired.terminal;
    let keys = master.keys.get();
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
        server_pins: keys.pins(peer.server_pin),
        rotations: Cow::Borrowed(&keys.rotations),
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
            (&address, body.firmware.as_deref(), body.counter),
            now,
        )
        .await?;
    match recorded {
        Heartbeat::Recorded => {}
        Heartbeat::CounterBack { highest, got } => master.presence.report(
            peer.fingerprint,
            serde_json::json!({
                "reason": "heartbeat counter did not rise",
                "highest_counter": highest, "counter": got,
                "address": peer.address.ip().to_string(), "at": rfc3339(unix_millis(now)),
            }),
        ),
        Heartbeat::NotPaired => {
            return Err(
                ApiError::new(StatusCode::FORBIDDEN, ErrorCode::NotPaired, "not paired").closing(),
            );
        }
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
