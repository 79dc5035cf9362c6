//! CAS pages for oversight and accounts: the audit log (filterable, with
//! the hash chain verified on every view), operators (admins only: create
//! with a one-time password, enrolment at first login), and API tokens
//! (shown once, stored hashed, acting with their operator's role).

use std::time::SystemTime;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::html;
use pairgate_store::{Role, StoreError};

use super::Cas;
use super::auth::{CsrfForm, SignedIn};
use super::html::{Flash, csrf_field, flash, page, when};

/// Audit records per page.
const PAGE_SIZE: i64 = 100;

/// The audit filter.
#[derive(serde::Deserialize, Default)]
#[serde(default)]
pub struct AuditQuery {
    q: String,
    page: i64,
}

/// `GET /audit?q=&page=`.
pub async fn audit(
    State(cas): State<Cas>,
    who: SignedIn,
    Query(query): Query<AuditQuery>,
) -> Response {
    let page_no = query.page.max(0);
    let (records, verified) = match tokio::try_join!(
        cas.store
            .search_audit(&query.q, page_no.saturating_mul(PAGE_SIZE), PAGE_SIZE),
        cas.store.verify_audit(),
    ) {
        Ok(all) => all,
        Err(e) => return super::internal(&e),
    };
    page(
        "Audit log",
        Some(&who.viewer()),
        html! {
            @if verified.intact() {
                p.flash.done id="chain-status" { "Hash chain intact: " (verified.records) " records verified." }
            } @else {
                p.flash.error id="chain-status" role="alert" {
                    "Hash chain BROKEN at record " (verified.first_broken.unwrap_or_default()) ": a record was edited, removed or reordered."
                }
            }
            form.inline method="get" action="/audit" {
                label { "Filter" input name="q" value=(query.q) placeholder="actor, action or subject"; }
                button type="submit" { "Filter" }
            }
            p.muted { (records.total) " record(s)" }
            div.table-wrap { table id="audit" {
                tr { th { "#" } th { "When" } th { "Actor" } th { "Action" } th { "Subject" } th { "Detail" } }
                @for r in &records.rows {
                    tr { td { (r.seq) } td { (when(Some(r.at))) } td { (r.actor) } td { (r.action) } td { (r.subject) } td.fp { (r.detail) } }
                }
            } }
            div.pager {
                @if page_no > 0 { a href={ "/audit?page=" (page_no - 1) } { "← newer" } }
                @if (page_no + 1) * PAGE_SIZE < records.total { a href={ "/audit?page=" (page_no + 1) } { "older →" } }
            }
        },
    )
    .into_response()
}

fn admins_only(who: &SignedIn) -> Result<(), Response> {
    if who.session.operator.role == Role::Admin {
        Ok(())
    } else {
        Err(super::refused(
            who,
            StatusCode::FORBIDDEN,
            "Not allowed",
            "Only admins manage operators.",
        ))
    }
}

async fn operators_view(
    cas: &Cas,
    who: &SignedIn,
    message: Option<maud::Markup>,
    status: StatusCode,
) -> Response {
    let operators = match cas.store.operators().await {
        Ok(o) => o,
        Err(e) => return super::internal(&e),
    };
    let body = html! {
        @if let Some(m) = message { (m) }
        div.table-wrap { table id="operators" {
            tr { th { "Username" } th { "Role" } th { "2FA" } th { "Must change password" } th { "Created" } }
            @for o in &operators {
                tr {
                    td { (o.username) } td { (o.role.as_str()) }
                    td { (if o.totp_enabled { "on" } else { "not yet" }) }
                    td { (if o.must_change_password { "yes" } else { "no" }) }
                    td { (when(Some(o.created_at))) }
                }
            }
        } }
        h2 { "Add an operator" }
        form.stack method="post" action="/operators" {
            (csrf_field(&who.session.csrf))
            label { "Username" input name="username" required pattern="[a-z0-9][a-z0-9._-]{0,63}"; }
            label { "Role" select name="role" {
                option value="operator" { "operator — terminals, approvals, unpair" }
                option value="viewer" { "viewer — read only" }
                option value="admin" { "admin — also operators" }
            } }
            button type="submit" { "Create" }
        }
    };
    (status, page("Operators", Some(&who.viewer()), body)).into_response()
}

/// `GET /operators` (admins).
pub async fn operators(State(cas): State<Cas>, who: SignedIn) -> Response {
    if let Err(r) = admins_only(&who) {
        return r;
    }
    operators_view(&cas, &who, None, StatusCode::OK).await
}

/// The new-operator form.
#[derive(serde::Deserialize, Default)]
#[serde(default)]
pub struct OperatorForm {
    csrf: String,
    username: String,
    role: String,
}

/// `POST /operators` (admins): a one-time password, shown once.
pub async fn create_operator(
    State(cas): State<Cas>,
    headers: HeaderMap,
    Form(form): Form<OperatorForm>,
) -> Response {
    let who = match cas.signed_in_form(&headers, &form.csrf).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    if let Err(r) = admins_only(&who) {
        return r;
    }
    let created = match form.role.parse::<Role>() {
        Ok(role) => {
            cas.store
                .create_operator_enrolling(
                    form.username.trim(),
                    role,
                    &who.actor(),
                    SystemTime::now(),
                )
                .await
        }
        Err(e) => Err(e),
    };
    match created {
        Ok((op, password)) => {
            let message = html! {
                div.flash.done role="status" {
                    "Created " (op.username) ". One-time password (shown only now): "
                    span.code id="one-time-password" { (password.as_str()) }
                    ". At first login they choose a password and set up two-factor authentication."
                }
            };
            operators_view(&cas, &who, Some(message), StatusCode::OK).await
        }
        Err(e @ (StoreError::Invalid(_) | StoreError::AlreadyExists(_))) => {
            operators_view(
                &cas,
                &who,
                Some(flash(Flash::Error, &e.to_string())),
                StatusCode::BAD_REQUEST,
            )
            .await
        }
        Err(e) => super::internal(&e),
    }
}

async fn tokens_view(
    cas: &Cas,
    who: &SignedIn,
    message: Option<maud::Markup>,
    status: StatusCode,
) -> Response {
    let admin = who.session.operator.role == Role::Admin;
    let owner = (!admin).then_some(who.session.operator.username.as_str());
    let tokens = match cas.store.api_tokens(owner).await {
        Ok(t) => t,
        Err(e) => return super::internal(&e),
    };
    let body = html! {
        @if let Some(m) = message { (m) }
        p { "A token calls " code { "/api/v1" } " as its operator, with that operator's role. Send it as " code { "Authorization: Bearer …" } "." }
        div.table-wrap { table id="tokens" {
            tr { th { "Id" } th { "Operator" } th { "Name" } th { "Created" } th { "Last used" } th { "State" } th {} }
            @for t in &tokens {
                tr {
                    td.fp { (t.id) } td { (t.username) } td { (t.name) }
                    td { (when(Some(t.created_at))) } td { (when(t.last_used_at)) }
                    td { @if t.revoked_at.is_some() { "revoked" } @else { "active" } }
                    td { @if t.revoked_at.is_none() {
                        form.inline method="post" action={ "/tokens/" (t.id) "/revoke" } {
                            (csrf_field(&who.session.csrf))
                            button.danger type="submit" { "Revoke" }
                        }
                    } }
                }
            }
        } }
        h2 { "New token" }
        form.stack method="post" action="/tokens" {
            (csrf_field(&who.session.csrf))
            label { "What it is for" input name="name" required maxlength="64"; }
            button type="submit" { "Create token" }
        }
    };
    (status, page("API tokens", Some(&who.viewer()), body)).into_response()
}

/// `GET /tokens`: the operator's tokens (an admin sees all).
pub async fn tokens(State(cas): State<Cas>, who: SignedIn) -> Response {
    tokens_view(&cas, &who, None, StatusCode::OK).await
}

/// The new-token form.
#[derive(serde::Deserialize, Default)]
#[serde(default)]
pub struct TokenForm {
    csrf: String,
    name: String,
}

/// `POST /tokens`: a token for the signed-in operator, shown once.
pub async fn create_token(
    State(cas): State<Cas>,
    headers: HeaderMap,
    Form(form): Form<TokenForm>,
) -> Response {
    let who = match cas.signed_in_form(&headers, &form.csrf).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let username = who.session.operator.username.clone();
    match cas
        .store
        .create_api_token(&username, &form.name, &who.actor(), SystemTime::now())
        .await
    {
        Ok((_, token)) => {
            let message = html! {
                div.flash.done role="status" {
                    "Token created. Copy it now; it is not shown again: "
                    span.code id="new-token" { (token.as_str()) }
                }
            };
            tokens_view(&cas, &who, Some(message), StatusCode::OK).await
        }
        Err(e @ StoreError::Invalid(_)) => {
            tokens_view(
                &cas,
                &who,
                Some(flash(Flash::Error, &e.to_string())),
                StatusCode::BAD_REQUEST,
            )
            .await
        }
        Err(e) => super::internal(&e),
    }
}

/// `POST /tokens/{id}/revoke`: one's own token (an admin: any).
pub async fn revoke_token(
    State(cas): State<Cas>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let who = match cas.signed_in_form(&headers, &form.csrf).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let owner =
        (who.session.operator.role != Role::Admin).then(|| who.session.operator.username.clone());
    match cas
        .store
        .revoke_api_token(&id, owner.as_deref(), &who.actor(), SystemTime::now())
        .await
    {
        Ok(()) => {
            tokens_view(
                &cas,
                &who,
                Some(flash(Flash::Done, "Token revoked.")),
                StatusCode::OK,
            )
            .await
        }
        Err(e @ StoreError::NotFound(_)) => {
            tokens_view(
                &cas,
                &who,
                Some(flash(Flash::Error, &e.to_string())),
                StatusCode::NOT_FOUND,
            )
            .await
        }
        Err(e) => super::internal(&e),
    }
}
