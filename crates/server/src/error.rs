//! Errors. [`ServerError`] stops the server from starting; [`ApiError`] is
//! one HTTP answer in the wire format every implementation codes against:
//! `{"error": {"code": "PG-…", "message": "…"}}` with a fitting status.
//! Database and internal failures are logged and answered with a generic
//! message, never with their details.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
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
    /// A listener could not be bound.
    #[error("listening on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
}

/// One error answer.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code, `PG-…`.
    pub code: &'static str,
    /// For people.
    pub message: String,
    /// Ask the client to close the connection (refusals at the master).
    pub close: bool,
}

impl ApiError {
    /// An error with a status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            close: false,
        }
    }

    /// `400` with `code`.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
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
            StoreError::Invalid(_) => (S::BAD_REQUEST, "PG-INVALID"),
            StoreError::NotFound(_) => (S::NOT_FOUND, "PG-NOT-FOUND"),
            StoreError::AlreadyExists(_) => (S::CONFLICT, "PG-EXISTS"),
            StoreError::Unauthorized(_) | StoreError::Replayed(_) => {
                (S::UNAUTHORIZED, "PG-UNAUTHORIZED")
            }
            StoreError::Forbidden(_) => (S::FORBIDDEN, "PG-FORBIDDEN"),
            StoreError::UnknownSerial(_) => (S::FORBIDDEN, "PG-UNKNOWN-SERIAL"),
            StoreError::Expired(_) => (S::GONE, "PG-EXPIRED"),
            StoreError::Closed { .. } => (S::CONFLICT, "PG-CLOSED"),
            StoreError::NotRevealed(_) => (S::CONFLICT, "PG-NOT-REVEALED"),
            StoreError::RevealMismatch(_) => (S::FORBIDDEN, "PG-REVEAL-MISMATCH"),
            StoreError::WrongCode { .. } => (S::FORBIDDEN, "PG-WRONG-CODE"),
            StoreError::Limit(_) => (S::TOO_MANY_REQUESTS, "PG-LIMIT"),
            StoreError::RateLimited(_) => (S::TOO_MANY_REQUESTS, "PG-RATE-LIMITED"),
            StoreError::Blocked(_) => (S::FORBIDDEN, "PG-BLOCKED"),
            StoreError::Conflict(_) => (S::CONFLICT, "PG-CONFLICT"),
            StoreError::InvalidUrl(_)
            | StoreError::Connect(_)
            | StoreError::Migrate(_)
            | StoreError::Io(_)
            | StoreError::Corrupt(_)
            | StoreError::Database(_) => {
                tracing::error!(error = %e, "store failure");
                return Self::new(
                    S::INTERNAL_SERVER_ERROR,
                    "PG-INTERNAL",
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
    /// Every `PG-…` code the server can answer is listed in
    /// docs/protocol.md, the contract terminal firmware codes against.
    #[test]
    fn every_error_code_is_documented() {
        let doc = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/protocol.md"
        ))
        .unwrap_or_default();
        assert!(doc.contains("4863-4365"), "docs/protocol.md is missing");
        let mut sources = Vec::new();
        let mut dirs = vec![std::path::PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src"
        ))];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    sources.push(std::fs::read_to_string(&path).unwrap_or_default());
                }
            }
        }
        let mut codes = 0;
        for source in &sources {
            for piece in source.split("\"PG-").skip(1) {
                let code: String = piece
                    .chars()
                    .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '-')
                    .collect();
                if code.is_empty() || code.ends_with('-') {
                    continue;
                }
                codes += 1;
                assert!(
                    doc.contains(&format!("`PG-{code}`")),
                    "PG-{code} is not in docs/protocol.md"
                );
            }
        }
        assert!(codes > 30, "only {codes} codes found");
    }
}
