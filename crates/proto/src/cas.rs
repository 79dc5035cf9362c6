//! The CAS JSON API's bodies (`/api/v1`) for terminals, pairing requests
//! and blocked keys. `pairgate admin --json` prints the same objects, so
//! a program reads a terminal or a request the same way from either.
//!
//! A pairing request's `state` is the protocol status (`pending`,
//! `approved`, `rejected`, `expired`, `superseded`), as the terminal sees
//! it; `code_shown` says whether the terminal can show its code yet.

use pairgate_pki::TerminalFingerprint;
use zeroize::Zeroizing;

use crate::{PairingStatus, Timestamp};

/// Where a terminal stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TerminalState {
    /// Registered; it may ask to pair.
    Registered,
    /// Paired with a key; the master serves it.
    Paired,
    /// Unpaired by an operator; it may ask to pair again.
    Unpaired,
    /// Paired, but the master refuses it until an operator resumes it
    /// (the pairing is kept).
    Suspended,
}

/// A terminal.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TerminalView {
    /// Serial.
    pub serial: String,
    /// Display name.
    pub name: String,
    /// Where it stands.
    pub location: String,
    /// The location contact who reads the pairing code.
    pub contact_name: String,
    /// Their phone.
    pub contact_phone: String,
    /// Where it stands in its life.
    pub state: TerminalState,
    /// The key it is paired with.
    pub paired_fingerprint: Option<TerminalFingerprint>,
    /// When it was paired.
    pub paired_at: Option<Timestamp>,
    /// Who approved the pairing.
    pub paired_by: Option<String>,
    /// Its last request at the master.
    pub last_seen_at: Option<Timestamp>,
    /// The address of that request.
    pub last_seen_address: Option<String>,
    /// The firmware it reported.
    pub firmware: Option<String>,
    /// The VPN profile it receives once paired.
    pub vpn_profile: String,
    /// When it was registered.
    pub created_at: Timestamp,
    /// When it was suspended.
    #[serde(default)]
    pub suspended_at: Option<Timestamp>,
    /// Who suspended it (an operator, or `rule:clone`).
    #[serde(default)]
    pub suspended_by: Option<String>,
    /// Its identity was seen in two places at once.
    #[serde(default)]
    pub suspected_clone: bool,
    /// What raised the suspicion (addresses, times, counters).
    #[serde(default)]
    pub clone_evidence: Option<serde_json::Value>,
    /// A new key the terminal has proven over the master and not used yet
    /// (served beside the current one until its first use).
    #[serde(default)]
    pub successor_fingerprint: Option<TerminalFingerprint>,
}

/// `GET /terminals`: one page.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TerminalPage {
    /// The page's terminals.
    pub terminals: Vec<TerminalView>,
    /// How many match in all.
    pub total: i64,
}

/// `POST /terminals`: registers a terminal so that it may ask to pair.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTerminal {
    /// Serial, unique: 1 to 64 of `A-Z a-z 0-9 . _ -`.
    pub serial: String,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// Where it stands.
    #[serde(default)]
    pub location: String,
    /// The location contact who reads the pairing code.
    #[serde(default)]
    pub contact_name: String,
    /// Their phone.
    #[serde(default)]
    pub contact_phone: String,
}

/// A pairing request.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PairingRequestView {
    /// Request id (32 hex digits).
    pub id: String,
    /// The serial it asks for.
    pub serial: String,
    /// The key that asked.
    pub fingerprint: TerminalFingerprint,
    /// The protocol status.
    pub state: PairingStatus,
    /// The address it came from.
    pub remote_address: String,
    /// Reported model.
    pub model: String,
    /// Reported firmware.
    pub firmware: String,
    /// Flagged for attention: it superseded another key's request, or
    /// the terminal is paired with another key.
    pub flagged: bool,
    /// The request it superseded.
    pub supersedes: Option<String>,
    /// Wrong codes entered so far.
    pub failed_attempts: i64,
    /// The terminal revealed its nonce, so it can show the code.
    pub code_shown: bool,
    /// Opened.
    pub created_at: Timestamp,
    /// Ends unless decided.
    pub expires_at: Timestamp,
    /// Decided.
    pub decided_at: Option<Timestamp>,
    /// Decided by (an operator, or a service).
    pub decided_by: Option<String>,
}

/// `GET /pairing-requests`: one page.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PairingRequestPage {
    /// The page's requests, newest first.
    pub pairing_requests: Vec<PairingRequestView>,
    /// How many match in all.
    pub total: i64,
}

/// Paging and filtering of a list (`?q=&state=&offset=&limit=`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ListQuery {
    /// Text to search for.
    pub q: String,
    /// Only this state (empty: all).
    pub state: String,
    /// Rows to skip.
    pub offset: i64,
    /// Rows to return (default 100, at most 1,000).
    pub limit: Option<i64>,
}

impl ListQuery {
    /// The page size asked for, within bounds.
    pub fn limit(&self) -> i64 {
        self.limit.unwrap_or(100).clamp(1, 1000)
    }
}

/// `POST /pairing-requests/{id}/approve`.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApproveBody {
    /// The code the location contact read out, `NNNN-NNNN`.
    pub code: String,
    /// The operator's current TOTP code.
    pub totp: Zeroizing<String>,
}

/// The answer to an approval.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Approved {
    /// Always `approved`.
    pub status: PairingStatus,
    /// The terminal, now paired.
    pub terminal: TerminalView,
}

/// A body that carries only a fresh TOTP code (unpair, operator changes).
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TotpBody {
    /// The operator's current TOTP code.
    pub totp: Zeroizing<String>,
}

/// A blocked terminal key.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BlockedKeyView {
    /// The key's certificate fingerprint.
    pub fingerprint: TerminalFingerprint,
    /// Why, as the operator wrote it.
    pub reason: String,
    /// Who blocked it.
    pub blocked_by: String,
    /// When.
    pub blocked_at: Timestamp,
}

/// One key of a terminal's lineage (`GET /terminals/{serial}/keys`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TerminalKeyView {
    /// Its certificate's fingerprint.
    pub fingerprint: TerminalFingerprint,
    /// The key it replaced; `null` for the key the terminal paired with.
    pub predecessor: Option<TerminalFingerprint>,
    /// When the server recorded it.
    pub recorded_at: Timestamp,
    /// When it was first used (for the paired key: when paired).
    pub activated_at: Option<Timestamp>,
    /// When the master stopped serving it.
    pub retired_at: Option<Timestamp>,
    /// Its certificate's end of validity.
    pub not_after: Timestamp,
}

/// `GET /terminals/{serial}/keys`: the keys since the terminal last
/// paired, oldest first (empty until its first re-key).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TerminalKeys {
    /// Oldest first.
    pub keys: Vec<TerminalKeyView>,
}

/// `GET /blocked-keys`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BlockedKeys {
    /// Newest first.
    pub blocked_keys: Vec<BlockedKeyView>,
}

/// `POST /blocked-keys`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockBody {
    /// The fingerprint, 64 lowercase hex digits.
    pub fingerprint: String,
    /// Why.
    pub reason: String,
}

/// The answer to `DELETE /blocked-keys/{fingerprint}`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Unblocked {
    /// The key.
    pub fingerprint: TerminalFingerprint,
    /// Always `false`.
    pub blocked: bool,
}
