//! The master's `/app/…` proxy to the operator's application. A paired
//! terminal is still outside input: the path it asks for must stay under
//! `upstream_url`'s base path, and the upstream must be able to trust the
//! identity headers the master sets. So:
//!
//! - a path with a dot-segment (`.`, `..`, raw or percent-encoded), an
//!   encoded slash or backslash, or an encoded NUL is refused with `400`;
//! - every incoming header whose name normalises (case, `_` for `-`) to a
//!   reserved one is dropped: `X-Pairgate-*`, `X-Forwarded-*`,
//!   `Forwarded`, `X-Real-IP`, hop-by-hop headers and the headers the
//!   request's own `Connection` header names; then ours are added:
//!   `X-Pairgate-Terminal-Serial`, `X-Pairgate-Terminal-Fingerprint`,
//!   `X-Pairgate-Request-Id` (also on the answer) and the terminal's
//!   address as `proxy_forwarded` says.
//!
//! Requests travel on a pool of kept-alive connections ([`pool`]); bodies
//! stream both ways under their timers and the body limit ([`body`]); an
//! upgrade (WebSocket) is spliced by the connection task ([`upgrade`]).

mod body;
mod pool;
mod request;
mod upgrade;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Extension;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;
use http_body_util::Limited;
use hyper::body::{Body as _, Incoming};
use pairgate_proto::ErrorCode;
use pairgate_tls::TlsPolicy;
use pairgate_tls::client::{ServerTrust, TlsClient};
use tokio::sync::OwnedSemaphorePermit;

use self::body::{RequestBody, Stalled, Timed, caused_by};
use self::pool::{Pool, PoolOptions, closed_under, retriable};
use self::request::{Forwarded, forwardable, strip_hop_by_hop, upgrade_protocol, upstream_path};
pub(crate) use self::upgrade::{Pending, UpgradeSlot, splice};
use crate::ApiError;
use crate::Settings;
use crate::http::{BodyLimit, Peer};
use crate::master::{Master, PairedPeer};

/// Where `/app/…` goes, and the pool that carries it there.
#[derive(Clone, Debug)]
pub(crate) struct Upstream {
    /// `http://host:port` or `https://host:port`.
    origin: String,
    /// `host:port`, the `Host` the upstream sees.
    authority: HeaderValue,
    /// Base path without a trailing slash.
    base_path: String,
    /// Longest wait for the response headers, and between two parts of
    /// the response body.
    timeout: Duration,
    max_body: usize,
    forwarded: Forwarded,
    pool: Pool,
    ids: Arc<RequestIds>,
}

impl Upstream {
    /// Requests at the upstream now, and the most allowed at once
    /// (`upstream_max_connections`), for `/metrics`.
    pub(crate) fn in_flight(&self) -> (usize, usize) {
        self.pool.in_flight()
    }

    /// The upstream of `settings.upstream_url` (none when empty), or why
    /// it cannot be used.
    pub(crate) fn from_settings(settings: &Settings) -> Result<Option<Self>, String> {
        let url = settings.upstream_url.as_str();
        if url.is_empty() {
            return Ok(None);
        }
        let (scheme, rest) = url
            .split_once("://")
            .filter(|(s, _)| matches!(*s, "http" | "https"))
            .ok_or_else(|| format!("upstream_url = {url:?} is not http(s)://host:port[/path]"))?;
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let host_header = HeaderValue::from_str(authority)
            .ok()
            .filter(|_| !authority.is_empty() && !authority.contains('@'))
            .ok_or_else(|| format!("upstream_url = {url:?} has no usable host:port"))?;
        let tls = (scheme == "https")
            .then(|| upstream_tls(settings))
            .transpose()?;
        let count = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        let pool = Pool::new(&PoolOptions {
            authority: with_port(authority, if tls.is_some() { 443 } else { 80 }),
            tls,
            connect_timeout: Duration::from_secs(settings.upstream_connect_timeout_secs),
            idle_timeout: Duration::from_secs(settings.upstream_idle_secs),
            max_idle: count(settings.upstream_max_idle),
            max_in_flight: count(settings.upstream_max_connections),
        });
        Ok(Some(Self {
            origin: format!("{scheme}://{authority}"),
            authority: host_header,
            base_path: path.trim_end_matches('/').to_owned(),
            timeout: Duration::from_secs(settings.proxy_timeout_secs),
            max_body: count(settings.max_proxy_body_bytes),
            forwarded: Forwarded::parse(&settings.proxy_forwarded)
                .ok_or_else(|| format!("proxy_forwarded = {:?}", settings.proxy_forwarded))?,
            pool,
            ids: Arc::new(RequestIds::new()),
        }))
    }
}

/// `host:port` to connect to: `authority`, with the scheme's port when it
/// names none (`host`, `[v6]`).
fn with_port(authority: &str, port: u16) -> String {
    let has_port = match authority.rsplit_once(':') {
        Some((host, p)) => {
            !p.is_empty()
                && !host.ends_with(':')
                && (!authority.starts_with('[') || host.ends_with(']'))
        }
        None => false,
    };
    if has_port {
        authority.to_owned()
    } else {
        format!("{authority}:{port}")
    }
}

/// The TLS client towards an `https://` upstream: its certificate chains
/// to `upstream_ca_file` and names the host, or its key is
/// `upstream_pin`, or both when both are set.
fn upstream_tls(settings: &Settings) -> Result<TlsClient, String> {
    let cas = if settings.upstream_ca_file.is_empty() {
        Vec::new()
    } else {
        let pem = std::fs::read(&settings.upstream_ca_file).map_err(|e| {
            format!(
                "reading upstream_ca_file {}: {e}",
                settings.upstream_ca_file
            )
        })?;
        pairgate_pki::certificate::parse_certificates(&pem)
            .map_err(|e| format!("upstream_ca_file {}: {e}", settings.upstream_ca_file))?
    };
    let pins = if settings.upstream_pin.is_empty() {
        Vec::new()
    } else {
        vec![
            settings
                .upstream_pin
                .parse()
                .map_err(|e| format!("upstream_pin: {e}"))?,
        ]
    };
    let trust = match (cas.is_empty(), pins.is_empty()) {
        (false, true) => ServerTrust::TrustStore(cas),
        (true, false) => ServerTrust::Pins(pins),
        (false, false) => ServerTrust::Both {
            trust_store: cas,
            pins,
        },
        (true, true) => {
            return Err("an https:// upstream needs upstream_ca_file or upstream_pin".into());
        }
    };
    TlsClient::new(None, trust, &TlsPolicy::default()).map_err(|e| e.to_string())
}

/// Request ids: a random prefix per process and a counter, so they are
/// unique across restarts and instances without a random draw per request.
#[derive(Debug)]
struct RequestIds {
    prefix: u64,
    next: AtomicU64,
}

impl RequestIds {
    fn new() -> Self {
        let mut seed = [0u8; 8];
        // A failing system RNG leaves the prefix 0: ids stay unique in
        // this process, which is what they are for.
        let _ = aws_lc_rs::rand::fill(&mut seed);
        Self {
            prefix: u64::from_le_bytes(seed),
            next: AtomicU64::new(0),
        }
    }

    fn next(&self) -> HeaderValue {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        // Hex digits only: always a valid header value.
        HeaderValue::from_str(&format!("{:016x}{n:016x}", self.prefix))
            .unwrap_or(HeaderValue::from_static("0"))
    }
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-pairgate-request-id");

fn bad_gateway(message: String) -> ApiError {
    tracing::warn!(%message, "upstream failure");
    ApiError::new(StatusCode::BAD_GATEWAY, ErrorCode::Upstream, message)
}

/// `/app/…`: forwards the request of a paired terminal.
pub(crate) async fn proxy(
    State(master): State<Master>,
    Extension(peer): Extension<Peer>,
    Extension(paired): Extension<PairedPeer>,
    Extension(limit): Extension<BodyLimit>,
    request: Request,
) -> Result<Response, ApiError> {
    let Some(upstream) = master.upstream.as_deref() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NoUpstream,
            "no upstream application is configured (upstream_url)",
        ));
    };
    let (parts, body) = request.into_parts();
    let rest = parts.uri.path().strip_prefix("/app").unwrap_or_default();
    let path = upstream_path(&upstream.base_path, rest, parts.uri.query())
        .map_err(|why| ApiError::bad_request(ErrorCode::BadPath, why))?;
    let uri: Uri = format!("{}{path}", upstream.origin)
        .parse()
        .map_err(|_| ApiError::bad_request(ErrorCode::BadPath, "the path is not a valid URI"))?;
    if body.size_hint().lower() > upstream.max_body as u64 {
        return Err(too_large(upstream.max_body));
    }
    let Some(slot) = upstream.pool.slot() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Upstream,
            "the upstream has as many requests from the master as it may; try again",
        ));
    };
    let id = upstream.ids.next();
    let upgrade = upgrade_protocol(&parts.headers);
    let headers = || upstream_headers(upstream, &parts.headers, &peer, &paired, &id, &upgrade);
    let again = retriable(&parts.method, !body.is_end_stream());
    let body = Timed::within(Limited::new(body, upstream.max_body), limit.1);
    let first = exchange(upstream, &parts.method, &uri, headers()?, body).await?;
    let response = match first {
        // Rare: the headers are made again rather than kept for it.
        Err(e) if again && closed_under(&e) => {
            let empty = Timed::within(Limited::new(Body::empty(), 0), limit.1);
            exchange(upstream, &parts.method, &uri, headers()?, empty).await?
        }
        first => first,
    }
    .map_err(|e| upstream_failure(&e, upstream.max_body))?;
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        return switched(
            response,
            upgrade,
            parts.extensions.get::<UpgradeSlot>(),
            slot,
            id,
        );
    }
    Ok(answer(response, upstream.timeout, slot, id))
}

/// The headers the upstream gets: the terminal's forwardable ones, then
/// `Host`, the identity, the request id, the address (as set) and, for an
/// upgrade, the protocol asked for.
fn upstream_headers(
    upstream: &Upstream,
    incoming: &HeaderMap,
    peer: &Peer,
    paired: &PairedPeer,
    id: &HeaderValue,
    upgrade: &Option<HeaderValue>,
) -> Result<HeaderMap, ApiError> {
    let mut headers = HeaderMap::with_capacity(incoming.len() + 6);
    for (name, value) in forwardable(incoming) {
        headers.append(name.clone(), value.clone());
    }
    let value = |text: &str| {
        HeaderValue::from_str(text).map_err(|e| bad_gateway(format!("an identity header: {e}")))
    };
    headers.insert(header::HOST, upstream.authority.clone());
    headers.insert(
        HeaderName::from_static("x-pairgate-terminal-serial"),
        value(paired.terminal.serial.as_str())?,
    );
    headers.insert(
        HeaderName::from_static("x-pairgate-terminal-fingerprint"),
        value(&peer.fingerprint.to_hex())?,
    );
    headers.insert(REQUEST_ID, id.clone());
    if let Some((name, value)) = upstream.forwarded.header(peer.address.ip()) {
        headers.insert(name, value);
    }
    if let Some(protocol) = upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, protocol.clone());
    }
    Ok(headers)
}

/// One request on the pool, within the response-header timeout.
async fn exchange(
    upstream: &Upstream,
    method: &Method,
    uri: &Uri,
    headers: HeaderMap,
    body: RequestBody,
) -> Result<Result<hyper::Response<Incoming>, hyper_util::client::legacy::Error>, ApiError> {
    let mut request = hyper::Request::new(body);
    *request.method_mut() = method.clone();
    *request.uri_mut() = uri.clone();
    *request.headers_mut() = headers;
    tokio::time::timeout(upstream.timeout, upstream.pool.send(request))
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                ErrorCode::UpstreamTimeout,
                "the upstream did not answer in time",
            )
        })
}

fn too_large(max: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::TooLarge,
        format!("the request body is over {max} bytes"),
    )
    .closing()
}

/// The answer to a failed exchange: the terminal's own body at fault
/// (too large, too slow), or the upstream.
fn upstream_failure(e: &hyper_util::client::legacy::Error, max_body: usize) -> ApiError {
    if caused_by::<http_body_util::LengthLimitError>(e) {
        return too_large(max_body);
    }
    if caused_by::<Stalled>(e) {
        return ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            ErrorCode::BodyTimeout,
            "the request body did not arrive in time",
        )
        .closing();
    }
    if e.is_connect() {
        return bad_gateway(format!("connecting to the upstream: {e}"));
    }
    bad_gateway(format!("upstream request: {e}"))
}

/// The upstream's answer, streamed back; the body holds the upstream slot
/// until it ends.
fn answer(
    response: hyper::Response<Incoming>,
    gap: Duration,
    slot: OwnedSemaphorePermit,
    id: HeaderValue,
) -> Response {
    let (head, body) = response.into_parts();
    let mut out = Response::new(Body::new(Timed::gaps(body, gap, Some(slot))));
    *out.status_mut() = head.status;
    let headers = out.headers_mut();
    *headers = head.headers;
    strip_hop_by_hop(headers);
    headers.insert(REQUEST_ID, id);
    out
}

/// The upstream switched protocols: the terminal gets the `101`, and the
/// connection task splices the two sides once it is written.
fn switched(
    mut response: hyper::Response<Incoming>,
    asked: Option<HeaderValue>,
    holder: Option<&UpgradeSlot>,
    slot: OwnedSemaphorePermit,
    id: HeaderValue,
) -> Result<Response, ApiError> {
    let (Some(asked), Some(holder)) = (asked, holder) else {
        return Err(bad_gateway(
            "the upstream switched protocols on a request that did not ask to".into(),
        ));
    };
    let protocol = response
        .headers()
        .get(header::UPGRADE)
        .cloned()
        .unwrap_or(asked);
    holder.put(hyper::upgrade::on(&mut response), slot);
    let mut out = Response::new(Body::empty());
    *out.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = out.headers_mut();
    *headers = std::mem::take(response.headers_mut());
    strip_hop_by_hop(headers);
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, protocol);
    headers.insert(REQUEST_ID, id);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::with_port;

    #[test]
    fn an_upstream_without_a_port_gets_its_scheme_s() {
        assert_eq!(with_port("app:8080", 80), "app:8080");
        assert_eq!(with_port("app", 80), "app:80");
        assert_eq!(with_port("app", 443), "app:443");
        assert_eq!(with_port("[::1]:9000", 80), "[::1]:9000");
        assert_eq!(with_port("[::1]", 80), "[::1]:80");
    }
}
