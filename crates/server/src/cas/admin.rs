//! CAS pages for oversight: the audit log (filterable, checked from the
//! newest signed checkpoint on every view, with the server's last
//! whole-log check) and API tokens
//! (made behind a fresh TOTP, shown once, stored hashed, acting with their
//! operator's role until they expire or are revoked).

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
        cas.store.audit_status(&cas.server_pin),
    ) {
        Ok(all) => all,
        Err(e) => return super::internal(&e),
    };
    let full = cas.audit_checked.get();
    page(
        "Audit log",
        Some(&who.viewer()),
        html! {
            @if let Some(seq) = verified.first_broken {
                p.flash.error id="chain-status" role="alert" {
                    "Audit log BROKEN at record " (seq) ": " (verified.reason.as_deref().unwrap_or("a record was edited, removed or reordered")) "."
                }
            } @else {
                p.flash.done id="chain-status" {
                    "Audit log intact: records " (verified.checked_from) " to " (verified.checked_from + verified.records - 1)
                    " checked against the server's signed checkpoint (signed through record " (verified.anchored_through) "; "
                    (verified.unanchored) " newer record(s) await the next checkpoint)."
                }
            }
            @match &full {
                Some((at, f)) if f.intact() => p.muted id="full-check" {
                    "Whole log checked " (when(Some(crate::http::unix_millis(*at)))) ": " (f.records) " records intact."
                },
                Some((at, f)) => p.flash.error id="full-check" role="alert" {
                    "Whole-log check " (when(Some(crate::http::unix_millis(*at)))) ": BROKEN at record " (f.first_broken.unwrap_or_default()) ": " (f.reason.as_deref().unwrap_or_default())
                },
                None => p.muted id="full-check" { "The whole-log check has not run yet." },
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

fn token_state(t: &pairgate_store::ApiToken, now: i64) -> &'static str {
    if t.revoked_at.is_some() {
        "revoked"
    } else if t.expires_at <= now {
        "expired"
    } else {
        "active"
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
    let now = crate::http::unix_millis(cas.clock.now());
    let body = html! {
        @if let Some(m) = message { (m) }
        p { "A token calls " code { "/api/v1" } " as its operator, with that operator's role. Send it as " code { "Authorization: Bearer …" } "." }
        div.table-wrap { table id="tokens" {
            tr { th { "Id" } th { "Operator" } th { "Name" } th { "Created" } th { "Last used" } th { "Expires" } th { "State" } th {} }
            @for t in &tokens {
                tr {
                    td.fp { (t.id) } td { (t.username) } td { (t.name) }
                    td { (when(Some(t.created_at))) } td { (when(t.last_used_at)) } td { (when(Some(t.expires_at))) }
                    td { (token_state(t, now)) }
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
            label { "Your current TOTP code" input name="totp" autocomplete="one-time-code" inputmode="numeric" required; }
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
    totp: zeroize::Zeroizing<String>,
}

/// `POST /tokens`: a token for the signed-in operator, behind a fresh
/// TOTP, shown once.
pub async fn create_token(
    State(cas): State<Cas>,
    headers: HeaderMap,
    Form(form): Form<TokenForm>,
) -> Response {
    let who = match cas.signed_in_form(&headers, &form.csrf).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let now = cas.clock.now();
    let factor = match cas.fresh_factor(&who, &form.totp).await {
        Ok(f) => f,
        Err(e) => {
            let Some((status, m)) = super::step_up_refusal(&e) else {
                return super::internal(&e);
            };
            let message = flash(Flash::Error, &format!("No token made: {m}"));
            return tokens_view(&cas, &who, Some(message), status).await;
        }
    };
    match cas.store.create_api_token(&factor, &form.name, now).await {
        Ok((record, token)) => {
            let message = html! {
                div.flash.done role="status" {
                    "Token created; it works until " (when(Some(record.expires_at))) ". Copy it now; it is not shown again: "
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
        .revoke_api_token(&id, owner.as_deref(), &who.actor(), cas.clock.now())
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
