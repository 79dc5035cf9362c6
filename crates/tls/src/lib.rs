//! Hardened TLS for terminals and servers: the Rust counterpart of an
//! `SSLContext` on an HSM-backed provider. A terminal picks a key-store
//! alias and a trust policy and gets a TLS client for one connection or one
//! HTTPS client; nothing here is process-global.
//!
//! - [`TlsPolicy`]: TLS 1.2 and 1.3 (or exactly one of them), AEAD suites
//!   with ECDHE only, no SHA-1 signature schemes, bounded session lifetime,
//!   handshake timeout.
//! - [`client::TlsClient`]: client authentication with an alias's key
//!   (signing inside the key store), server trust by trust store, SPKI pins
//!   or both.
//! - [`server::TlsServer`]: identity from an alias or PEM files, client
//!   certificates required: any key proved in the handshake (the gate) or
//!   only what a verifier accepts (the master). The peer's fingerprint is
//!   available after the handshake.

#![forbid(unsafe_code)]

pub mod client;
mod error;
pub mod https;
mod key;
mod policy;
pub mod server;
mod server_session;
mod session;
mod verify;

pub use error::{PinMismatch, TlsError};
pub use key::{alias_certified_key, pem_certified_key};
pub use policy::{KeyExchange, TlsPolicy, VersionPolicy};
pub use server_session::{Lineage, TtlServerSessionStore};
pub use session::TtlClientSessionStore;
pub use verify::ClientCertAcceptor;

use pairgate_pki::{SpkiPin, TerminalFingerprint};

/// The fingerprint of the peer's end-entity certificate on an established
/// connection (for a resumed session, the one from the original handshake).
pub fn peer_fingerprint(conn: &rustls::CommonState) -> Option<TerminalFingerprint> {
    conn.peer_certificates()
        .and_then(|certs| certs.first())
        .map(|leaf| TerminalFingerprint::of_certificate(leaf))
}

/// The SPKI pin of the peer's end-entity certificate: what a terminal pins
/// after first contact with a server.
pub fn peer_spki_pin(conn: &rustls::CommonState) -> Option<SpkiPin> {
    conn.peer_certificates()
        .and_then(|certs| certs.first())
        .and_then(|leaf| SpkiPin::of_certificate(leaf).ok())
}
