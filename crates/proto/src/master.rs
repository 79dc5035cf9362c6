//! The master (TCP 7743), for paired terminals only: who am I, and the
//! heartbeat. (`/app/…` carries the operator's own traffic and is not
//! pairgate's protocol.)

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// `GET /v1/me`: the terminal's record. Borrowed where it can be, so the
/// master serialises it straight from its cached record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Me<'a> {
    /// Serial.
    #[serde(borrow)]
    pub serial: Cow<'a, str>,
    /// This terminal's certificate fingerprint (64 hex digits).
    pub fingerprint: String,
    /// Name an operator gave it.
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    /// Location.
    #[serde(borrow)]
    pub location: Cow<'a, str>,
    /// When paired (RFC 3339).
    pub paired_at: Option<String>,
    /// Last heartbeat or request this instance knows of (RFC 3339).
    pub last_seen_at: Option<String>,
    /// Firmware last reported.
    #[serde(borrow)]
    pub firmware: Option<Cow<'a, str>>,
    /// VPN profile text.
    #[serde(borrow)]
    pub vpn_profile: Cow<'a, str>,
    /// The server's clock (RFC 3339).
    pub server_time: String,
    /// The server keys to pin: the one this connection was served with,
    /// and the next one while a rotation is announced (as the master read
    /// them within `reconcile_secs`; `GET /v1/server-keys` reads the
    /// store). Empty from a server that does not say.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub server_pins: Vec<pairgate_pki::SpkiPin>,
    /// Every rotation statement, oldest first (docs/protocol.md, "Server
    /// key rotation").
    #[serde(default, skip_serializing_if = "<[_]>::is_empty")]
    pub rotations: Cow<'a, [crate::server_keys::Rotation]>,
}

/// `POST /v1/heartbeat`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatRequest {
    /// Firmware now running, if it changed or to report it.
    #[serde(default)]
    pub firmware: Option<String>,
    /// The terminal's heartbeat counter, one higher each time (kept in its
    /// state, so a copy restored beside the original repeats or goes
    /// back). Sent only to a server whose configuration says
    /// `heartbeat_counter`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counter: Option<u64>,
}

/// The answer to a heartbeat.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatAnswer {
    /// Always `ok`.
    pub status: String,
    /// The server's clock (RFC 3339).
    pub server_time: String,
}

/// `POST /v1/rekey/challenge` (empty body): a fresh challenge for the
/// terminal's next re-key, valid for a few minutes and usable once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RekeyChallenge {
    /// 32 random bytes, hex.
    pub challenge: String,
    /// When it stops being accepted (RFC 3339).
    pub expires_at: String,
    /// The server certifies re-key CSRs with its terminal CA (CA mode).
    #[serde(default)]
    pub issues_certificates: bool,
}

/// `POST /v1/rekey`, sent with the current key: the new certificate and
/// the new key's signature over the re-key statement (docs/protocol.md).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RekeyRequest {
    /// The challenge from `POST /v1/rekey/challenge` (hex).
    pub challenge: String,
    /// The new self-signed client certificate (PEM); or
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    /// a CSR (PEM) for the server's terminal CA to certify (when the
    /// challenge said `issues_certificates`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csr: Option<String>,
    /// The new key's signature over the statement (base64, standard
    /// alphabet with padding).
    pub proof: String,
}

/// The answer to a re-key: the new key is recorded as the terminal's
/// successor; the old one is refused from the new key's first use, or
/// from `old_key_refused_after`, whichever comes first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RekeyAnswer {
    /// The new certificate's fingerprint (64 hex digits).
    pub fingerprint: String,
    /// The fingerprint it replaces.
    pub previous_fingerprint: String,
    /// The latest time the old key is still served (RFC 3339).
    pub old_key_refused_after: String,
    /// CA mode: the issued certificate and the CA's (PEM, leaf first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_chain: Option<String>,
}
