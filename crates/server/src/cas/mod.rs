//! CAS, the operators' console on port 7780: server-rendered pages for
//! people (login with TOTP, terminals, pairing requests, audit log,
//! operators, API tokens) and a JSON API under `/api/v1` for programs.
//! Every action calls the same store verb as `pairgate admin`. Plain HTTP
//! on 127.0.0.1 by default; TLS with the server identity when `cas_tls`.

// Handlers return early with a ready answer (`Result<_, Response>`); the
// response is built once per request, so boxing it would buy nothing.
#![allow(clippy::result_large_err)]

/// The value of an `Ok`, or return the `Err`'s response: the API
/// handlers' `?` (their errors are already responses).
macro_rules! tri {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(r) => return r,
        }
    };
}

mod account;
mod admin;
mod api;
mod api_accounts;
mod api_bulk;
mod api_vendors;
mod auth;
mod blocked;
mod bulk;
mod charts;
mod dashboard;
mod html;
mod limiter;
mod logins;
mod openapi;
mod operators;
mod pages;
mod requests;
mod suspend;
mod vendors;
mod vpn;

pub use pages::parse_import;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hyper_util::rt::TokioIo;
use maud::html;
use pairgate_proto::ErrorCode;
use pairgate_store::{SessionLimits, Store, StoreError};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tower::ServiceExt;
use zeroize::Zeroizing;

pub use limiter::{LoginLimiter, LoginLimits};
pub use logins::Logins;

/// File in the data directory holding the first-run admin password until
/// the first password change.
pub const FIRST_RUN_FILE: &str = "initial-admin-password";

/// The first-run admin password, redacted in `Debug`.
pub struct FirstRunPassword(pub Zeroizing<String>);

impl FirstRunPassword {
    /// The password, to print once.
    pub fn reveal(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for FirstRunPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FirstRunPassword(<redacted>)")
    }
}

/// What every CAS handler shares.
#[derive(Clone)]
pub struct Cas {
    /// The store.
    pub store: Store,
    /// Session timeouts.
    pub limits: SessionLimits,
    /// Served over TLS: Secure, `__Host-` cookies.
    pub secure: bool,
    /// Failed-login counters.
    pub logins: Arc<Logins>,
    /// The first-run password file, deleted at the first password change.
    pub first_run_file: Option<Arc<PathBuf>>,
    /// Host names (lower case, no port) CAS answers to; any other `Host`
    /// is refused, so a DNS-rebinding page cannot reach it.
    pub hosts: Arc<Vec<String>>,
    /// The server key's pin: audit checkpoints must carry it.
    pub server_pin: pairgate_pki::SpkiPin,
    /// The last full check of the audit log against its checkpoints.
    pub audit_checked: crate::audit_anchor::LastFullCheck,
    /// The server identity presented now (its certificate's expiry is
    /// shown on the dashboard).
    pub(crate) presented: Arc<crate::identity::Presented>,
    /// The VPN offered to paired terminals, if any.
    pub vpn: Option<Arc<crate::VpnSettings>>,
    /// What time it is.
    pub clock: pairgate_clock::Clock,
}

/// The host of a `Host` header: lower case, without port or brackets.
fn host_name(header: &str) -> String {
    let header = header.trim().to_ascii_lowercase();
    if let Some(rest) = header.strip_prefix('[') {
        return rest.split(']').next().unwrap_or_default().to_owned();
    }
    header.rsplit_once(':').map_or(header.clone(), |(h, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) {
            h.to_owned()
        } else {
            header.clone()
        }
    })
}

/// Refuses a request whose `Host` is not one of CAS's names (`421`).
async fn check_host(
    State(hosts): State<Arc<Vec<String>>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(host_name);
    match host {
        Some(h) if hosts.contains(&h) => next.run(request).await,
        other => crate::ApiError::new(
            StatusCode::MISDIRECTED_REQUEST,
            ErrorCode::Host,
            format!(
                "CAS does not answer to host {:?}; add it to cas_hosts if it is yours",
                other.unwrap_or_default()
            ),
        )
        .closing()
        .into_response(),
    }
}

/// The client's address (the TCP peer).
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = StatusCode;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, StatusCode> {
        parts
            .extensions
            .get::<ClientAddr>()
            .copied()
            .ok_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl Cas {
    /// Deletes the first-run password file (the password stopped working).
    pub fn forget_first_run_password(&self) {
        if let Some(path) = &self.first_run_file {
            match std::fs::remove_file(path.as_ref()) {
                Ok(()) => {
                    tracing::info!(file = %path.display(), "first-run admin password file deleted")
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "deleting the first-run password file")
                }
            }
        }
    }
}

/// First run: when the store has no operator, creates `admin` with a
/// one-time password, writes it to `<data_dir>/initial-admin-password`
/// (0600) and returns it for the console, once.
pub async fn first_run(
    store: &Store,
    file: &std::path::Path,
    now: SystemTime,
) -> Result<Option<Zeroizing<String>>, StoreError> {
    let Some((_, password)) = store.first_run_admin(now).await? else {
        return Ok(None);
    };
    let text = format!("{}\n", password.as_str());
    pairgate_keystore::write_atomic(file, text.as_bytes())
        .map_err(|e| StoreError::Io(format!("writing {}: {e}", file.display())))?;
    Ok(Some(password))
}

/// A 500 page; the detail goes to the log only.
pub(crate) fn internal(e: &StoreError) -> Response {
    crate::metrics::STORE_ERRORS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    tracing::error!(error = %e, "CAS store failure");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        html::page(
            "Internal error",
            None,
            html! { (html::flash(html::Flash::Error, "Something went wrong; the server log has details. Nothing was changed.")) },
        ),
    )
        .into_response()
}

/// A refused second factor as the status and message for a page (a
/// wrong or replayed code in a form: 400; the operator's step-up lock:
/// 429); `None` for any other failure.
pub(crate) fn step_up_refusal(e: &StoreError) -> Option<(StatusCode, String)> {
    match e {
        StoreError::Unauthorized(m) | StoreError::Replayed(m) => {
            Some((StatusCode::BAD_REQUEST, m.clone()))
        }
        StoreError::RateLimited(m) => Some((StatusCode::TOO_MANY_REQUESTS, m.clone())),
        _ => None,
    }
}

/// `response` with `status`.
pub(crate) fn with_status(mut response: Response, status: StatusCode) -> Response {
    *response.status_mut() = status;
    response
}

/// A page for a refused or failed action, with the right status.
pub(crate) fn refused(
    who: &auth::SignedIn,
    status: StatusCode,
    title: &str,
    message: &str,
) -> Response {
    (
        status,
        html::page(
            title,
            Some(&who.viewer()),
            html! { (html::flash(html::Flash::Error, message)) },
        ),
    )
        .into_response()
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        html::page(
            "Not found",
            None,
            html! { p { "No such page. " a href="/" { "Back to the dashboard" } } },
        ),
    )
        .into_response()
}

async fn style() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        html::STYLE,
    )
        .into_response()
}

/// Headers on every answer: no framing, no sniffing, no referrer, no
/// caching of pages, no script or inline style at all.
async fn security_headers(State(tls): State<bool>, mut response: Response) -> Response {
    let h = response.headers_mut();
    // Under TLS, browsers keep to HTTPS for this host from then on.
    if tls {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// The CAS routes.
pub fn router(cas: Cas) -> Router {
    Router::new()
        .route("/login", get(auth::login_form).post(auth::login))
        .route(
            "/login/second-factor",
            get(auth::second_factor_form).post(auth::second_factor),
        )
        .route(
            "/account/password",
            get(account::password_form).post(account::change_password),
        )
        .route(
            "/account/two-factor",
            get(account::enrol_form).post(account::enrol),
        )
        .route("/logout", post(auth::logout))
        .route("/", get(dashboard::dashboard))
        .route(
            "/terminals",
            get(pages::terminals).post(pages::create_terminal),
        )
        .route("/terminals/new", get(pages::new_terminal))
        .route("/export/terminals", get(api_bulk::cas_export))
        .route(
            "/terminals/import",
            get(pages::import_form).post(pages::import),
        )
        .route("/terminals/{serial}", get(pages::terminal))
        .route("/terminals/{serial}/unpair", post(pages::unpair))
        .route("/terminals/{serial}/suspend", post(suspend::suspend))
        .route("/terminals/{serial}/resume", post(suspend::resume))
        .route("/terminals/{serial}/vpn/regenerate", post(vpn::regenerate))
        .route("/requests", get(requests::list))
        .route("/requests/bulk", get(bulk::list).post(bulk::decide))
        .route("/requests/{id}", get(requests::detail))
        .route("/requests/{id}/approve", post(requests::approve))
        .route("/requests/{id}/reject", post(requests::reject))
        .route("/requests/{id}/block", post(blocked::block))
        .route("/blocked-keys", get(blocked::list))
        .route(
            "/blocked-keys/{fingerprint}/unblock",
            post(blocked::unblock),
        )
        .route("/audit", get(admin::audit))
        .route("/vpn", get(vpn::overview))
        .route("/vendors", get(vendors::list).post(vendors::add))
        .route("/vendors/{name}/remove", post(vendors::remove))
        .route("/manifests", post(vendors::import))
        .route(
            "/operators",
            get(operators::operators).post(operators::create_operator),
        )
        .route("/operators/{name}", post(operators::change_operator))
        .route("/tokens", get(admin::tokens).post(admin::create_token))
        .route("/tokens/{id}/revoke", post(admin::revoke_token))
        .route("/static/cas.css", get(style))
        .nest("/api/v1", api::router())
        .fallback(not_found)
        .layer(axum::middleware::map_response_with_state(
            cas.secure,
            security_headers,
        ))
        .layer(axum::middleware::from_fn_with_state(
            cas.hosts.clone(),
            check_host,
        ))
        .with_state(cas)
}

/// The longest a CAS request may take, body upload included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Serves CAS until `shutdown` turns true: HTTP/1.1, over TLS when a
/// configuration is given, with a header timeout per connection.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    header_timeout: Duration,
    limiter: Arc<crate::conn::ConnectionLimiter>,
    shutdown: watch::Receiver<bool>,
) {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    crate::conn::accept_each(
        "cas",
        listener,
        limiter,
        shutdown,
        move |tcp, address, shutdown| {
            connection(
                tcp,
                address,
                router.clone(),
                acceptor.clone(),
                header_timeout,
                shutdown,
            )
        },
    )
    .await;
}

/// One CAS connection: TLS when configured, then HTTP/1.1 with every
/// request bounded in time.
async fn connection(
    tcp: TcpStream,
    address: SocketAddr,
    router: Router,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    header_timeout: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let service =
        hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
            let mut request = request.map(axum::body::Body::new);
            request.extensions_mut().insert(ClientAddr(address.ip()));
            let answer = router.clone().oneshot(request);
            // Bounds a slow request body (and anything else slow).
            async move {
                match tokio::time::timeout(REQUEST_TIMEOUT, answer).await {
                    Ok(answer) => answer,
                    Err(_) => Ok(crate::ApiError::new(
                        StatusCode::REQUEST_TIMEOUT,
                        ErrorCode::Timeout,
                        "the request took too long",
                    )
                    .closing()
                    .into_response()),
                }
            }
        });
    let builder = crate::conn::http1(header_timeout);
    match acceptor {
        Some(acceptor) => {
            let Ok(Ok(stream)) = tokio::time::timeout(header_timeout, acceptor.accept(tcp)).await
            else {
                tracing::debug!(service = "cas", %address, "TLS handshake failed");
                return;
            };
            tokio::select! {
                _ = builder.serve_connection(TokioIo::new(stream), service) => {}
                _ = shutdown.changed() => {}
            }
        }
        None => {
            tokio::select! {
                _ = builder.serve_connection(TokioIo::new(tcp), service) => {}
                _ = shutdown.changed() => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn host_names_lose_port_case_and_brackets() {
        assert_eq!(super::host_name("127.0.0.1:7780"), "127.0.0.1");
        assert_eq!(super::host_name("CAS.Example"), "cas.example");
        assert_eq!(super::host_name("[::1]:7780"), "::1");
        assert_eq!(super::host_name("evil.example:80"), "evil.example");
    }
}
