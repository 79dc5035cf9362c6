//! What of a terminal's request may reach the upstream: the path, kept
//! under the upstream's base path, and the headers, with every reserved
//! or hop-by-hop name dropped under any spelling before the master adds
//! its own.

use std::borrow::Cow;
use std::collections::HashSet;

use axum::http::{HeaderMap, HeaderName, HeaderValue, header};

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
/// read as `-` (CGI and WSGI map both to `HTTP_X_…`). Borrowed when it is
/// already so, as a `HeaderName` without `_` is: no allocation per header.
fn normalised(name: &str) -> Cow<'_, str> {
    if name.bytes().any(|b| b == b'_' || b.is_ascii_uppercase()) {
        Cow::Owned(name.to_ascii_lowercase().replace('_', "-"))
    } else {
        Cow::Borrowed(name)
    }
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
pub(crate) fn forwardable(
    headers: &HeaderMap,
) -> impl Iterator<Item = (&HeaderName, &HeaderValue)> {
    let named_by_connection: HashSet<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|n| normalised(n.trim()).into_owned())
        .collect();
    headers.iter().filter(move |(name, _)| {
        let n = normalised(name.as_str());
        !(HOP_BY_HOP.contains(&n.as_ref())
            || RESERVED.contains(&n.as_ref())
            || n.starts_with("x-pairgate-")
            || n.starts_with("x-forwarded-")
            || named_by_connection.contains(n.as_ref()))
    })
}

/// Removes what of an upstream's answer stays with its hop: the
/// hop-by-hop headers, those its `Connection` names, and `Content-Length`
/// (the master frames the answer itself).
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
    headers.remove(header::CONTENT_LENGTH);
}

/// The protocol a request asks to switch to (`Upgrade`, named in
/// `Connection`), if it asks.
pub(crate) fn upgrade_protocol(headers: &HeaderMap) -> Option<HeaderValue> {
    let asks = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    asks.then(|| headers.get(header::UPGRADE).cloned())
        .flatten()
}

/// How the master tells the upstream the terminal's address
/// (`proxy_forwarded`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Forwarded {
    /// `X-Forwarded-For: <ip>`.
    XForwardedFor,
    /// `Forwarded: for=<ip>` (RFC 7239).
    Rfc7239,
    /// Not at all.
    None,
}

impl Forwarded {
    /// From the setting's value.
    pub(crate) fn parse(setting: &str) -> Option<Self> {
        match setting {
            "x-forwarded-for" => Some(Self::XForwardedFor),
            "forwarded" => Some(Self::Rfc7239),
            "none" => Some(Self::None),
            _ => None,
        }
    }

    /// The header to add for a terminal at `ip`, if any.
    pub(crate) fn header(self, ip: std::net::IpAddr) -> Option<(HeaderName, HeaderValue)> {
        let value = match (self, ip) {
            (Self::None, _) => return None,
            (Self::XForwardedFor, ip) => ip.to_string(),
            (Self::Rfc7239, std::net::IpAddr::V4(ip)) => format!("for={ip}"),
            (Self::Rfc7239, std::net::IpAddr::V6(ip)) => format!("for=\"[{ip}]\""),
        };
        let name = match self {
            Self::Rfc7239 => header::FORWARDED,
            _ => HeaderName::from_static("x-forwarded-for"),
        };
        HeaderValue::from_str(&value).ok().map(|v| (name, v))
    }
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
        let kept: Vec<String> = forwardable(&h).map(|(n, _)| n.to_string()).collect();
        assert_eq!(kept, ["x-custom", "accept"]);
    }

    #[test]
    fn upgrades_are_asked_in_connection_and_forwarded_as_set() {
        let mut h = HeaderMap::new();
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert_eq!(upgrade_protocol(&h), None);
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        assert_eq!(upgrade_protocol(&h).unwrap(), "websocket");
        let v4: std::net::IpAddr = "10.1.2.3".parse().unwrap();
        let v6: std::net::IpAddr = "::1".parse().unwrap();
        let (n, v) = Forwarded::XForwardedFor.header(v4).unwrap();
        assert_eq!(
            (n.as_str(), v.to_str().unwrap()),
            ("x-forwarded-for", "10.1.2.3")
        );
        let (n, v) = Forwarded::Rfc7239.header(v6).unwrap();
        assert_eq!(
            (n.as_str(), v.to_str().unwrap()),
            ("forwarded", "for=\"[::1]\"")
        );
        assert!(Forwarded::None.header(v4).is_none());
        assert_eq!(Forwarded::parse("forwarded"), Some(Forwarded::Rfc7239));
        assert_eq!(Forwarded::parse("X-Real-IP"), None);
    }

    #[test]
    fn an_answer_loses_its_hop_by_hop_headers() {
        let mut h = HeaderMap::new();
        for (n, v) in [
            ("connection", "x-upstream-hop"),
            ("x-upstream-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("content-length", "5"),
            ("content-type", "application/json"),
        ] {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_static(v),
            );
        }
        strip_hop_by_hop(&mut h);
        let kept: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        assert_eq!(kept, ["content-type"]);
    }
}
