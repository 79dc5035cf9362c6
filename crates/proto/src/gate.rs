//! The gate's pairing protocol (TCP 7741), steps 2 and 3: the terminal
//! asks to pair with a commitment to its nonce, reveals the nonce once it
//! has the server's, then polls the request until it is decided.
//!
//! Request bodies carry hex as text, so the gate can name exactly what is
//! malformed (`PG-BAD-COMMITMENT`, `PG-BAD-NONCE`); answers carry typed
//! values.

use pairgate_pki::Nonce;

use crate::TerminalConfig;

/// `POST /v1/pairing`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairingHello {
    /// The serial an operator registered.
    pub serial: String,
    /// Reported model.
    #[serde(default)]
    pub model: String,
    /// Reported firmware.
    #[serde(default)]
    pub firmware: String,
    /// hex(SHA-256(terminal_nonce)), 64 lowercase hex digits.
    pub commitment: String,
}

/// `POST /v1/pairing/{id}/reveal`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevealRequest {
    /// The terminal's nonce, 64 lowercase hex digits.
    pub terminal_nonce: String,
}

/// Where a pairing request stands, as the terminal sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PairingStatus {
    /// Waiting for an operator (or for the reveal).
    Pending,
    /// Approved: the answer carries the configuration.
    Approved,
    /// Rejected by an operator, ended by wrong codes, or unpaired since.
    Rejected,
    /// Nobody decided in time.
    Expired,
    /// Another key asked to pair the same serial.
    Superseded,
}

impl PairingStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Rejected => "rejected",
            Self::Expired => "expired",
            Self::Superseded => "superseded",
        }
    }
}

/// The gate's answer to [`PairingHello`]: `200` when this certificate is
/// already paired, else `202` with a request.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum OpenAnswer {
    /// Already paired: the configuration.
    Paired {
        /// The terminal's configuration.
        config: TerminalConfig,
    },
    /// A request is open: reveal the nonce next.
    Pending {
        /// The request's id.
        request_id: String,
        /// The gate's nonce for the code.
        server_nonce: Nonce,
        /// When it expires (RFC 3339).
        expires_at: String,
    },
}

/// A request's state: the answer to the reveal and to
/// `GET /v1/pairing/{id}[?wait=SECONDS]`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RequestStatus {
    /// Where it stands.
    pub status: PairingStatus,
    /// The request's id.
    pub request_id: String,
    /// When it expires (RFC 3339).
    pub expires_at: String,
    /// With `approved` (to the status poll): the configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<TerminalConfig>,
}

#[cfg(test)]
mod tests {
    use pairgate_pki::SpkiPin;

    use super::*;

    #[test]
    fn answers_have_their_v1_shape_and_ignore_new_fields() {
        let nonce = Nonce::from_bytes([7; 32]);
        let pending = OpenAnswer::Pending {
            request_id: "r1".into(),
            server_nonce: nonce,
            expires_at: "2026-12-01T00:00:00Z".into(),
        };
        let text = serde_json::to_string(&pending).unwrap();
        assert_eq!(
            text,
            format!(
                r#"{{"status":"pending","request_id":"r1","server_nonce":"{}","expires_at":"2026-12-01T00:00:00Z"}}"#,
                nonce.to_hex()
            )
        );
        let paired: OpenAnswer = serde_json::from_str(&format!(
            r#"{{"status":"paired","config":{{"master_url":"https://m","server_pins":["{}"],"a_later_field":1}},"another":true}}"#,
            "ab".repeat(32)
        ))
        .unwrap();
        let OpenAnswer::Paired { config } = paired else {
            panic!("{paired:?}")
        };
        assert_eq!(config.server_pins, [SpkiPin::from_bytes([0xab; 32])]);
        assert_eq!(config.vpn_profile, "");
        let status: RequestStatus =
            serde_json::from_str(r#"{"status":"superseded","request_id":"r1","expires_at":"x"}"#)
                .unwrap();
        assert_eq!(status.status, PairingStatus::Superseded);
        assert!(
            serde_json::to_string(&status)
                .unwrap()
                .find("config")
                .is_none()
        );
        // Requests are strict: a field the server does not know is refused.
        assert!(serde_json::from_str::<RevealRequest>(r#"{"terminal_nonce":"x","y":1}"#).is_err());
    }
}
