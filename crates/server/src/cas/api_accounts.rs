//! The CAS API for accounts: a new token for the calling operator, and
//! the admins' operator changes (disable, enable, role, two-factor reset,
//! clearing a step-up lock). Each needs a fresh TOTP of the token's
//! operator in the body (`"totp"`), counted against that operator's
//! step-up lock, so a stolen token alone changes nothing.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use pairgate_proto::ErrorCode;
use pairgate_proto::Timestamp;
use pairgate_proto::cas::TotpBody;
use pairgate_proto::cas_accounts::{OperatorList, RoleBody, TokenBody};
use pairgate_store::{AdminAction, Operator, Role, SecondFactor};

use super::Cas;
use super::api::{bearer, store};
use crate::error::ApiError;
use crate::http::{JsonBody, JsonPath, unix_millis};

/// The account routes, merged into `/api/v1`.
pub fn router() -> Router<Cas> {
    Router::new()
        .route("/tokens", post(create_token))
        .route("/operators", get(operators))
        .route("/operators/{name}/disable", post(disable))
        .route("/operators/{name}/enable", post(enable))
        .route("/operators/{name}/role", post(role))
        .route("/operators/{name}/reset-2fa", post(reset_totp))
        .route("/operators/{name}/clear-step-up-lock", post(clear_lock))
}

/// The fresh second factor of the token's operator.
pub(super) async fn step_up(
    cas: &Cas,
    op: &Operator,
    totp: &str,
) -> Result<SecondFactor, Response> {
    store(
        cas.store
            .verify_second_factor(&op.username, totp.trim(), cas.clock.now())
            .await,
    )
}

/// The token's operator as an admin who just passed a fresh TOTP.
pub(super) async fn admin(
    cas: &Cas,
    headers: &HeaderMap,
    totp: &str,
) -> Result<AdminAction, Response> {
    let op = bearer(cas, headers).await?;
    if op.role != Role::Admin {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            format!(
                "{} is not an admin; only admins change operators and vendor keys",
                op.username
            ),
        )
        .into_response());
    }
    let factor = step_up(cas, &op, totp).await?;
    store(factor.admin())
}

async fn create_token(
    State(cas): State<Cas>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<TokenBody>,
) -> Response {
    let op = tri!(bearer(&cas, &headers).await);
    let factor = tri!(step_up(&cas, &op, &body.totp).await);
    let (record, token) = tri!(store(
        cas.store
            .create_api_token(&factor, &body.name, cas.clock.now())
            .await
    ));
    (StatusCode::CREATED, Json(record.receipt(token.as_str()))).into_response()
}

async fn operators(State(cas): State<Cas>, headers: HeaderMap) -> Response {
    let op = tri!(bearer(&cas, &headers).await);
    if op.role != Role::Admin {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            "only admins list operators",
        )
        .into_response();
    }
    let now = cas.clock.now();
    let operators = tri!(store(cas.store.operators().await));
    let mut rows = Vec::with_capacity(operators.len());
    for o in &operators {
        let lock = tri!(store(cas.store.step_up_lock(&o.username, now).await));
        rows.push(o.view(Some(&lock)));
    }
    Json(OperatorList {
        operators: rows,
        at: Timestamp(unix_millis(now)),
    })
    .into_response()
}

/// The changed operator, as the answer.
async fn changed(cas: &Cas, username: &str) -> Response {
    match tri!(store(cas.store.operator(username).await)) {
        Some(o) => Json(o.view(None)).into_response(),
        None => ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            "no such operator",
        )
        .into_response(),
    }
}

async fn disable(
    State(cas): State<Cas>,
    headers: HeaderMap,
    JsonPath(name): JsonPath<String>,
    JsonBody(body): JsonBody<TotpBody>,
) -> Response {
    let by = tri!(admin(&cas, &headers, &body.totp).await);
    tri!(store(
        cas.store
            .set_operator_disabled(&name, true, &by, cas.clock.now())
            .await
    ));
    changed(&cas, &name).await
}

async fn enable(
    State(cas): State<Cas>,
    headers: HeaderMap,
    JsonPath(name): JsonPath<String>,
    JsonBody(body): JsonBody<TotpBody>,
) -> Response {
    let by = tri!(admin(&cas, &headers, &body.totp).await);
    tri!(store(
        cas.store
            .set_operator_disabled(&name, false, &by, cas.clock.now())
            .await
    ));
    changed(&cas, &name).await
}

async fn role(
    State(cas): State<Cas>,
    headers: HeaderMap,
    JsonPath(name): JsonPath<String>,
    JsonBody(body): JsonBody<RoleBody>,
) -> Response {
    let role: Role = tri!(store(body.role.parse()));
    let by = tri!(admin(&cas, &headers, &body.totp).await);
    tri!(store(
        cas.store
            .set_operator_role(&name, role, &by, cas.clock.now())
            .await
    ));
    changed(&cas, &name).await
}

async fn reset_totp(
    State(cas): State<Cas>,
    headers: HeaderMap,
    JsonPath(name): JsonPath<String>,
    JsonBody(body): JsonBody<TotpBody>,
) -> Response {
    let by = tri!(admin(&cas, &headers, &body.totp).await);
    tri!(store(
        cas.store
            .reset_operator_totp(&name, &by, cas.clock.now())
            .await
    ));
    changed(&cas, &name).await
}

async fn clear_lock(
    State(cas): State<Cas>,
    headers: HeaderMap,
    JsonPath(name): JsonPath<String>,
    JsonBody(body): JsonBody<TotpBody>,
) -> Response {
    let by = tri!(admin(&cas, &headers, &body.totp).await);
    tri!(store(
        cas.store
            .clear_step_up_lock(&name, &by, cas.clock.now())
            .await
    ));
    changed(&cas, &name).await
}
