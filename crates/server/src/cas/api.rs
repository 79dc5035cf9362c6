//! The CAS JSON API under `/api/v1`, for programs: bearer API tokens
//! (`Authorization: Bearer pgt_…`), each acting with its operator's
//! current role; errors in the `{"error": {"code", "message"}}` format.
//! Approve and unpair need a fresh TOTP of the token's operator, as in the
//! web UI. Every action is the same store call as the UI and the CLI.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use pairgate_pki::PairingCode;
use pairgate_proto::ErrorCode;
use pairgate_proto::cas::{
    ApproveBody, Approved, BlockBody, BlockedKeys, ListQuery, TerminalPage, TotpBody, Unblocked,
};
use pairgate_proto::cas_accounts::{AuditPage, FullCheck};
use pairgate_proto::{PairingStatus, Timestamp};
use pairgate_store::{
    AuditRecord, BlockedKey, NewTerminal, Operator, Serial, Terminal, TerminalState,
};
use zeroize::Zeroizing;

use super::Cas;
use crate::error::ApiError;
use crate::http::{JsonBody, JsonPath, JsonQuery};

/// The API routes (nested under `/api/v1`).
pub fn router() -> Router<Cas> {
    Router::new()
        .route("/openapi.json", get(super::openapi::document))
        .route("/terminals", get(list_terminals).post(create_terminal))
        .route("/terminals/{serial}", get(terminal))
        .route("/terminals/{serial}/keys", get(terminal_keys))
        .route("/terminals/{serial}/unpair", post(unpair))
        .route("/terminals/{serial}/suspend", post(suspend))
        .route("/terminals/{serial}/resume", post(resume))
        .route("/terminals/{serial}/vpn", get(super::vpn::api_status))
        .route(
            "/terminals/{serial}/vpn/regenerate",
            post(super::vpn::api_regenerate),
        )
        .route("/pairing-requests/{id}", get(request))
        .route("/pairing-requests/{id}/approve", post(approve))
        .route("/pairing-requests/{id}/reject", post(reject))
        .route("/blocked-keys", get(blocked_keys).post(block_key))
        .route("/blocked-keys/{fingerprint}", delete(unblock_key))
        .route("/audit", get(audit))
        .merge(super::api_accounts::router())
        .merge(super::api_vendors::router())
        .merge(super::api_bulk::router())
        .fallback(crate::http::no_route)
        .method_not_allowed_fallback(crate::http::wrong_method)
}

/// The token's operator, or 401.
pub(super) async fn bearer(cas: &Cas, headers: &HeaderMap) -> Result<Operator, Response> {
    let unauthorized = |message: &str| {
        let mut r = ApiError::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, message)
            .into_response();
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"pairgate\""),
        );
        r
    };
    let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| Zeroizing::new(t.trim().to_owned()))
    else {
        return Err(unauthorized(
            "send an API token: Authorization: Bearer pgt_…",
        ));
    };
    match cas
        .store
        .authenticate_api_token(&token, cas.clock.now())
        .await
    {
        Ok(Some(op)) => Ok(op),
        Ok(None) => Err(unauthorized(
            "the API token is unknown, revoked, or its operator is disabled",
        )),
        Err(e) => Err(ApiError::from(e).into_response()),
    }
}

pub(super) fn may_change(op: &Operator) -> Result<(), Response> {
    if op.role.may_change_trust() {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            format!("{} has the viewer role: read only", op.username),
        )
        .into_response())
    }
}

fn serial(text: &str) -> Result<Serial, Response> {
    Serial::new(text).map_err(|e| ApiError::from(e).into_response())
}

pub(super) fn store<T>(r: Result<T, pairgate_store::StoreError>) -> Result<T, Response> {
    r.map_err(|e| ApiError::from(e).into_response())
}

async fn list_terminals(
    State(cas): State<Cas>,
    headers: HeaderMap,
    JsonQuery(q): JsonQuery<ListQuery>,
) -> Response {
    tri!(bearer(&cas, &headers).await);
    let state = match q.state.as_str() {
        "" => None,
        s => Some(tri!(store(TerminalState::parse(s)))),
    };
    let page = tri!(store(
        cas.store
            .search_terminals(&q.q, state, q.offset.max(0), q.limit())
            .await
    ));
    Json(TerminalPage {
        terminals: page.rows.iter().map(Terminal::view).collect(),
        total: page.total,
    })
    .into_response()
}

async fn create_terminal(
    State(cas): State<Cas>,
    headers: HeaderMap,
    body: Result<JsonBody<NewTerminal>, ApiError>,
) -> Response {
    let op = tri!(bearer(&cas, &headers).await);
    let by = tri!(store(op.changer()));
    let JsonBody(new) = tri!(body.map_err(IntoResponse::into_response));
    let t = tri!(store(
        cas.store
            .register_terminal(&new, &by, cas.clock.now())
            .await
    ));
    (StatusCode::CREATED, Json(t.view())).into_response()
}

async fn terminal(
    State(cas): State<Cas>,
    headers: HeaderMap,
    JsonPath(s): JsonPath<String>,
) -> Response {
    tri!(bearer(&cas, &headers).await);
    let s = tri!(serial(&s));
    Json(tri!(existing(&cas, &s).await).view()).into_response()
}

/// Terminal `s`, or `404`.
pub(super) async fn existing(cas: &Cas, s: &Serial) -> Result<Terminal, Response> {
    store(cas.store.terminal(s).await)?.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            format!("no terminal {}", s.as_str()),
        )
        .into_response()
    })
}

async fn terminal_keys(
    State(cas): State<Cas>,
    headers: HeaderMap,
    JsonPath(s): JsonPath<String>,
) -> Response {
    tri!(bearer(&cas, &headers).await);
    let s = tri!(serial(&s));
    tri!(existing(&cas, &s).await);
    let keys = tri!(store(cas.store.key_lineage(&s).await));
    Json(pairgate_proto::cas::TerminalKeys {
        keys: keys.iter().map(pairgate_store::TerminalKey::view).collect(),
    })
    .into_response()
}

/// The trust change of an API call on terminal `s`: the token's operator
/// (whose role may change trust) and a fresh TOTP of theirs.
pub(super) async fn stepped_up(
    cas: &Cas,
    op: &Operator,
    s: &str,
    totp: &str,
) -> Result<(Serial, pairgate_store::TrustChange), Response> {
    may_change(op)?;
    let s = serial(s)?;
    let factor = super::api_accounts::step_up(cas, op, totp).await?;
    Ok((s, store(factor.trust_change())?))
}

async fn unpair(
    State(cas): State<Cas>,
    headers: HeaderMap,
    JsonPath(s): JsonPath<String>,
    body: Result<JsonBody<TotpBody>, ApiError>,
) -> Response {
    let op = tri!(bearer(&cas, &headers).await);
    let JsonBody(body) = tri!(body.map_err(IntoResponse::into_response));
    let (s, by) = tri!(stepped_up(&cas, &op, &s, &body.totp).await);
    let t = tri!(store(cas.store.unpair(&s, &by, cas.clock.now()).await));
    Json(t.view()).into_response()
}

async fn suspend(
    State(cas): State<Cas>,
    headers: HeaderMap,
    JsonPath(s): JsonPath<String>,
) -> Response {
    let op = tri!(bearer(&cas, &headers).await);
    let by = tri!(store(op.changer()));
    let s = tri!(serial(&s));
    let t = tri!(store(
        cas.store.suspend_terminal(&s, &by, cas.clock.now()).await
    ));
    Json(t.view()).into_response()
}

async fn resume(
    State(cas): State<Cas>,
    headers: HeaderMap,
    JsonPath(s): JsonPath<String>,
    JsonBody(body): JsonBody<TotpBody>,
) -> Response {
    let op = tri!(bearer(&cas, &headers).await);
    let (s, by) = tri!(stepped_up(&cas, &op, &s, &body.totp).await);
    let t = tri!(store(
        cas.store.resume_terminal(&s, &by, cas.clock.now()).await
    ));
    Json(t.view()).into_response()
}

async fn request(
    State(cas): State<Cas>,
    headers: HeaderMap,
    JsonPath(id): JsonPath<String>,
) -> Response {
    tri!(bearer(&cas, &headers).await);
    match tri!(store(cas.store.pairing_request(&id).await)) {
        Some(r) => Json(r.view()).into_response(),
        None => ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            "no such pairing request",
        )
        .into_response(),
    }
}

async fn approve(
    State(cas): State<Cas>,
    headers: HeaderMap,
    JsonPath(id): JsonPath<String>,
    body: Result<JsonBody<ApproveBody>, ApiError>,
) -> Response {
    let op = tri!(bearer(&cas, &headers).await);
    tri!(may_change(&op));
    let JsonBody(body) = tri!(body.map_err(IntoResponse::into_response));
    let Ok(code) = body.code.parse::<PairingCode>() else {
        return ApiError::bad_request(ErrorCode::BadCode, "a pairing code is 8 digits, NNNN-NNNN")
            .into_response();
    };
    let now = cas.clock.now();
    let factor = tri!(super::api_accounts::step_up(&cas, &op, &body.totp).await);
    let t = tri!(store(
        cas.store.approve_pairing(&id, &code, &factor, now).await
    ));
    Json(Approved {
        status: PairingStatus::Approved,
        terminal: t.view(),
    })
    .into_response()
}

async fn reject(
    State(cas): State<Cas>,
    headers: HeaderMap,
    JsonPath(id): JsonPath<String>,
) -> Response {
    let op = tri!(bearer(&cas, &headers).await);
    let by = tri!(store(op.changer()));
    let r = tri!(store(
        cas.store.reject_pairing(&id, &by, cas.clock.now()).await
    ));
    Json(r.view()).into_response()
}

fn fingerprint(text: &str) -> Result<pairgate_pki::TerminalFingerprint, Response> {
    text.parse().map_err(|_| {
        ApiError::bad_request(
            ErrorCode::BadFingerprint,
            "a key fingerprint is 64 lowercase hex digits",
        )
        .into_response()
    })
}

async fn blocked_keys(State(cas): State<Cas>, headers: HeaderMap) -> Response {
    tri!(bearer(&cas, &headers).await);
    let keys = tri!(store(cas.store.blocked_keys().await));
    Json(BlockedKeys {
        blocked_keys: keys.iter().map(BlockedKey::view).collect(),
    })
    .into_response()
}

async fn block_key(
    State(cas): State<Cas>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<BlockBody>,
) -> Response {
    let op = tri!(bearer(&cas, &headers).await);
    tri!(may_change(&op));
    let fp = tri!(fingerprint(&body.fingerprint));
    let actor = pairgate_store::Actor::new(op.username.clone());
    let k = tri!(store(
        cas.store
            .block_key(&fp, body.reason.trim(), &actor, cas.clock.now())
            .await
    ));
    (StatusCode::CREATED, Json(k.view())).into_response()
}

async fn unblock_key(
    State(cas): State<Cas>,
    headers: HeaderMap,
    JsonPath(fp): JsonPath<String>,
) -> Response {
    let op = tri!(bearer(&cas, &headers).await);
    tri!(may_change(&op));
    let fp = tri!(fingerprint(&fp));
    let actor = pairgate_store::Actor::new(op.username.clone());
    tri!(store(
        cas.store.unblock_key(&fp, &actor, cas.clock.now()).await
    ));
    Json(Unblocked {
        fingerprint: fp,
        blocked: false,
    })
    .into_response()
}

async fn audit(
    State(cas): State<Cas>,
    headers: HeaderMap,
    JsonQuery(q): JsonQuery<ListQuery>,
) -> Response {
    tri!(bearer(&cas, &headers).await);
    let (page, verified) = tri!(store(tokio::try_join!(
        cas.store.search_audit(&q.q, q.offset.max(0), q.limit()),
        cas.store.audit_status(&cas.server_pin)
    )));
    let full_check = cas.audit_checked.get().map(|(at, f)| FullCheck {
        at: Timestamp(crate::http::unix_millis(at)),
        intact: f.intact(),
        records: f.records,
        first_broken: f.first_broken,
        reason: f.reason,
    });
    Json(AuditPage {
        records: page.rows.iter().map(AuditRecord::view).collect(),
        total: page.total,
        chain: verified.view(),
        full_check,
    })
    .into_response()
}
