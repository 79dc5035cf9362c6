//! The pairgate wire protocol as types, one per body: what the gate and
//! the master accept and answer, the configuration a paired terminal
//! receives, the pairing status, the error body, and the CAS API's
//! objects (which `pairgate admin --json` prints too). The server builds its
//! answers from these types and the terminal agent reads them with the
//! same types, so a field is added in one place. `docs/protocol.md`
//! describes the protocol these types carry.
//!
//! Compatibility: readers ignore fields they do not know (a newer peer's
//! additions), so a field may be added to an answer without a version
//! change. The v1 server refuses request bodies with unknown fields
//! (`400 PG-BAD-JSON`), so a terminal sends a new request field only to a
//! server whose configuration announced it.
//!
//! Pure: serde and the PKI value types (and `time` to write times), no I/O.

#![forbid(unsafe_code)]

pub mod bulk;
pub mod cas;
pub mod cas_accounts;
pub mod config;
pub mod error;
pub mod gate;
pub mod manifests;
pub mod master;
pub mod server_keys;
mod timestamp;
pub mod vpn;

pub use config::TerminalConfig;
pub use error::{ErrorBody, ErrorCode, ErrorDetail};
pub use gate::{OpenAnswer, PairingHello, PairingStatus, RequestStatus, RevealRequest};
pub use master::{
    HeartbeatAnswer, HeartbeatRequest, Me, RekeyAnswer, RekeyChallenge, RekeyRequest,
};
pub use timestamp::Timestamp;
pub use vpn::{VpnEnrolment, VpnStatus, VpnType};
