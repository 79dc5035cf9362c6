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

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Extension, Json, Router};
use hyper_util::rt::TokioIo;
use pairgate_store::{Store, Terminal};

use crate::ApiError;
use crate::http::{JsonBody, Peer, no_route, now_rfc3339, read_body, rfc3339, wrong_method};
use crate::paired::PairedSet;

/// Master state, cloned for every request (so nothing in it is copied).
#[derive(Clone)]
pub(crate) struct Master {
    pub store: Store,
    pub paired: Arc<PairedSet>,
    pub upstream: Option<Arc<Upstream>>,
}

/// Where `/app/…` goes.
#[derive(Clone, Debug)]
pub(crate) struct Upstream {
    /// `host:port`.
    pub authority: String,
    /// Base path without a trailing slash.
    pub base_path: String,
    pub timeout: Duration,
    pub max_body: usize,
}

impl Upstream {
    /// Parses `http://host:port[/base]`.
    pub(crate) fn parse(url: &str, timeout: Duration, max_body: usize) -> Option<Self> {
        let rest = url.strip_prefix("http://")?;
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if authority.is_empty() {
            return None;
        }
        Some(Self {
            authority: authority.to_owned(),
            base_path: path.trim_end_matches('/').to_owned(),
            timeout,
            max_body,
        })
    }
}

/// The paired terminal a request comes from.
#[derive(Clone, Debug)]
struct PairedPeer {
    terminal: Arc<Terminal>,
}

/// The master's routes.
pub(crate) fn router(master: Master) -> Router {
    Router::new()
        .route("/v1/me", get(me))
        .route("/v1/heartbeat", post(heartbeat))
        .route("/app", any(proxy))
        .route("/app/{*rest}", any(proxy))
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
            "PG-NOT-PAIRED",
            "no client certificate",
        )
        .closing()
        .into_response();
    };
    let Some(terminal) = master.paired.terminal(&peer.fingerprint) else {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "PG-NOT-PAIRED",
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

/// The answer of `GET /v1/me`, serialised straight from the cached record.
#[derive(serde::Serialize)]
struct Me<'a> {
    serial: &'a str,
    fingerprint: String,
    name: &'a str,
    location: &'a str,
    paired_at: Option<String>,
    last_seen_at: Option<String>,
    firmware: Option<&'a str>,
    vpn_profile: &'a str,
    server_time: String,
}

/// No database round trip: the paired check already found the record.
async fn me(
    Extension(peer): Extension<Peer>,
    Extension(paired): Extension<PairedPeer>,
) -> Result<Response, ApiError> {
    let t = &paired.terminal;
    Ok(Json(Me {
        serial: t.serial.as_str(),
        fingerprint: peer.fingerprint.to_hex(),
        name: &t.name,
        location: &t.location,
        paired_at: t.paired_at.map(rfc3339),
        last_seen_at: t.last_seen_at.map(rfc3339),
        firmware: t.firmware.as_deref(),
        vpn_profile: &t.vpn_profile,
        server_time: now_rfc3339(),
    })
    .into_response())
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct HeartbeatBody {
    #[serde(default)]
    firmware: Option<String>,
}

async fn heartbeat(
    State(master): State<Master>,
    Extension(peer): Extension<Peer>,
    Extension(paired): Extension<PairedPeer>,
    JsonBody(body): JsonBody<HeartbeatBody>,
) -> Result<Response, ApiError> {
    let now = SystemTime::now();
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
        return Err(ApiError::new(StatusCode::FORBIDDEN, "PG-NOT-PAIRED", "not paired").closing());
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
    Ok(Json(serde_json::json!({ "status": "ok", "server_time": now_rfc3339() })).into_response())
}

/// Headers never forwarded: those describing one hop, and the forwarding
/// header the master sets itself.
const HOP_BY_HOP: &[&str] = &[
    "x-forwarded-for",
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
];

fn bad_gateway(message: String) -> ApiError {
    tracing::warn!(%message, "upstream failure");
    ApiError::new(StatusCode::BAD_GATEWAY, "PG-UPSTREAM", message)
}

async fn proxy(
    State(master): State<Master>,
    Extension(peer): Extension<Peer>,
    Extension(paired): Extension<PairedPeer>,
    request: Request,
) -> Result<Response, ApiError> {
    let Some(upstream) = master.upstream.clone() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "PG-NO-UPSTREAM",
            "no upstream application is configured (upstream_url)",
        ));
    };
    let (parts, body) = request.into_parts();
    let rest = parts.uri.path().strip_prefix("/app").unwrap_or_default();
    let query = parts
        .uri
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let path = format!(
        "{}{}{query}",
        upstream.base_path,
        if rest.is_empty() { "/" } else { rest }
    );
    let body = read_body(body, upstream.max_body).await?;
    let mut builder = hyper::Request::builder()
        .method(parts.method.clone())
        .uri(&path)
        .header(header::HOST, &upstream.authority);
    for (name, value) in &parts.headers {
        let lower = name.as_str();
        if HOP_BY_HOP.contains(&lower) || lower.starts_with("x-pairgate-") {
            continue;
        }
        builder = builder.header(name, value);
    }
    let fingerprint = HeaderValue::from_str(&peer.fingerprint.to_hex())
        .map_err(|e| bad_gateway(e.to_string()))?;
    let serial = HeaderValue::from_str(paired.terminal.serial.as_str())
        .map_err(|e| bad_gateway(e.to_string()))?;
    let forwarded = HeaderValue::from_str(&peer.address.ip().to_string())
        .map_err(|e| bad_gateway(e.to_string()))?;
    builder = builder
        .header(
            HeaderName::from_static("x-pairgate-terminal-serial"),
            serial,
        )
        .header(
            HeaderName::from_static("x-pairgate-terminal-fingerprint"),
            fingerprint,
        )
        .header(HeaderName::from_static("x-forwarded-for"), forwarded);
    let outgoing = builder
        .body(http_body_util::Full::new(body))
        .map_err(|e| bad_gateway(format!("building the upstream request: {e}")))?;
    let call = async {
        let tcp = tokio::net::TcpStream::connect(&upstream.authority)
            .await
            .map_err(|e| bad_gateway(format!("connecting to the upstream: {e}")))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| bad_gateway(format!("upstream handshake: {e}")))?;
        let driver = tokio::spawn(connection);
        let response = sender
            .send_request(outgoing)
            .await
            .map_err(|e| bad_gateway(format!("upstream request: {e}")))?;
        let (head, body) = response.into_parts();
        let body = read_body(Body::new(body), upstream.max_body)
            .await
            .map_err(|_| bad_gateway("the upstream response is too large or broken".into()))?;
        driver.abort();
        Ok::<_, ApiError>((head, body))
    };
    let (head, bytes) = tokio::time::timeout(upstream.timeout, call)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "PG-UPSTREAM-TIMEOUT",
                "the upstream did not answer in time",
            )
        })??;
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = head.status;
    for (name, value) in &head.headers {
        if !HOP_BY_HOP.contains(&name.as_str()) && name != header::CONTENT_LENGTH {
            response.headers_mut().append(name, value.clone());
        }
    }
    Ok(response)
}
