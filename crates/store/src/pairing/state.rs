//! Where a pairing request stands, as stored and as the protocol shows
//! it to the terminal.

use crate::StoreError;

/// Where a pairing request stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PairingState {
    /// Opened with a commitment; the nonce is not revealed yet.
    AwaitingReveal,
    /// Revealed: both sides can show the code; waits for an operator.
    Pending,
    /// Approved: the terminal is paired with this fingerprint.
    Approved,
    /// Rejected by an operator.
    Rejected,
    /// Not decided in time.
    Expired,
    /// Another fingerprint asked to pair the same serial.
    Superseded,
    /// A wrong reveal or too many wrong codes.
    Failed,
}

impl PairingState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AwaitingReveal => "awaiting_reveal",
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Rejected => "rejected",
            Self::Expired => "expired",
            Self::Superseded => "superseded",
            Self::Failed => "failed",
        }
    }

    pub(super) fn parse(text: &str) -> Result<Self, StoreError> {
        Ok(match text {
            "awaiting_reveal" => Self::AwaitingReveal,
            "pending" => Self::Pending,
            "approved" => Self::Approved,
            "rejected" => Self::Rejected,
            "expired" => Self::Expired,
            "superseded" => Self::Superseded,
            "failed" => Self::Failed,
            other => return Err(StoreError::Corrupt(format!("pairing state {other:?}"))),
        })
    }

    /// Whether the request can still be revealed or decided.
    pub fn is_open(self) -> bool {
        matches!(self, Self::AwaitingReveal | Self::Pending)
    }

    /// The status the protocol shows the terminal.
    pub fn wire_status(self) -> &'static str {
        match self {
            Self::AwaitingReveal | Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Rejected | Self::Failed => "rejected",
            Self::Expired => "expired",
            Self::Superseded => "superseded",
        }
    }
}
