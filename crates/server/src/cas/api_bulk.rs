//! The CAS API for an operator of thousands of terminals: pending requests
//! filtered (serial prefix, model, age, flag), a selected set approved
//! (each by its own code, under one fresh TOTP) or rejected, and the
//! terminals exported as CSV or JSON. A bulk call decides each request as
//! the single call would, and answers one outcome per request. The export
//! is also CAS's download (`/export/terminals` for a signed-in operator).

use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use pairgate_pki::PairingCode;
use pairgate_proto::ErrorCode;
use pairgate_proto::bulk::{
    BulkApproveBody, BulkError, BulkOutcome, BulkRejectBody, BulkResults, ExportQuery, MAX_BULK,
    RequestQuery,
};
use pairgate_proto::cas::PairingRequestPage;
use pairgate_store::{PairingRequest, RequestFilter, StoreError, Terminal, TerminalState};

use super::Cas;
use super::api::{bearer, store};
use crate::error::ApiError;
use crate::http::{JsonBody, JsonQuery};

/// The bulk routes, merged into `/api/v1`.
pub fn router() -> Router<Cas> {
    Router::new()
        .route("/pairing-requests", get(list_requests))
        .route("/pairing-requests/bulk-approve", post(bulk_approve))
        .route("/pairing-requests/bulk-reject", post(bulk_reject))
        .route("/export/terminals", get(export))
}

/// `GET /pairing-requests` with its filters.
async fn list_requests(
    State(cas): State<Cas>,
    headers: HeaderMap,
    JsonQuery(q): JsonQuery<RequestQuery>,
) -> Response {
    tri!(bearer(&cas, &headers).await);
    let states = [
        "",
        "pending",
        "approved",
        "rejected",
        "expired",
        "superseded",
    ];
    if !states.contains(&q.state.as_str()) {
        return ApiError::bad_request(
            ErrorCode::BadQuery,
            format!(
                "unknown state {:?}: use pending, approved, rejected, expired or superseded",
                q.state
            ),
        )
        .into_response();
    }
    let now = crate::http::unix_millis(cas.clock.now());
    let age = q.older_than_secs.map(|s| {
        let ms = i64::try_from(Duration::from_secs(s).as_millis()).unwrap_or(i64::MAX);
        now.saturating_sub(ms)
    });
    let filter = RequestFilter {
        status: q.state.clone(),
        serial_prefix: q.serial_prefix.clone(),
        model: q.model.clone(),
        created_before: age,
        flagged: q.flagged,
    };
    let page = tri!(store(
        cas.store
            .filter_pairing_requests(&filter, q.offset.max(0), q.limit())
            .await
    ));
    Json(PairingRequestPage {
        pairing_requests: page.rows.iter().map(PairingRequest::view).collect(),
        total: page.total,
    })
    .into_response()
}

fn too_many(n: usize) -> Option<Response> {
    (n == 0 || n > MAX_BULK).then(|| {
        ApiError::bad_request(
            ErrorCode::Invalid,
            format!("a bulk call decides 1 to {MAX_BULK} requests, not {n}"),
        )
        .into_response()
    })
}

fn outcome(id: String, done: Result<&'static str, ApiError>) -> BulkOutcome {
    match done {
        Ok(status) => BulkOutcome {
            id,
            status: status.into(),
            error: None,
        },
        Err(e) => BulkOutcome {
            id,
            status: "refused".into(),
            error: Some(BulkError {
                code: e.code,
                message: e.message,
            }),
        },
    }
}

/// `POST /pairing-requests/bulk-approve`: one fresh TOTP, then each
/// request by its code (a wrong code counts against that request, as
/// in the single call).
async fn bulk_approve(
    State(cas): State<Cas>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<BulkApproveBody>,
) -> Response {
    let op = tri!(bearer(&cas, &headers).await);
    if let Some(r) = too_many(body.approvals.len()) {
        return r;
    }
    let factor = tri!(super::api_accounts::step_up(&cas, &op, &body.totp).await);
    let mut results = Vec::with_capacity(body.approvals.len());
    for a in body.approvals {
        let done = match a.code.parse::<PairingCode>() {
            Err(_) => Err(ApiError::bad_request(
                ErrorCode::BadCode,
                "a pairing code is 8 digits, NNNN-NNNN",
            )),
            Ok(code) => cas
                .store
                .approve_pairing(&a.id, &code, &factor, cas.clock.now())
                .await
                .map(|_| "approved")
                .map_err(ApiError::from),
        };
        results.push(outcome(a.id, done));
    }
    Json(BulkResults { results }).into_response()
}

/// `POST /pairing-requests/bulk-reject`.
async fn bulk_reject(
    State(cas): State<Cas>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<BulkRejectBody>,
) -> Response {
    let op = tri!(bearer(&cas, &headers).await);
    let by = tri!(store(op.changer()));
    if let Some(r) = too_many(body.ids.len()) {
        return r;
    }
    let mut results = Vec::with_capacity(body.ids.len());
    for id in body.ids {
        let done = cas
            .store
            .reject_pairing(&id, &by, cas.clock.now())
            .await
            .map(|_| "rejected")
            .map_err(ApiError::from);
        results.push(outcome(id, done));
    }
    Json(BulkResults { results }).into_response()
}

/// Every terminal matching `q` and `state`, by serial.
async fn all_terminals(cas: &Cas, q: &ExportQuery) -> Result<Vec<Terminal>, StoreError> {
    let state = match q.state.as_str() {
        "" => None,
        s => Some(TerminalState::parse(s)?),
    };
    let mut all = Vec::new();
    loop {
        let offset = i64::try_from(all.len()).unwrap_or(i64::MAX);
        let page = cas
            .store
            .search_terminals(&q.q, state, offset, 1000)
            .await?;
        let done = page.rows.len() < 1000;
        all.extend(page.rows);
        if done {
            return Ok(all);
        }
    }
}

/// One CSV cell: a leading `=`, `+`, `-` or `@` is quoted with `'` so a
/// spreadsheet does not run it as a formula.
fn cell(text: &str) -> String {
    if text.starts_with(['=', '+', '-', '@']) {
        format!("'{text}")
    } else {
        text.to_owned()
    }
}

fn csv(terminals: &[Terminal]) -> Result<Vec<u8>, csv::Error> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "serial",
        "name",
        "location",
        "contact_name",
        "contact_phone",
        "state",
        "paired_fingerprint",
        "paired_at",
        "last_seen_at",
        "firmware",
        "suspected_clone",
    ])?;
    for t in terminals {
        let v = t.view();
        let state = serde_json::to_value(v.state).ok();
        let time = |t: Option<pairgate_proto::Timestamp>| {
            t.map(|t| crate::http::rfc3339(t.0)).unwrap_or_default()
        };
        w.write_record([
            cell(&v.serial),
            cell(&v.name),
            cell(&v.location),
            cell(&v.contact_name),
            cell(&v.contact_phone),
            state
                .as_ref()
                .and_then(|s| s.as_str())
                .unwrap_or_default()
                .to_owned(),
            v.paired_fingerprint.map(|f| f.to_hex()).unwrap_or_default(),
            time(v.paired_at),
            time(v.last_seen_at),
            cell(v.firmware.as_deref().unwrap_or_default()),
            v.suspected_clone.to_string(),
        ])?;
    }
    w.into_inner().map_err(|e| csv::Error::from(e.into_error()))
}

/// `GET /export/terminals?format=csv|json`.
async fn export(
    State(cas): State<Cas>,
    headers: HeaderMap,
    JsonQuery(q): JsonQuery<ExportQuery>,
) -> Response {
    tri!(bearer(&cas, &headers).await);
    exported(&cas, &q).await
}

/// `GET /export/terminals` in CAS: the same download for a signed-in
/// operator.
pub(super) async fn cas_export(
    State(cas): State<Cas>,
    _who: super::auth::SignedIn,
    JsonQuery(q): JsonQuery<ExportQuery>,
) -> Response {
    exported(&cas, &q).await
}

/// The terminals `q` selects, as CSV or JSON.
async fn exported(cas: &Cas, q: &ExportQuery) -> Response {
    if !matches!(q.format.as_str(), "" | "csv" | "json") {
        return ApiError::bad_request(ErrorCode::BadQuery, "format is csv or json").into_response();
    }
    let terminals = tri!(store(all_terminals(cas, q).await));
    if q.format == "json" {
        let views: Vec<_> = terminals.iter().map(Terminal::view).collect();
        return Json(views).into_response();
    }
    match csv(&terminals) {
        Ok(bytes) => (
            StatusCode::OK,
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/csv; charset=utf-8"),
                ),
                (
                    header::CONTENT_DISPOSITION,
                    HeaderValue::from_static("attachment; filename=\"terminals.csv\""),
                ),
            ],
            bytes,
        )
            .into_response(),
        Err(e) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            format!("writing the CSV: {e}"),
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn formula_cells_are_defused() {
        assert_eq!(super::cell("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(super::cell("-1"), "'-1");
        assert_eq!(super::cell("Lobby"), "Lobby");
    }
}
