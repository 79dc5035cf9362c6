//! Errors. [`ServerError`] stops the server from starting; [`ApiError`] is
//! one HTTP answer in the wire format every implementation codes against:
//! `{"error": {"code": "PG-…", "message": "…"}}` with a fitting status.
//! Database and internal failures are logged and answered with a generic
//! message, never with their details.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use pairgate_proto::ErrorCode;
use pairgate_store::StoreError;

/// The server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A setting is wrong.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The identity key store failed.
    #[error("server identity: {0}")]
    KeyStore(#[from] pairgate_keystore::KeyStoreError),
    /// The TLS configuration failed.
    #[error("server TLS: {0}")]
    Tls(#[from] pairgate_tls::TlsError),
    /// The identity could not be set up.
    #[error("server identity: {0}")]
    Identity(String),
    /// A service that was asked for did not start.
    #[error("{0} did not start")]
    NotStarted(&'static str),
    /// A listener could not be bound.
    #[error("listening on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// The VPN's files or keys.
    #[error("VPN: {0}")]
    Vpn(String),
}

/// One error answer.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code, `PG-…`.
    pub code: ErrorCode,
    /// For people.
    pub message: String,
    /// Ask the client to close the connection (refusals at the master).
    pub close: bool,
}

impl ApiError {
    /// An error with a status, code and message.
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            close: false,
        }
    }

    /// `400` with `code`.
    pub fn bad_request(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// The same answer, closing the connection after it.
    pub fn closing(mut self) -> Self {
        self.close = true;
        self
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        use StatusCode as S;
        let (status, code) = match &e {
            StoreError::Invalid(_) => (S::BAD_REQUEST, ErrorCode::Invalid),
            StoreError::NotFound(_) => (S::NOT_FOUND, ErrorCode::NotFound),
            StoreError::AlreadyExists(_) => (S::CONFLICT, ErrorCode::Exists),
            StoreError::Unauthorized(_) | StoreError::Replayed(_) => {
                (S::UNAUTHORIZED, ErrorCode::Unauthorized)
            }
            StoreError::Forbidden(_) => (S::FORBIDDEN, ErrorCode::Forbidden),
            StoreError::UnknownSerial(_) => (S::FORBIDDEN, ErrorCode::UnknownSerial),
            StoreError::Expired(_) => (S::GONE, ErrorCode::Expired),
            StoreError::Closed { .. } => (S::CONFLICT, ErrorCode::Closed),
            StoreError::NotRevealed(_) => (S::CONFLICT, ErrorCode::NotRevealed),
            StoreError::RevealMismatch(_) => (S::FORBIDDEN, ErrorCode::RevealMismatch),
            StoreError::WrongCode { .. } => (S::FORBIDDEN, ErrorCode::WrongCode),
            StoreError::Limit(_) => (S::TOO_MANY_REQUESTS, ErrorCode::Limit),
            StoreError::RateLimited(_) => (S::TOO_MANY_REQUESTS, ErrorCode::RateLimited),
            StoreError::Blocked(_) => (S::FORBIDDEN, ErrorCode::Blocked),
            StoreError::Conflict(_) => (S::CONFLICT, ErrorCode::Conflict),
            StoreError::InvalidUrl(_)
            | StoreError::Connect(_)
            | StoreError::Migrate(_)
            | StoreError::Io(_)
            | StoreError::Corrupt(_)
            | StoreError::Database(_) => {
                crate::metrics::STORE_ERRORS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::error!(error = %e, "store failure");
                return Self::new(
                    S::INTERNAL_SERVER_ERROR,
                    ErrorCode::Internal,
                    "internal error; the server log has details",
                );
            }
        };
        Self::new(status, code, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = pairgate_proto::ErrorBody::new(self.code, self.message);
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.close {
            response.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
        }
        response
    }
}

#[cfg(test)]
mod protocol_doc {
    use pairgate_proto::ErrorCode;

    /// Every `PG-…` code the server can answer (an [`ErrorCode`]: the
    /// server answers no other) is listed in docs/protocol.md, the
    /// contract terminal firmware codes against.
    #[test]
    fn every_error_code_is_documented() {
        let doc = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/protocol.md"
        ))
        .unwrap_or_default();
        assert!(doc.contains("4863-4365"), "docs/protocol.md is missing");
        for code in ErrorCode::ALL {
            assert!(
                doc.contains(&format!("`{code}`")),
                "{code} is not in docs/protocol.md"
            );
        }
        let codes = ErrorCode::ALL.len();
        assert!(codes > 30, "only {codes} codes found");
    }
}
