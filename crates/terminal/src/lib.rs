//! The pairgate terminal agent, the part a firmware engineer embeds: the
//! first-boot identity (a key inside the key store and a self-signed client
//! certificate, or a CSR for a CA), pairing with the gate (the server key
//! is pinned at first contact and confirmed by the pairing code a person
//! reads out), calls to the master over mutual TLS with the pins, restore
//! points, and factory reset. It depends on no server, database or web code.

#![forbid(unsafe_code)]

mod agent;
mod flow;
pub mod gate;
mod rekey;
mod restore;
mod server_keys;
pub mod state;
pub mod vpn;
mod vpn_check;

pub use agent::{Agent, IdentityMode, Init, PairOptions, PairingDisplay, Status};
pub use rekey::{Rekeyed, renewal_due_at};
pub use restore::{KeyCopy, RestorePoint, restore};
pub use state::{PairedConfig, State};

/// A terminal operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TerminalError {
    /// The key store failed.
    #[error(transparent)]
    KeyStore(#[from] pairgate_keystore::KeyStoreError),
    /// TLS or HTTPS failed (including a server key that is not the pinned
    /// one, with both fingerprints).
    #[error(transparent)]
    Tls(#[from] pairgate_tls::TlsError),
    /// A certificate operation failed.
    #[error(transparent)]
    Certificate(#[from] pairgate_pki::CertificateError),
    /// The state directory could not be read or written.
    #[error("{0}")]
    Io(String),
    /// The terminal has no identity yet.
    #[error("the terminal has no identity yet: run `pairgate terminal init` first")]
    NotInitialised,
    /// The identity has no certificate (CSR mode, before import-cert).
    #[error("key {0} has no certificate yet: import the CA's certificate first")]
    NoCertificate(String),
    /// The terminal is not paired.
    #[error("the terminal is not paired: run `pairgate terminal pair` first")]
    NotPaired,
    /// A pin exists for another gate address.
    #[error(
        "the server key is pinned for gate {pinned}, not {asked}; pass --forget-pin to unpin it and trust the new address on first contact"
    )]
    OtherGate {
        /// The pinned gate.
        pinned: String,
        /// The gate asked for.
        asked: String,
    },
    /// A restore needs a fresh state directory.
    #[error(
        "the state directory {0} is in use (identity, pins or pairing); restore into a fresh one, or factory-reset this one first"
    )]
    NotFresh(String),
    /// A restore point that cannot be read or used.
    #[error("restore point: {0}")]
    RestorePoint(String),
    /// The gate refused or answered something unexpected.
    #[error("{0}")]
    Gate(String),
    /// The server presented a key no chain of rotation statements from a
    /// held pin announces (or a statement did not verify): refused, and
    /// the pins are kept.
    #[error("the server's key is not trusted: {0}")]
    ServerKey(#[from] pairgate_pki::rotation::RotationError),
    /// The master refused a request of the agent's own protocol (re-key).
    #[error("the master answered {status} {code}: {message}")]
    Master {
        /// HTTP status.
        status: u16,
        /// The error code, `PG-…`.
        code: String,
        /// For people.
        message: String,
    },
    /// The wait for approval ran out; the request is still open.
    #[error("pairing request {0} is still waiting for approval; run pair again to resume it")]
    StillWaiting(String),
    /// The pairing ended without approval.
    #[error("pairing request {id} was {status}{hint}")]
    PairingEnded {
        /// Request id.
        id: String,
        /// rejected, expired or superseded.
        status: String,
        /// What to do.
        hint: &'static str,
    },
}
