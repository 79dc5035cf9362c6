//! An operator's own account in CAS: the password change (forced after a
//! one-time password, and at will) and TOTP enrolment with its recovery
//! codes, shown once. Both are steps of the session stage machine in
//! `auth`.

use axum::Form;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, PreEscaped, html};
use pairgate_store::{SessionStage, SessionStep};
use zeroize::Zeroizing;

use super::auth::{CodeForm, advance, at_stage, csrf_refused, same_secret, stage_path, too_many};
use super::html::{Flash, csrf_field, flash, page};
use super::{Cas, ClientAddr};

fn password_page(csrf: &str, forced: bool, error: Option<&str>) -> Markup {
    page(
        "Choose a new password",
        None,
        html! {
            @if forced { p { "You signed in with a one-time password. Choose your own before you continue." } }
            @if let Some(e) = error { (flash(Flash::Error, e)) }
            form.stack method="post" action="/account/password" {
                (csrf_field(csrf))
                label { "Current password" input name="current" type="password" autocomplete="current-password" required; }
                label { "New password (at least " (pairgate_store::MIN_PASSWORD_CHARS) " characters)"
                    input name="new" type="password" autocomplete="new-password" required minlength=(pairgate_store::MIN_PASSWORD_CHARS); }
                label { "New password again" input name="confirm" type="password" autocomplete="new-password" required; }
                button type="submit" { "Change password" }
            }
        },
    )
}

/// `GET /account/password`.
pub async fn password_form(State(cas): State<Cas>, headers: HeaderMap) -> Response {
    let session = match cas.session_of(&headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    match session {
        Some((s, _)) if matches!(s.stage, SessionStage::PasswordChange | SessionStage::Full) => {
            password_page(&s.csrf, s.stage == SessionStage::PasswordChange, None).into_response()
        }
        Some((s, _)) => Redirect::to(stage_path(s.stage)).into_response(),
        None => Redirect::to("/login").into_response(),
    }
}

/// The password form's fields.
#[derive(serde::Deserialize, Default)]
#[serde(default)]
pub struct PasswordForm {
    csrf: String,
    current: Zeroizing<String>,
    new: Zeroizing<String>,
    confirm: Zeroizing<String>,
}

/// `POST /account/password`: changes it; other sessions of the operator
/// end; the session moves to the next step.
pub async fn change_password(
    State(cas): State<Cas>,
    ClientAddr(address): ClientAddr,
    headers: HeaderMap,
    Form(form): Form<PasswordForm>,
) -> Response {
    let (session, token) = match cas.session_of(&headers).await {
        Ok(Some(s)) => s,
        Ok(None) => return Redirect::to("/login").into_response(),
        Err(r) => return r,
    };
    if !matches!(
        session.stage,
        SessionStage::PasswordChange | SessionStage::Full
    ) {
        return Redirect::to(stage_path(session.stage)).into_response();
    }
    if !same_secret(&session.csrf, &form.csrf) {
        return csrf_refused();
    }
    let forced = session.stage == SessionStage::PasswordChange;
    let refuse = |status: StatusCode, message: &str| {
        (status, password_page(&session.csrf, forced, Some(message))).into_response()
    };
    if *form.new != *form.confirm {
        return refuse(StatusCode::BAD_REQUEST, "The two new passwords differ.");
    }
    let username = session.operator.username.clone();
    if let Err(wait) = cas.logins.check(&username, address).await {
        return refuse(StatusCode::TOO_MANY_REQUESTS, &too_many(wait));
    }
    match cas
        .store
        .change_password(&username, &form.current, &form.new, cas.clock.now())
        .await
    {
        Ok(()) => {}
        Err(pairgate_store::StoreError::Unauthorized(_)) => {
            cas.logins.failed(&username, address).await;
            return refuse(StatusCode::UNAUTHORIZED, "The current password is wrong.");
        }
        Err(pairgate_store::StoreError::Invalid(m)) => return refuse(StatusCode::BAD_REQUEST, &m),
        Err(e) => return super::internal(&e),
    }
    if let Err(e) = cas.store.end_other_sessions(&username, &token).await {
        return super::internal(&e);
    }
    if username == "admin" {
        cas.forget_first_run_password();
    }
    let next = match cas.store.operator(&username).await {
        Ok(Some(op)) => session.stage.after(SessionStep::PasswordChanged, &op),
        Ok(None) => None,
        Err(e) => return super::internal(&e),
    };
    let Some(next) = next else {
        return Redirect::to("/login").into_response();
    };
    advance(
        &cas,
        &token,
        next,
        Redirect::to(stage_path(next)).into_response(),
    )
    .await
}

fn enrol_page(csrf: &str, uri: &str, error: Option<&str>) -> Markup {
    let qr = qrcode::QrCode::new(uri.as_bytes())
        .map(|code| {
            code.render::<qrcode::render::svg::Color<'_>>()
                .min_dimensions(200, 200)
                .build()
        })
        .unwrap_or_default();
    // The SVG starts with an XML declaration, which has no place in HTML.
    let svg = qr
        .find("<svg")
        .and_then(|i| qr.get(i..))
        .unwrap_or_default()
        .to_owned();
    let secret = uri
        .split("secret=")
        .nth(1)
        .and_then(|s| s.split('&').next())
        .unwrap_or_default();
    page(
        "Set up two-factor authentication",
        None,
        html! {
            p { "Scan this code with an authenticator app (RFC 6238 TOTP), then type the 6 digits it shows. Approving pairings and unpairing need it." }
            @if let Some(e) = error { (flash(Flash::Error, e)) }
            div.qr { (PreEscaped(svg)) }
            p.muted { "Cannot scan? Enter this key by hand: " span.code { (secret) } }
            form.stack method="post" action="/account/two-factor" {
                (csrf_field(csrf))
                label { "Code from the app" input name="code" autocomplete="one-time-code" inputmode="numeric" required autofocus; }
                button type="submit" { "Turn on two-factor authentication" }
            }
        },
    )
}

/// `GET /account/two-factor`: the enrolment QR code.
pub async fn enrol_form(State(cas): State<Cas>, headers: HeaderMap) -> Response {
    let (session, _) = match at_stage(&cas, &headers, SessionStage::Enrol).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    match cas
        .store
        .begin_totp_enrolment(&session.operator.username)
        .await
    {
        Ok(uri) => enrol_page(&session.csrf, &uri, None).into_response(),
        Err(e) => super::internal(&e),
    }
}

/// `POST /account/two-factor`: confirms with a first code and shows the
/// recovery codes, once.
pub async fn enrol(
    State(cas): State<Cas>,
    ClientAddr(address): ClientAddr,
    headers: HeaderMap,
    Form(form): Form<CodeForm>,
) -> Response {
    let (session, token) = match at_stage(&cas, &headers, SessionStage::Enrol).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if !same_secret(&session.csrf, &form.csrf) {
        return csrf_refused();
    }
    let username = session.operator.username.clone();
    let codes = match cas
        .store
        .confirm_totp_enrolment(&username, form.code.trim(), cas.clock.now())
        .await
    {
        Ok(codes) => codes,
        Err(pairgate_store::StoreError::Unauthorized(m)) => {
            cas.logins.failed(&username, address).await;
            return match cas.store.begin_totp_enrolment(&username).await {
                Ok(uri) => (
                    StatusCode::UNAUTHORIZED,
                    enrol_page(&session.csrf, &uri, Some(&m)),
                )
                    .into_response(),
                Err(e) => super::internal(&e),
            };
        }
        Err(e) => return super::internal(&e),
    };
    cas.logins.succeeded(&username, address).await;
    cas.audit_login(&username, "signed_in", address).await;
    let body = page(
        "Recovery codes",
        None,
        html! {
            (flash(Flash::Done, "Two-factor authentication is on."))
            p { "Keep these recovery codes somewhere safe. Each signs you in once if you lose your phone. They are shown only now." }
            ul.code id="recovery-codes" { @for c in &codes { li { (c.as_str()) } } }
            p { a #continue href="/" { "Continue to the dashboard" } }
        },
    );
    // Fail closed: only the login table may grant a full session.
    let Some(next) = session
        .stage
        .after(SessionStep::Enrolled, &session.operator)
    else {
        return Redirect::to("/login").into_response();
    };
    advance(&cas, &token, next, body.into_response()).await
}
