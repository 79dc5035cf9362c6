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
//!   request's own `Connection` header names; then ours are added.

use std::collections::HashSet;
use std::time::Duration;

use axum::Extension;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::Response;
use hyper_util::rt::TokioIo;
use pairgate_proto::ErrorCode;

use crate::ApiError;
use crate::http::{BodyLimit, Peer, read_body};
use crate::master::{Master, PairedPeer};

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

/// Headers that describe one hop and are never forwarded either way.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
];

/// Request headers only the master may set, besides the hop-by-hop ones
/// and the `x-pairgate-` and `x-forwarded-` families.
const RESERVED: &[&str] = &["forwarded", "x-real-ip", "content-length"];

/// A header name as an application server may see it: lower case, `_`
/// read as `-` (CGI and WSGI map both to `HTTP_X_…`).
fn normalised(name: &str) -> String {
    name.to_ascii_lowercase().replace('_', "-")
}

/// Decodes `%XX` escapes once, for checking only (not for forwarding).
fn percent_decoded(segment: &str) -> Vec<u8> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b, hex) {
            (b'%', Some(decoded)) => {
                out.push(decoded);
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// The upstream path for `rest` (the raw path after `/app`, as the
/// terminal sent it) under `base`, or why it is refused.
pub(crate) fn upstream_path(base: &str, rest: &str, query: Option<&str>) -> Result<String, String> {
    if !(rest.is_empty() || rest.starts_with('/')) {
        return Err("the path must continue with / after /app".into());
    }
    for segment in rest.split('/') {
        let decoded = percent_decoded(segment);
        if decoded == b"." || decoded == b".." {
            return Err("the path holds a dot-segment (. or ..)".into());
        }
        if decoded.iter().any(|b| matches!(b, b'/' | b'\\' | 0)) || segment.contains('\\') {
            return Err("the path holds an encoded slash, a backslash or NUL".into());
        }
        // A second round of decoding must not make a dot-segment or a
        // slash either (double encoding, %252e).
        let twice = percent_decoded(&String::from_utf8_lossy(&decoded));
        if twice != decoded
            && (twice == b"." || twice == b".." || twice.iter().any(|b| matches!(b, b'/' | b'\\')))
        {
            return Err("the path holds a doubly encoded dot-segment or slash".into());
        }
    }
    let query = query.map(|q| format!("?{q}")).unwrap_or_default();
    let rest = if rest.is_empty() { "/" } else { rest };
    Ok(format!("{base}{rest}{query}"))
}

/// The incoming headers that may go to the upstream.
pub(crate) fn forwardable(headers: &HeaderMap) -> Vec<(HeaderName, HeaderValue)> {
    let named_by_connection: HashSet<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|n| normalised(n.trim()))
        .collect();
    headers
        .iter()
        .filter(|(name, _)| {
            let n = normalised(name.as_str());
            !(HOP_BY_HOP.contains(&n.as_str())
                || RESERVED.contains(&n.as_str())
                || n.starts_with("x-pairgate-")
                || n.starts_with("x-forwarded-")
                || named_by_connection.contains(&n))
        })
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect()
}

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
    let Some(upstream) = master.upstream.clone() else {
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
    let body = read_body(body, BodyLimit(upstream.max_body, limit.1)).await?;
    let mut builder = hyper::Request::builder()
        .method(parts.method.clone())
        .uri(&path)
        .header(header::HOST, &upstream.authority);
    for (name, value) in forwardable(&parts.headers) {
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
        let body = read_body(
            Body::new(body),
            BodyLimit(upstream.max_body, upstream.timeout),
        )
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
                ErrorCode::UpstreamTimeout,
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_under_the_base() {
        assert_eq!(
            upstream_path("/base", "/orders/7", Some("x=1")).unwrap(),
            "/base/orders/7?x=1"
        );
        assert_eq!(upstream_path("", "", None).unwrap(), "/");
        assert_eq!(
            upstream_path("/b", "/a%20b/c.d/..x", None).unwrap(),
            "/b/a%20b/c.d/..x"
        );
        for bad in [
            "/../internal/secrets",
            "/%2e%2e/internal/secrets",
            "/%2E%2e/x",
            "/.%2e/x",
            "/./x",
            "/a/%2e",
            "/a%2finternal",
            "/a%2Finternal",
            "/a%5cb",
            "/a\\b",
            "/a%00b",
            "/%252e%252e/x",
            "/a%252fb",
            "x",
        ] {
            assert!(upstream_path("/base", bad, None).is_err(), "{bad}");
        }
    }

    #[test]
    fn reserved_headers_are_dropped_under_any_spelling() {
        let mut h = HeaderMap::new();
        for (n, v) in [
            ("x_pairgate_terminal_serial", "ATM-0999"),
            ("X-PAIRGATE-TERMINAL-FINGERPRINT", "00"),
            ("x-forwarded-host", "evil"),
            ("x_forwarded_for", "1.2.3.4"),
            ("forwarded", "for=1.2.3.4"),
            ("x-real-ip", "1.2.3.4"),
            ("x_real_ip", "1.2.3.4"),
            ("connection", "x-secret-hop, keep-alive"),
            ("x-secret-hop", "1"),
            ("x_secret_hop", "1"),
            ("content-length", "5"),
            ("x-custom", "kept"),
            ("accept", "application/json"),
        ] {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_static(v),
            );
        }
        let kept: Vec<String> = forwardable(&h).iter().map(|(n, _)| n.to_string()).collect();
        assert_eq!(kept, ["x-custom", "accept"]);
    }
}
