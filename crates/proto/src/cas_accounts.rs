//! The CAS JSON API's bodies (`/api/v1`) for operators, API tokens and
//! the audit log; `pairgate admin --json` prints the same objects.

use zeroize::Zeroizing;

use crate::Timestamp;

/// An operator, without secrets.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OperatorView {
    /// Login name.
    pub username: String,
    /// `admin`, `operator` or `viewer`.
    pub role: String,
    /// Whether TOTP is set up.
    pub totp_enabled: bool,
    /// Whether the one-time password must still be changed.
    pub must_change_password: bool,
    /// Whether the account is disabled.
    pub disabled: bool,
    /// When created.
    pub created_at: Timestamp,
    /// The step-up lock, in lists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_up: Option<StepUpView>,
}

/// An operator's step-up lock (wrong TOTP codes at approvals and
/// changes).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StepUpView {
    /// Wrong codes within the window.
    pub failures: i64,
    /// Whether step-ups are refused now.
    pub locked: bool,
    /// When the lock lifts by itself, if locked.
    pub until: Option<Timestamp>,
}

/// `GET /operators`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OperatorList {
    /// Every operator.
    pub operators: Vec<OperatorView>,
    /// When the locks were read.
    pub at: Timestamp,
}

/// A new operator's one-time credentials (`pairgate admin operator
/// create`): shown once.
#[derive(Clone, Debug, serde::Serialize)]
pub struct NewOperator {
    /// Login name.
    pub username: String,
    /// Role.
    pub role: String,
    /// The one-time password.
    pub password: Zeroizing<String>,
    /// `otpauth://` URI holding the TOTP seed.
    pub totp_uri: Zeroizing<String>,
}

/// `POST /operators/{name}/role`.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleBody {
    /// The new role.
    pub role: String,
    /// The admin's current TOTP code.
    pub totp: Zeroizing<String>,
}

/// `POST /tokens`.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenBody {
    /// What the token is for.
    pub name: String,
    /// The operator's current TOTP code.
    pub totp: Zeroizing<String>,
}

/// An API token as listed (never the token itself).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TokenView {
    /// Public id (the 16 hex digits after `pgt_`).
    pub id: String,
    /// The operator it acts for.
    pub username: String,
    /// What it is for.
    pub name: String,
    /// Created.
    pub created_at: Timestamp,
    /// Last used (to the minute).
    pub last_used_at: Option<Timestamp>,
    /// Revoked.
    pub revoked_at: Option<Timestamp>,
    /// Stops working.
    pub expires_at: Timestamp,
}

/// A token just made: the one answer that holds the token.
#[derive(Clone, Debug, serde::Serialize)]
pub struct NewToken {
    /// Public id.
    pub id: String,
    /// The operator it acts for.
    pub operator: String,
    /// What it is for.
    pub name: String,
    /// Created.
    pub created_at: Timestamp,
    /// Stops working.
    pub expires_at: Timestamp,
    /// The token (`pgt_…`), shown once.
    pub token: Zeroizing<String>,
}

/// One audit record.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuditRecordView {
    /// Position in the chain, from 1.
    pub seq: i64,
    /// When.
    pub at: Timestamp,
    /// Operator or service.
    pub actor: String,
    /// What happened, e.g. `pairing.approve`.
    pub action: String,
    /// What it happened to, e.g. a serial.
    pub subject: String,
    /// Details (the stored text when it is not JSON).
    pub detail: serde_json::Value,
    /// The record's hash (64 hex digits).
    pub hash: String,
}

/// What a check of the audit chain found.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChainStatus {
    /// Nothing checked was edited, removed or reordered.
    pub intact: bool,
    /// Records checked.
    pub records: i64,
    /// The first record that does not match.
    pub first_broken: Option<i64>,
    /// Why it does not match.
    pub reason: Option<String>,
    /// The first record checked (1 for a full check).
    pub checked_from: i64,
    /// The last record a valid signed checkpoint covers (0: none).
    pub anchored_through: i64,
    /// Records checked that no signed checkpoint covers yet.
    pub unanchored: i64,
}

/// The last full check of the chain, made in the background.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FullCheck {
    /// When it ran.
    pub at: Timestamp,
    /// Nothing was edited, removed or reordered.
    pub intact: bool,
    /// Records checked.
    pub records: i64,
    /// The first record that does not match.
    pub first_broken: Option<i64>,
    /// Why it does not match.
    pub reason: Option<String>,
}

/// `GET /audit`: one page, and the chain's state.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuditPage {
    /// The page's records, newest first.
    pub records: Vec<AuditRecordView>,
    /// Records matching in all.
    pub total: i64,
    /// The chain from the newest checkpoint on.
    pub chain: ChainStatus,
    /// The last full check, once one ran.
    pub full_check: Option<FullCheck>,
}
