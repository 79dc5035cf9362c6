//! The master's connections to the upstream: one pool of HTTP/1.1
//! keep-alive connections (hyper-util's client) shared by every terminal,
//! bounded in idle connections and in requests at once, over plain TCP or
//! over TLS with the upstream's own trust (a CA file or an SPKI pin).
//!
//! The pool never retries by itself: a request the upstream may have seen
//! is not sent twice. The proxy retries once only what is idempotent and
//! has no body ([`retriable`]).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::http::{Method, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use pairgate_tls::client::TlsClient;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::body::RequestBody;

/// How the pool reaches the upstream.
#[derive(Clone, Debug)]
pub(crate) struct PoolOptions {
    /// `host:port`.
    pub authority: String,
    /// TLS towards the upstream, if `https://`.
    pub tls: Option<TlsClient>,
    /// A new connection, TLS included, within this.
    pub connect_timeout: Duration,
    /// An idle kept-alive connection is closed after this.
    pub idle_timeout: Duration,
    /// Idle connections kept.
    pub max_idle: usize,
    /// Requests at the upstream at once.
    pub max_in_flight: usize,
}

/// The pool, shared by every master connection.
#[derive(Clone, Debug)]
pub(crate) struct Pool {
    client: Client<Connector, RequestBody>,
    in_flight: Arc<Semaphore>,
    max_in_flight: usize,
}

impl Pool {
    /// A pool; no connection is opened before the first request.
    pub(crate) fn new(options: &PoolOptions) -> Self {
        let connector = Connector {
            authority: Arc::from(options.authority.as_str()),
            tls: options.tls.clone(),
            timeout: options.connect_timeout,
        };
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(options.idle_timeout)
            .pool_max_idle_per_host(options.max_idle)
            .retry_canceled_requests(false)
            .set_host(false)
            .build(connector);
        Self {
            client,
            in_flight: Arc::new(Semaphore::new(options.max_in_flight)),
            max_in_flight: options.max_in_flight,
        }
    }

    /// Requests at the upstream now, and the most allowed at once.
    pub(crate) fn in_flight(&self) -> (usize, usize) {
        let free = self.in_flight.available_permits();
        (self.max_in_flight.saturating_sub(free), self.max_in_flight)
    }

    /// A place for one more request at the upstream, or `None` when all
    /// are taken (the caller answers 503 rather than queue).
    pub(crate) fn slot(&self) -> Option<OwnedSemaphorePermit> {
        self.in_flight.clone().try_acquire_owned().ok()
    }

    /// Sends a request (absolute URI) on a pooled connection.
    pub(crate) fn send(
        &self,
        request: hyper::Request<RequestBody>,
    ) -> hyper_util::client::legacy::ResponseFuture {
        self.client.request(request)
    }
}

/// Whether a request may be sent again after the upstream connection
/// failed under it: an idempotent method (RFC 9110, 9.2.2) without a body.
pub(crate) fn retriable(method: &Method, has_body: bool) -> bool {
    !has_body
        && matches!(
            *method,
            Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
        )
}

/// Whether the failure was the connection closing under the request (the
/// upstream closed an idle kept-alive connection as it was reused), not
/// a refusal to connect or a timeout.
pub(crate) fn closed_under(e: &hyper_util::client::legacy::Error) -> bool {
    if e.is_connect() {
        return false;
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(h) = s.downcast_ref::<hyper::Error>() {
            return h.is_canceled() || h.is_incomplete_message();
        }
        source = s.source();
    }
    false
}

/// Opens connections to the one upstream, whatever the URI says.
#[derive(Clone, Debug)]
struct Connector {
    authority: Arc<str>,
    tls: Option<TlsClient>,
    timeout: Duration,
}

impl tower::Service<Uri> for Connector {
    type Response = UpstreamIo;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<UpstreamIo>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let connect = async {
                let stream = match &this.tls {
                    None => {
                        let tcp = TcpStream::connect(&*this.authority).await?;
                        let _ = tcp.set_nodelay(true);
                        Stream::Plain(tcp)
                    }
                    Some(tls) => Stream::Tls(Box::new(
                        tls.connect(&this.authority, None)
                            .await
                            .map_err(io::Error::other)?,
                    )),
                };
                Ok(UpstreamIo(TokioIo::new(stream)))
            };
            tokio::time::timeout(this.timeout, connect)
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connecting timed out"))?
        })
    }
}

/// A connection to the upstream.
enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// [`Stream`] as hyper reads and writes it, with what the pool needs to
/// know about it.
struct UpstreamIo(TokioIo<Stream>);

impl Connection for UpstreamIo {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl hyper::rt::Read for UpstreamIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for UpstreamIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_idempotent_requests_without_a_body_are_retried() {
        assert!(retriable(&Method::GET, false));
        assert!(retriable(&Method::PUT, false));
        assert!(!retriable(&Method::GET, true));
        assert!(!retriable(&Method::POST, false));
        assert!(!retriable(&Method::PATCH, false));
    }
}
