//! A small HTTPS client over a [`TlsClient`]: one request per connection,
//! bounded response bodies. It is what the terminal agent uses to call the
//! gate and the master, with the alias's key and the server pins already
//! in the TLS configuration.

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

use pairgate_pki::SpkiPin;

use crate::TlsError;
use crate::client::TlsClient;

/// A response, body read in full.
#[derive(Clone, Debug)]
pub struct HttpsResponse {
    /// HTTP status code.
    pub status: u16,
    /// Response headers, names lowercase.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// The SPKI pin of the server key this response came over.
    pub server_pin: Option<SpkiPin>,
}

/// HTTPS over a configured [`TlsClient`].
#[derive(Clone, Debug)]
pub struct HttpsClient {
    tls: TlsClient,
    max_body: usize,
}

fn request_error(context: &str, e: impl std::fmt::Display) -> TlsError {
    TlsError::Io {
        context: context.to_owned(),
        source: std::io::Error::other(e.to_string()),
    }
}

impl HttpsClient {
    /// A client with a 1 MiB response limit.
    pub fn new(tls: TlsClient) -> Self {
        Self {
            tls,
            max_body: 1 << 20,
        }
    }

    /// Sets the largest response body accepted.
    pub fn with_max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// Sends `method url` with `headers` and an optional body; `url` is
    /// `https://host:port/path`.
    pub async fn request(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Result<HttpsResponse, TlsError> {
        let rest = url
            .strip_prefix("https://")
            .ok_or_else(|| TlsError::Config(format!("{url:?} is not an https:// URL")))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, "/"),
        };
        let stream = self.tls.connect(authority, None).await?;
        let server_pin = crate::peer_spki_pin(stream.get_ref().1);
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| request_error(&format!("HTTP to {authority}"), e))?;
        let driver = tokio::spawn(connection);
        let mut builder = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", authority);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = builder
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| request_error("building the request", e))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| request_error(&format!("{method} {url}"), e))?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = Limited::new(response.into_body(), self.max_body)
            .collect()
            .await
            .map_err(|e| request_error(&format!("reading the response of {url}"), e))?
            .to_bytes()
            .to_vec();
        driver.abort();
        Ok(HttpsResponse {
            status,
            headers,
            body,
            server_pin,
        })
    }
}
