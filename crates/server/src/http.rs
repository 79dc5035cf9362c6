//! HTTPS plumbing shared by gate and master: the accept loop (connection
//! caps, TLS handshake, then HTTP/1.1 with a header timeout that also
//! bounds the idle time between requests, a connection parked without
//! hyper's buffers while it is idle: [`crate::keepalive`]), the [`Peer`] every request
//! carries (the fingerprint from its own TLS session), the certificate
//! validity check every request passes (a resumed session skips the
//! handshake's), a per-connection guard that can close a connection at
//! once (unpair), a lingering close, and a JSON body reader with a size
//! limit, a time limit and JSON errors.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use http_body_util::{BodyExt, Limited};
use hyper::body::{Body as _, Incoming};
use hyper_util::rt::TokioIo;
use pairgate_pki::{SpkiPin, TerminalFingerprint};
use pairgate_proto::ErrorCode;
use pairgate_tls::server::TlsServer;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tower::ServiceExt;

use crate::ApiError;
use crate::conn::{ConnectionLimiter, linger_close};
use crate::keepalive::{Activity, Counted, Prefixed};
use crate::proxy::{UpgradeSlot, splice};

/// What the TLS session says about the client of a request.
#[derive(Clone, Debug)]
pub struct Peer {
    /// Fingerprint of the client certificate of this connection's session.
    pub fingerprint: TerminalFingerprint,
    /// That certificate (DER) where the listener keeps it (the gate);
    /// `None` at the master, whose connections need only the fingerprint
    /// and do not hold a copy each.
    pub certificate: Option<Arc<Vec<u8>>>,
    /// The client's address.
    pub address: SocketAddr,
    /// The pin of the server key presented in the session.
    pub server_pin: SpkiPin,
    /// The certificate's validity (`notBefore`, `notAfter`).
    pub valid: (SystemTime, SystemTime),
}

/// The largest request body a service reads, and how long it may take to
/// arrive.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BodyLimit(pub usize, pub Duration);

/// Resolves when a connection of `fingerprint` must be closed.
pub(crate) trait ConnectionGuard: Send + Sync {
    /// A future that completes when the connection of `fingerprint` from
    /// `address` has to go; dropped when the connection ends.
    fn closed(
        &self,
        fingerprint: TerminalFingerprint,
        address: std::net::IpAddr,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

/// How connections are served.
#[derive(Clone)]
pub(crate) struct ServeOptions {
    pub tls: TlsServer,
    pub server_pin: Arc<crate::identity::Presented>,
    pub body_limit: usize,
    pub body_timeout: Duration,
    pub header_timeout: Duration,
    pub linger: Duration,
    pub limiter: Arc<ConnectionLimiter>,
    pub guard: Option<Arc<dyn ConnectionGuard>>,
    /// Whether upgrades through `/app` are spliced (the master, whose
    /// guard closes them on unpair like any connection).
    pub upgrades: bool,
    /// Whether requests see the client's certificate ([`Peer::certificate`]).
    pub keep_certificate: bool,
    pub name: &'static str,
    /// The service, for its metrics.
    pub service: crate::metrics::Service,
    /// Where handshakes are counted.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// What time it is (certificate validity per request).
    pub clock: pairgate_clock::Clock,
    /// How long after its certificate expired a terminal may still re-key
    /// (the master; the gate refuses every expired certificate).
    pub expired_grace: Option<Duration>,
}

/// The only requests served to a certificate that expired within the
/// grace: the re-key.
fn is_rekey(method: &hyper::Method, path: &str) -> bool {
    method == hyper::Method::POST && matches!(path, "/v1/rekey/challenge" | "/v1/rekey")
}

/// Refuses a request whose certificate is outside its validity: a full
/// handshake checks it, a resumed one does not, and a kept-alive
/// connection may outlive it. A certificate that expired at most `grace`
/// ago may still re-key (the master's re-key handler takes it only from a
/// terminal's newest key).
fn outside_validity(
    peer: &Peer,
    now: SystemTime,
    grace: Option<Duration>,
    (method, path): (&hyper::Method, &str),
) -> Option<axum::response::Response> {
    use axum::response::IntoResponse;
    let expired = now > peer.valid.1;
    if expired && grace.is_some_and(|g| now <= peer.valid.1 + g) && is_rekey(method, path) {
        return None;
    }
    let hint = match grace {
        Some(g) if expired && now <= peer.valid.1 + g => {
            "; an expired certificate may only re-key (POST /v1/rekey)"
        }
        Some(_) if expired => "; it expired longer ago than expired_grace_secs: pair again",
        _ => "",
    };
    (now < peer.valid.0 || expired).then(|| {
        ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::CertExpired,
            format!(
                "certificate {} is not valid now (valid from {} to {}){hint}",
                peer.fingerprint,
                rfc3339(unix_millis(peer.valid.0)),
                rfc3339(unix_millis(peer.valid.1))
            ),
        )
        .closing()
        .into_response()
    })
}

/// Serves gate or master until `shutdown` turns true: mutual TLS, the
/// peer's certificate validity on every request, and the guard that
/// closes an unpaired terminal's connection at once.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    options: ServeOptions,
    shutdown: watch::Receiver<bool>,
) {
    let limiter = options.limiter.clone();
    crate::conn::accept_each(
        options.name,
        listener,
        limiter,
        shutdown,
        move |tcp, address, shutdown| {
            connection(tcp, address, router.clone(), options.clone(), shutdown)
        },
    )
    .await;
}

/// The TLS handshake, and the peer it proved; `None` (logged) when the
/// handshake is refused or the certificate unreadable.
async fn handshake(
    tcp: TcpStream,
    address: SocketAddr,
    options: &ServeOptions,
) -> Option<(tokio_rustls::server::TlsStream<TcpStream>, Peer)> {
    use crate::metrics::Handshake;
    let (stream, fingerprint) = match options.tls.accept(tcp).await {
        Ok(accepted) => accepted,
        Err(e) => {
            let outcome = Handshake::of_error(&e);
            options.metrics.handshake(options.service, outcome);
            tracing::debug!(service = options.name, %address, error = %e, "handshake refused");
            return None;
        }
    };
    let resumed = stream.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
    let outcome = if resumed {
        Handshake::Resumed
    } else {
        Handshake::Full
    };
    options.metrics.handshake(options.service, outcome);
    let certificate = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.as_ref().to_vec())
        .unwrap_or_default();
    // Only the validity is read, and kept for the connection.
    let Ok(valid) = pairgate_pki::validity::certificate_validity(&certificate) else {
        tracing::debug!(service = options.name, %address, "unreadable client certificate");
        return None;
    };
    let peer = Peer {
        fingerprint,
        certificate: options.keep_certificate.then(|| Arc::new(certificate)),
        address,
        server_pin: options.server_pin.get(),
        valid,
    };
    Some((stream, peer))
}

/// A gate or master connection's TLS stream, with bytes read ahead;
/// boxed, so that moving it between the states of a connection copies a
/// pointer and the connection's task is not sized for several of them.
type Stream = Box<Prefixed<tokio_rustls::server::TlsStream<TcpStream>>>;

/// How a served round ended.
enum Round {
    /// Idle again: parked until the next request.
    Idle(Stream),
    /// hyper wrote the `101` of an upgrade the handler accepted.
    Upgraded(Stream, crate::proxy::Pending),
    /// hyper ended the connection (the client asked, or a request body
    /// was left unread).
    Ended(Stream),
    /// A protocol error or a timeout: the connection is dropped.
    Failed,
}

/// One gate or master connection, from the handshake to its close:
/// parked between requests (see [`crate::keepalive`]), served by hyper
/// while they come.
async fn connection(
    tcp: TcpStream,
    address: SocketAddr,
    router: Router,
    options: ServeOptions,
    mut shutdown: watch::Receiver<bool>,
) {
    // Boxed: the handshake's state is not kept for the connection's life.
    let Some((stream, peer)) = Box::pin(handshake(tcp, address, &options)).await else {
        return;
    };
    let upgrades = options.upgrades.then(UpgradeSlot::default);
    let mut closed: Pin<Box<dyn Future<Output = ()> + Send>> = match &options.guard {
        Some(guard) => guard.closed(peer.fingerprint, peer.address.ip()),
        None => Box::pin(std::future::pending()),
    };
    let unpaired = || {
        tracing::info!(service = options.name, %address, fingerprint = %peer.fingerprint, "closing the connection of an unpaired terminal");
    };
    let mut stream = Box::new(Prefixed::new(stream, Bytes::new()));
    loop {
        // The header timeout runs from here: parked, then in hyper for
        // the rest of the first head, as it ran in hyper alone.
        let parked = tokio::time::Instant::now();
        if !stream.has_read_ahead() {
            let mut first = [0u8; 1];
            let read = tokio::select! {
                read = tokio::time::timeout(options.header_timeout, stream.read(&mut first)) => read,
                () = &mut closed => return unpaired(),
                _ = shutdown.changed() => return,
            };
            match read {
                Ok(Ok(1)) => stream.unread(&first),
                // The client closed its side: close ours (close_notify).
                Ok(Ok(_)) => return Box::pin(linger_close(stream, Duration::ZERO)).await,
                // Idle past the header timeout, or broken.
                _ => return,
            }
        }
        // Boxed: hyper's state exists only while a round is served.
        let left = options.header_timeout.saturating_sub(parked.elapsed());
        let round = Box::pin(serve_round(
            stream,
            (&peer, &router),
            &options,
            left,
            upgrades.as_ref(),
        ));
        let ended = tokio::select! {
            ended = round => ended,
            // Dropping the round closes the socket at once.
            () = &mut closed => return unpaired(),
            _ = shutdown.changed() => return,
        };
        stream = match ended {
            Round::Idle(stream) => stream,
            Round::Upgraded(stream, pending) => {
                let ends = (closed, shutdown);
                return Box::pin(upgraded(stream, pending, ends, &options, address)).await;
            }
            // hyper ends a connection whose request body it did not read;
            // the client may still be sending it.
            Round::Ended(stream) => return Box::pin(linger_close(stream, options.linger)).await,
            Round::Failed => return,
        };
    }
}

/// hyper serves `stream` until the connection is idle (every request read
/// and answered, the answers flushed), ends, or fails. The first request
/// head must be whole within `first_head` (what is left of the header
/// timeout after the wait for its first byte); hyper's own header timer
/// bounds each head too.
async fn serve_round(
    mut stream: Stream,
    (peer, router): (&Peer, &Router),
    options: &ServeOptions,
    first_head: Duration,
    upgrades: Option<&UpgradeSlot>,
) -> Round {
    use futures_util::future::{Either, FutureExt, ready};
    let activity = Arc::new(Activity::default());
    let (peer, router, limit) = (
        peer.clone(),
        router.clone(),
        BodyLimit(options.body_limit, options.body_timeout),
    );
    let (clock, slot, counted) = (options.clock.clone(), upgrades.cloned(), activity.clone());
    let grace = options.expired_grace;
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let has_body = !request.body().is_end_stream();
        counted.request(has_body);
        let written = counted.clone();
        let answer = move |response: axum::response::Response| {
            Ok::<_, std::convert::Infallible>(response.map(|b| Counted::answer(b, written)))
        };
        let route = (request.method(), request.uri().path());
        if let Some(refused) = outside_validity(&peer, clock.now(), grace, route) {
            return Either::Left(ready(answer(refused)));
        }
        let body =
            |b| axum::body::Body::new(Counted::request(b, has_body.then(|| counted.clone())));
        let mut request = request.map(body);
        request.extensions_mut().insert(peer.clone());
        request.extensions_mut().insert(limit);
        if let Some(slot) = &slot
            && request.headers().contains_key(hyper::header::UPGRADE)
        {
            request.extensions_mut().insert(slot.clone());
        }
        Either::Right(router.clone().oneshot(request).map(move |r| match r {
            Ok(response) => answer(response),
            Err(never) => match never {},
        }))
    });
    stream.watch(Some(activity.clone()));
    let io = TokioIo::new(stream);
    let mut connection = crate::conn::http1(options.header_timeout).serve_connection(io, service);
    let mut parking = false;
    // Polled only until the first request is read: usually never, as it
    // comes whole with the byte that started the round.
    let mut first_deadline = std::pin::pin!(tokio::time::sleep(first_head));
    let ended = std::future::poll_fn(|cx| {
        loop {
            let polled = connection.poll_without_shutdown(cx);
            if polled.is_pending() {
                if !activity.any_request() && first_deadline.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(None);
                }
                if !parking && activity.idle() {
                    // hyper closes an idle connection without writing a byte.
                    parking = true;
                    Pin::new(&mut connection).graceful_shutdown();
                    continue;
                }
            }
            return polled.map(Some);
        }
    })
    .await;
    // A protocol error, a timeout, or no whole first head in time.
    let Some(Ok(())) = ended else {
        return Round::Failed;
    };
    let parts = connection.into_parts();
    let mut stream = parts.io.into_inner();
    stream.watch(None);
    stream.unread(&parts.read_buf);
    match upgrades.and_then(UpgradeSlot::take) {
        Some(pending) => Round::Upgraded(stream, pending),
        None if parking => Round::Idle(stream),
        None => Round::Ended(stream),
    }
}

/// An upgraded connection, spliced to the upstream until either side
/// closes, the terminal is unpaired or the server stops.
async fn upgraded(
    stream: Stream,
    pending: crate::proxy::Pending,
    (mut closed, mut shutdown): (
        Pin<Box<dyn Future<Output = ()> + Send>>,
        watch::Receiver<bool>,
    ),
    options: &ServeOptions,
    address: SocketAddr,
) {
    tokio::select! {
        () = splice(stream, pending) => {}
        () = &mut closed => {
            tracing::info!(service = options.name, %address, "closing the upgraded connection of an unpaired terminal");
        }
        _ = shutdown.changed() => {}
    }
}

/// A JSON request body, read up to the service's limit. Malformed JSON,
/// unknown fields and oversized bodies are answered in the JSON error
/// format.
pub(crate) struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, ApiError> {
        let limit = request
            .extensions()
            .get::<BodyLimit>()
            .copied()
            .unwrap_or(BodyLimit(16 * 1024, Duration::from_secs(10)));
        if let Some(kind) = request.headers().get(axum::http::header::CONTENT_TYPE) {
            let kind = kind.to_str().unwrap_or_default();
            if !kind.starts_with("application/json") {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    ErrorCode::ContentType,
                    format!("the body must be application/json, not {kind:?}"),
                ));
            }
        }
        let bytes = read_body(request.into_body(), limit).await?;
        serde_json::from_slice(&bytes).map(JsonBody).map_err(|e| {
            ApiError::bad_request(
                ErrorCode::BadJson,
                format!("the request body is not valid: {e}"),
            )
        })
    }
}

/// Reads a body up to `limit.0` bytes within `limit.1`; `413` beyond
/// the size, `408` beyond the time.
pub(crate) async fn read_body(
    body: axum::body::Body,
    limit: BodyLimit,
) -> Result<axum::body::Bytes, ApiError> {
    let BodyLimit(bytes, time) = limit;
    let collected = tokio::time::timeout(time, Limited::new(body, bytes).collect())
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                ErrorCode::BodyTimeout,
                format!(
                    "the request body did not arrive within {} s",
                    time.as_secs()
                ),
            )
            .closing()
        })?;
    match collected {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::TooLarge,
            format!("the request body is over {bytes} bytes"),
        )
        .closing()),
        Err(e) => Err(ApiError::bad_request(
            ErrorCode::BadBody,
            format!("reading the request body: {e}"),
        )),
    }
}

/// Answers unknown paths in the JSON error format.
pub(crate) async fn no_route() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::NoRoute,
        "no such endpoint",
    )
}

/// Answers a known path with the wrong method in the JSON error format.
pub(crate) async fn wrong_method() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::Method,
        "this endpoint does not take that method",
    )
}

/// Query parameters, with malformed ones answered in the JSON error format.
pub(crate) struct JsonQuery<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for JsonQuery<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| JsonQuery(q.0))
            .map_err(|e| ApiError::bad_request(ErrorCode::BadQuery, e.body_text()))
    }
}

/// Path parameters, with malformed ones (bad percent-encoding, not
/// UTF-8) answered in the JSON error format.
pub(crate) struct JsonPath<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for JsonPath<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| JsonPath(p.0))
            .map_err(|e| ApiError::bad_request(ErrorCode::BadPath, e.body_text()))
    }
}

/// RFC 3339 UTC (whole seconds) for Unix milliseconds.
pub fn rfc3339(millis: i64) -> String {
    pairgate_proto::Timestamp(millis).rfc3339()
}

/// Unix milliseconds of `t` (0 before the epoch).
pub fn unix_millis(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
