//! CAS pages for operators (admins only): create one with a one-time
//! password (enrolment at first login), and change one: disable or
//! enable, change the role, reset two-factor authentication, clear a
//! step-up lock. Every change needs the admin's fresh TOTP and is one
//! audited store transaction; the store refuses to leave no enabled admin.

use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::html;
use pairgate_store::{Role, StoreError};
use zeroize::Zeroizing;

use super::Cas;
use super::auth::SignedIn;
use super::html::{Flash, csrf_field, flash, page, when};

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
    let now = cas.clock.now();
    let mut rows = Vec::with_capacity(operators.len());
    for o in operators {
        match cas.store.step_up_lock(&o.username, now).await {
            Ok(lock) => rows.push((o, lock)),
            Err(e) => return super::internal(&e),
        }
    }
    let operators = rows;
    let body = html! {
        @if let Some(m) = message { (m) }
        div.table-wrap { table id="operators" {
            tr { th { "Username" } th { "Role" } th { "2FA" } th { "Must change password" } th { "State" } th { "Created" } th { "Change" } }
            @for (o, lock) in &operators {
                tr id={ "operator-" (o.username) } {
                    td { (o.username) } td { (o.role.as_str()) }
                    td { (if o.totp_enabled { "on" } else { "not yet" }) }
                    td { (if o.must_change_password { "yes" } else { "no" }) }
                    td {
                        (if o.disabled { "disabled" } else { "enabled" })
                        @if lock.locked { ", step-ups locked until " (when(lock.until)) }
                    }
                    td { (when(Some(o.created_at))) }
                    td {
                        form.inline method="post" action={ "/operators/" (o.username) } {
                            (csrf_field(&who.session.csrf))
                            select name="action" {
                                @if o.disabled { option value="enable" { "enable" } } @else { option value="disable" { "disable" } }
                                @for r in [Role::Admin, Role::Operator, Role::Viewer] {
                                    @if r != o.role { option value={ "role:" (r.as_str()) } { "make " (r.as_str()) } }
                                }
                                option value="reset-2fa" { "reset two-factor" }
                                option value="clear-lock" { "clear step-up lock" }
                            }
                            input name="totp" placeholder="your TOTP" autocomplete="one-time-code" inputmode="numeric" required size="8";
                            button type="submit" { "Apply" }
                        }
                    }
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
                    cas.clock.now(),
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

/// An operator change: `disable`, `enable`, `role:NAME`, `reset-2fa`
/// or `clear-lock`, with the admin's TOTP.
#[derive(serde::Deserialize, Default)]
#[serde(default)]
pub struct ChangeForm {
    csrf: String,
    action: String,
    totp: Zeroizing<String>,
}

/// `POST /operators/{name}` (admins, fresh TOTP): one change, audited.
pub async fn change_operator(
    State(cas): State<Cas>,
    headers: HeaderMap,
    Path(username): Path<String>,
    Form(form): Form<ChangeForm>,
) -> Response {
    let who = match cas.signed_in_form(&headers, &form.csrf).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    if let Err(r) = admins_only(&who) {
        return r;
    }
    let now = cas.clock.now();
    let refused = |status: StatusCode, message: String| {
        let cas = cas.clone();
        let who = &who;
        async move { operators_view(&cas, who, Some(flash(Flash::Error, &message)), status).await }
    };
    let factor = match cas.fresh_factor(&who, &form.totp).await {
        Ok(f) => f,
        Err(e) => {
            let Some((status, m)) = super::step_up_refusal(&e) else {
                return super::internal(&e);
            };
            return refused(status, format!("Nothing changed: {m}")).await;
        }
    };
    let by = match factor.admin() {
        Ok(by) => by,
        Err(e) => return refused(StatusCode::FORBIDDEN, e.to_string()).await,
    };
    let store = &cas.store;
    let done = match form.action.as_str() {
        "disable" => store
            .set_operator_disabled(&username, true, &by, now)
            .await
            .map(|()| format!("{username} is disabled; their sessions ended and their tokens are revoked.")),
        "enable" => store
            .set_operator_disabled(&username, false, &by, now)
            .await
            .map(|()| format!("{username} is enabled.")),
        "reset-2fa" => store
            .reset_operator_totp(&username, &by, now)
            .await
            .map(|()| format!("{username}'s two-factor authentication is reset; they set it up again at their next login.")),
        "clear-lock" => store
            .clear_step_up_lock(&username, &by, now)
            .await
            .map(|()| format!("{username}'s step-up lock is cleared.")),
        other => match other.strip_prefix("role:").map(str::parse::<Role>) {
            Some(Ok(role)) => store
                .set_operator_role(&username, role, &by, now)
                .await
                .map(|()| format!("{username} now has the {} role.", role.as_str())),
            _ => Err(StoreError::Invalid(format!("unknown change {other:?}"))),
        },
    };
    match done {
        Ok(message) => {
            operators_view(
                &cas,
                &who,
                Some(flash(Flash::Done, &message)),
                StatusCode::OK,
            )
            .await
        }
        Err(e @ (StoreError::Invalid(_) | StoreError::Conflict(_))) => {
            refused(StatusCode::BAD_REQUEST, e.to_string()).await
        }
        Err(e @ StoreError::NotFound(_)) => refused(StatusCode::NOT_FOUND, e.to_string()).await,
        Err(e) => super::internal(&e),
    }
}
