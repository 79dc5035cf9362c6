//! Working on many pairing requests and terminals at once in the CAS API:
//! filtering pending requests, approving (each by its code, under one
//! fresh TOTP) or rejecting a selected set, and exporting terminals.

use zeroize::Zeroizing;

use crate::ErrorCode;

/// `GET /pairing-requests?state=&serial_prefix=&model=&older_than_secs=&flagged=&offset=&limit=`.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RequestQuery {
    /// Accepted and ignored (the terminal list's text search).
    pub q: String,
    /// Only this status (empty: all).
    pub state: String,
    /// Serials starting with this.
    pub serial_prefix: String,
    /// Only this reported model.
    pub model: String,
    /// Only requests at least this old.
    pub older_than_secs: Option<u64>,
    /// Only flagged (`true`) or unflagged (`false`) requests.
    pub flagged: Option<bool>,
    /// Rows to skip.
    pub offset: i64,
    /// Rows to return (default 100, at most 1,000).
    pub limit: Option<i64>,
}

impl RequestQuery {
    /// The page size asked for, within bounds.
    pub fn limit(&self) -> i64 {
        self.limit.unwrap_or(100).clamp(1, 1000)
    }
}

/// The most requests one bulk call decides.
pub const MAX_BULK: usize = 500;

/// One request to approve, by the code its terminal shows.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkApproval {
    /// Request id.
    pub id: String,
    /// The code, NNNN-NNNN.
    pub code: String,
}

/// `POST /pairing-requests/bulk-approve`: each request by its own code,
/// under one fresh TOTP of the token's operator.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkApproveBody {
    /// The requests and their codes (at most [`MAX_BULK`]).
    pub approvals: Vec<BulkApproval>,
    /// The operator's current TOTP code.
    pub totp: Zeroizing<String>,
}

/// `POST /pairing-requests/bulk-reject`.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkRejectBody {
    /// Request ids (at most [`MAX_BULK`]).
    pub ids: Vec<String>,
}

/// What happened to one request of a bulk call.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BulkOutcome {
    /// Request id.
    pub id: String,
    /// `approved`, `rejected` or `refused`.
    pub status: String,
    /// Why it was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<BulkError>,
}

/// A refusal in a bulk answer: the code and message the single call
/// would have answered.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BulkError {
    /// The error code.
    pub code: ErrorCode,
    /// For people.
    pub message: String,
}

/// The answer of a bulk call: one outcome per request, in order.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BulkResults {
    /// Per request.
    pub results: Vec<BulkOutcome>,
}

/// `GET /export/terminals?format=csv|json&state=&q=`.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExportQuery {
    /// `csv` (default) or `json`.
    pub format: String,
    /// Only this state.
    pub state: String,
    /// Text in serial, name or location.
    pub q: String,
}
