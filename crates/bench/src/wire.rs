//! The load generator's HTTP/1.1: one request written, one response read
//! (status line, `Content-Length` body), on any byte stream. Small on
//! purpose: the client is usually the bottleneck on a small machine, and
//! the same code talks to pairgate and nginx.

use std::io::{Error, ErrorKind};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The largest response head or body the client accepts.
const MAX_RESPONSE: usize = 64 * 1024;

/// A request, serialised once and sent many times.
#[derive(Clone, Debug)]
pub struct Request(Vec<u8>);

impl Request {
    /// `GET path`.
    pub fn get(path: &str) -> Self {
        Self(format!("GET {path} HTTP/1.1\r\nhost: localhost\r\n\r\n").into_bytes())
    }

    /// `POST path` with a form body and a cookie that matches its `csrf`
    /// field (CAS's login takes a double-submit token).
    pub fn form(path: &str, body: &str, cookie: &str) -> Self {
        Self(
            format!(
                "POST {path} HTTP/1.1\r\nhost: localhost\r\ncookie: {cookie}\r\ncontent-type: application/x-www-form-urlencoded\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes(),
        )
    }

    /// `POST path` with a JSON body.
    pub fn post_json(path: &str, body: &str) -> Self {
        Self(
            format!(
                "POST {path} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes(),
        )
    }
}

/// What came back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Whether the server said `Connection: close`.
    pub close: bool,
}

/// Sends `request` and reads one response into `buf` (reused between
/// calls). A connection closed before a whole response is `UnexpectedEof`.
pub async fn exchange<S>(
    stream: &mut S,
    request: &Request,
    buf: &mut Vec<u8>,
) -> std::io::Result<Response>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    stream.write_all(&request.0).await?;
    stream.flush().await?;
    buf.clear();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_RESPONSE {
            return Err(Error::new(
                ErrorKind::InvalidData,
                "response head too large",
            ));
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(Error::new(ErrorKind::UnexpectedEof, "connection closed"));
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
    };
    let head = std::str::from_utf8(buf.get(..head_end).unwrap_or_default())
        .map_err(|_| Error::new(ErrorKind::InvalidData, "response head is not UTF-8"))?;
    let (status, length, close) = parse_head(head)?;
    let mut have = buf.len() - head_end;
    while have < length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(Error::new(
                ErrorKind::UnexpectedEof,
                "connection closed in the body",
            ));
        }
        have += n;
    }
    Ok(Response { status, close })
}

/// Status, body length and `Connection: close` of a response head.
fn parse_head(head: &str) -> std::io::Result<(u16, usize, bool)> {
    let bad = |why: &str| Error::new(ErrorKind::InvalidData, why.to_owned());
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.strip_prefix("HTTP/1.1 "))
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| bad("no HTTP/1.1 status line"))?;
    let mut length = None;
    let mut close = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .parse::<usize>()
                    .map_err(|_| bad("bad content-length"))?,
            );
        } else if name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close");
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(bad("chunked responses are not read by the load generator"));
        }
    }
    let length = length.ok_or_else(|| bad("no content-length"))?;
    if length > MAX_RESPONSE {
        return Err(bad("response body too large"));
    }
    Ok((status, length, close))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_one_response_at_a_time() {
        let (mut client, mut server) = tokio::io::duplex(1024);
        tokio::spawn(async move {
            let mut buf = [0u8; 256];
            let _ = server.read(&mut buf).await;
            let _ = server
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel")
                .await;
            let _ = server.write_all(b"lo").await;
            let _ = server.read(&mut buf).await;
            let _ = server
                .write_all(
                    b"HTTP/1.1 403 Forbidden\r\nconnection: close\r\ncontent-length: 0\r\n\r\n",
                )
                .await;
        });
        let mut buf = Vec::new();
        let first = exchange(&mut client, &Request::get("/"), &mut buf)
            .await
            .unwrap();
        assert_eq!(
            first,
            Response {
                status: 200,
                close: false
            }
        );
        let second = exchange(&mut client, &Request::get("/"), &mut buf)
            .await
            .unwrap();
        assert_eq!(
            second,
            Response {
                status: 403,
                close: true
            }
        );
        let third = exchange(&mut client, &Request::get("/"), &mut buf).await;
        assert!(third.is_err());
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        assert!(parse_head("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n").is_err());
        assert!(parse_head("HTTP/1.1 200 OK\r\n\r\n").is_err());
        assert!(parse_head("SSH-2.0\r\n\r\n").is_err());
    }
}
