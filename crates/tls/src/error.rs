//! Errors of building TLS configurations and connecting, worded for the
//! operator who reads them in a terminal's log.

use std::fmt;

use pairgate_pki::SpkiPin;

/// The server presented a key none of the pins name. Carried inside the
/// rustls error, so the failed handshake reports both fingerprints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinMismatch {
    /// The pins the client holds.
    pub expected: Vec<SpkiPin>,
    /// The pin of the key the server presented.
    pub presented: SpkiPin,
}

impl fmt::Display for PinMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let expected: Vec<String> = self.expected.iter().map(|p| p.to_hex()).collect();
        write!(
            f,
            "server key pin mismatch: expected {}, server presented {}",
            expected.join(" or "),
            self.presented
        )
    }
}

impl std::error::Error for PinMismatch {}

/// Building a TLS configuration or a connection failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The key store refused.
    #[error("key store: {0}")]
    KeyStore(#[from] pairgate_keystore::KeyStoreError),
    /// A certificate could not be used.
    #[error("certificate: {0}")]
    Certificate(#[from] pairgate_pki::CertificateError),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(String),
    /// The server trust names nothing to trust.
    #[error("the server trust is empty: give trust-store certificates or server pins")]
    EmptyTrust,
    /// A PEM key file could not be read.
    #[error("private key: {0}")]
    PrivateKey(String),
    /// Connecting or the handshake failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The I/O error (a TLS alert or verification failure inside).
        source: std::io::Error,
    },
    /// The server's key is not the pinned one.
    #[error("{0}")]
    PinMismatch(PinMismatch),
    /// The server's certificate is not trusted (wrong chain, name or
    /// algorithm); the message names the presented and expected
    /// fingerprints.
    #[error("{0}")]
    UntrustedServer(String),
    /// The handshake did not finish in time.
    #[error("TLS handshake with {0} timed out")]
    HandshakeTimeout(String),
}

impl TlsError {
    /// Wraps a handshake I/O error, lifting a pin mismatch out of the
    /// rustls error so that both fingerprints reach the message.
    pub(crate) fn handshake(context: String, source: std::io::Error) -> Self {
        let other = source
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .and_then(|e| match e {
                rustls::Error::InvalidCertificate(rustls::CertificateError::Other(
                    rustls::OtherError(other),
                )) => Some(other.clone()),
                _ => None,
            });
        if let Some(other) = other {
            if let Some(m) = other.downcast_ref::<PinMismatch>() {
                return Self::PinMismatch(m.clone());
            }
            if let Some(r) = other.downcast_ref::<crate::verify::Refused>() {
                return Self::UntrustedServer(format!("{context}: {}", r.0));
            }
        }
        Self::Io { context, source }
    }
}

impl From<rustls::Error> for TlsError {
    fn from(e: rustls::Error) -> Self {
        Self::Config(e.to_string())
    }
}
