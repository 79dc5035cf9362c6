//! Who is signed in to CAS, and getting there: session cookies (HttpOnly,
//! SameSite=Strict, Secure and `__Host-` under TLS), CSRF tokens checked on
//! every form, the login with its rate limits, the second-factor step and
//! logout (the password change and TOTP enrolment are in `account`). A
//! [`SignedIn`] exists only for a live session that passed every step.

use std::net::IpAddr;

use axum::Form;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use pairgate_store::{Actor, Session, SessionStage, SessionStep, StoreError};
use zeroize::Zeroizing;

use super::html::{Flash, Viewer, csrf_field, flash, page};
use super::{Cas, ClientAddr};

/// A live, fully signed-in session.
pub struct SignedIn {
    /// The session, with its operator as stored now.
    pub session: Session,
}

impl SignedIn {
    /// For the page frame.
    pub fn viewer(&self) -> Viewer<'_> {
        Viewer {
            operator: &self.session.operator,
            csrf: &self.session.csrf,
        }
    }

    /// The audit actor.
    pub fn actor(&self) -> Actor {
        Actor::new(self.session.operator.username.clone())
    }
}

fn cookie_value(headers: &HeaderMap, name: &str) -> Option<Zeroizing<String>> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| Zeroizing::new(v.to_owned()))
}

impl Cas {
    pub(super) fn session_cookie(&self) -> &'static str {
        if self.secure {
            "__Host-pg_session"
        } else {
            "pg_session"
        }
    }

    fn login_cookie(&self) -> &'static str {
        if self.secure {
            "__Host-pg_login"
        } else {
            "pg_login"
        }
    }

    /// A `Set-Cookie` value; an empty value deletes the cookie.
    fn cookie(&self, name: &str, value: &str) -> HeaderValue {
        let mut text = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict");
        if value.is_empty() {
            text.push_str("; Max-Age=0");
        }
        if self.secure {
            text.push_str("; Secure");
        }
        HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("invalid=1"))
    }

    /// The session behind the request's cookie, at any stage; a store
    /// failure is a 500, never "signed out".
    pub(super) async fn session_of(
        &self,
        headers: &HeaderMap,
    ) -> Result<Option<(Session, Zeroizing<String>)>, Response> {
        let Some(token) = cookie_value(headers, self.session_cookie()) else {
            return Ok(None);
        };
        match self
            .store
            .session(&token, self.limits, self.clock.now())
            .await
        {
            Ok(session) => Ok(session.map(|s| (s, token))),
            Err(e) => Err(super::internal(&e)),
        }
    }

    /// The signed-in operator, or the answer that sends the browser where
    /// it has to go (login, or the step its session is at).
    pub async fn signed_in(&self, headers: &HeaderMap) -> Result<SignedIn, Response> {
        match self.session_of(headers).await? {
            Some((session, _)) if session.stage == SessionStage::Full => Ok(SignedIn { session }),
            Some((session, _)) => Err(Redirect::to(stage_path(session.stage)).into_response()),
            None => Err(Redirect::to("/login").into_response()),
        }
    }

    /// A fresh second factor of the signed-in operator, from the code a
    /// form carries (counted against their step-up lock).
    pub(crate) async fn fresh_factor(
        &self,
        who: &SignedIn,
        totp: &str,
    ) -> Result<pairgate_store::SecondFactor, StoreError> {
        self.store
            .verify_second_factor(
                &who.session.operator.username,
                totp.trim(),
                self.clock.now(),
            )
            .await
    }

    /// As [`Self::signed_in`], for a form post: the CSRF token must match.
    pub async fn signed_in_form(
        &self,
        headers: &HeaderMap,
        csrf: &str,
    ) -> Result<SignedIn, Response> {
        let who = self.signed_in(headers).await?;
        if !same_secret(&who.session.csrf, csrf) {
            return Err(csrf_refused());
        }
        Ok(who)
    }
}

impl axum::extract::FromRequestParts<Cas> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        cas: &Cas,
    ) -> Result<Self, Response> {
        cas.signed_in(&parts.headers).await
    }
}

pub(super) fn same_secret(a: &str, b: &str) -> bool {
    !b.is_empty()
        && aws_lc_rs::constant_time::verify_slices_are_equal(a.as_bytes(), b.as_bytes()).is_ok()
}

/// 403 for a missing or wrong CSRF token.
pub fn csrf_refused() -> Response {
    let body = page(
        "Refused",
        None,
        html! {
            (flash(Flash::Error, "The form's security token is missing or wrong (CSRF). Nothing was changed. Go back, reload the page and try again."))
        },
    );
    (StatusCode::FORBIDDEN, body).into_response()
}

pub(super) fn stage_path(stage: SessionStage) -> &'static str {
    match stage {
        SessionStage::PasswordChange => "/account/password",
        SessionStage::Enrol => "/account/two-factor",
        SessionStage::Totp => "/login/second-factor",
        SessionStage::Full => "/",
    }
}

pub(super) fn with_cookie(
    cas: &Cas,
    name: &str,
    value: &str,
    response: impl IntoResponse,
) -> Response {
    let mut response = response.into_response();
    response
        .headers_mut()
        .append(header::SET_COOKIE, cas.cookie(name, value));
    response
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    let _ = aws_lc_rs::rand::fill(&mut bytes);
    hex::encode(bytes)
}

fn login_page(csrf: &str, error: Option<&str>, username: &str) -> Markup {
    page(
        "Sign in",
        None,
        html! {
            @if let Some(e) = error { (flash(Flash::Error, e)) }
            form.stack method="post" action="/login" {
                (csrf_field(csrf))
                label { "Username" input name="username" autocomplete="username" required value=(username); }
                label { "Password" input name="password" type="password" autocomplete="current-password" required; }
                button type="submit" { "Sign in" }
            }
        },
    )
}

/// `GET /login`: the form, with a fresh login CSRF cookie.
pub async fn login_form(State(cas): State<Cas>, headers: HeaderMap) -> Response {
    match cas.session_of(&headers).await {
        Ok(Some((session, _))) => return Redirect::to(stage_path(session.stage)).into_response(),
        Ok(None) => {}
        Err(r) => return r,
    }
    let csrf = random_token();
    with_cookie(&cas, cas.login_cookie(), &csrf, login_page(&csrf, None, ""))
}

/// The login form's fields.
#[derive(serde::Deserialize, Default)]
#[serde(default)]
pub struct LoginForm {
    csrf: String,
    username: String,
    password: Zeroizing<String>,
}

pub(super) fn too_many(wait: std::time::Duration) -> String {
    format!(
        "Too many failed attempts. Try again in {} minute(s).",
        wait.as_secs().div_ceil(60).max(1)
    )
}

/// `POST /login`: the password step.
pub async fn login(
    State(cas): State<Cas>,
    ClientAddr(address): ClientAddr,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let expected = cookie_value(&headers, cas.login_cookie());
    if !expected.is_some_and(|c| same_secret(&c, &form.csrf)) {
        return csrf_refused();
    }
    let username = form.username.trim().to_lowercase();
    let again = |status: StatusCode, message: &str| {
        let csrf = random_token();
        with_cookie(
            &cas,
            cas.login_cookie(),
            &csrf,
            (status, login_page(&csrf, Some(message), &username)),
        )
    };
    if let Err(wait) = cas.logins.check(&username, address).await {
        return again(StatusCode::TOO_MANY_REQUESTS, &too_many(wait));
    }
    let operator = match cas.store.verify_password(&username, &form.password).await {
        Ok(Some(op)) => op,
        Ok(None) => {
            cas.logins.failed(&username, address).await;
            // Audited off the answer's path: only known accounts leave a
            // record, and waiting for that write would tell them apart.
            let (audit, name) = (cas.clone(), username.clone());
            tokio::spawn(async move {
                audit.audit_login(&name, "password_failed", address).await;
            });
            return again(StatusCode::UNAUTHORIZED, "Wrong username or password.");
        }
        Err(e) => return super::internal(&e),
    };
    let stage = SessionStage::next_for(&operator);
    let token = match cas
        .store
        .create_session(&operator, stage, &address.to_string(), cas.clock.now())
        .await
    {
        Ok(t) => t,
        Err(e) => return super::internal(&e),
    };
    let response = with_cookie(
        &cas,
        cas.session_cookie(),
        &token,
        Redirect::to(stage_path(stage)),
    );
    with_cookie(&cas, cas.login_cookie(), "", response)
}

/// The session at `stage`, or where to go instead.
pub(super) async fn at_stage(
    cas: &Cas,
    headers: &HeaderMap,
    stage: SessionStage,
) -> Result<(Session, Zeroizing<String>), Response> {
    match cas.session_of(headers).await? {
        Some((s, token)) if s.stage == stage => Ok((s, token)),
        Some((s, _)) => Err(Redirect::to(stage_path(s.stage)).into_response()),
        None => Err(Redirect::to("/login").into_response()),
    }
}

/// Moves the session on (new secret, new cookie) and redirects there.
pub(super) async fn advance(
    cas: &Cas,
    token: &str,
    stage: SessionStage,
    then: Response,
) -> Response {
    match cas.store.advance_session(token, stage).await {
        Ok(fresh) => with_cookie(cas, cas.session_cookie(), &fresh, then),
        Err(e) => super::internal(&e),
    }
}

fn second_factor_page(csrf: &str, error: Option<&str>) -> Markup {
    page(
        "Second factor",
        None,
        html! {
            @if let Some(e) = error { (flash(Flash::Error, e)) }
            form.stack method="post" action="/login/second-factor" {
                (csrf_field(csrf))
                label { "Code from your authenticator app (or a recovery code)"
                    input name="code" autocomplete="one-time-code" inputmode="numeric" required autofocus; }
                button type="submit" { "Continue" }
            }
        },
    )
}

/// `GET /login/second-factor`.
pub async fn second_factor_form(State(cas): State<Cas>, headers: HeaderMap) -> Response {
    match at_stage(&cas, &headers, SessionStage::Totp).await {
        Ok((s, _)) => second_factor_page(&s.csrf, None).into_response(),
        Err(r) => r,
    }
}

/// A code form's fields.
#[derive(serde::Deserialize, Default)]
#[serde(default)]
pub struct CodeForm {
    pub(super) csrf: String,
    pub(super) code: Zeroizing<String>,
}

/// `POST /login/second-factor`: a TOTP code (replays refused) or a
/// recovery code.
pub async fn second_factor(
    State(cas): State<Cas>,
    ClientAddr(address): ClientAddr,
    headers: HeaderMap,
    Form(form): Form<CodeForm>,
) -> Response {
    let (session, token) = match at_stage(&cas, &headers, SessionStage::Totp).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if !same_secret(&session.csrf, &form.csrf) {
        return csrf_refused();
    }
    let username = session.operator.username.clone();
    if let Err(wait) = cas.logins.check(&username, address).await {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            second_factor_page(&session.csrf, Some(&too_many(wait))),
        )
            .into_response();
    }
    let code = form.code.trim();
    let now = cas.clock.now();
    let passed = if code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()) {
        cas.store
            .verify_second_factor(&username, code, now)
            .await
            .map(|_| ())
    } else {
        cas.store
            .use_recovery_code(&username, code, now)
            .await
            .map(|_| ())
    };
    match passed {
        Ok(()) => {
            cas.logins.succeeded(&username, address).await;
            cas.audit_login(&username, "signed_in", address).await;
            let Some(next) = session
                .stage
                .after(SessionStep::SecondFactorPassed, &session.operator)
            else {
                return Redirect::to("/login").into_response();
            };
            advance(&cas, &token, next, Redirect::to(stage_path(next)).into_response()).await
        }
        Err(e @ (StoreError::Unauthorized(_) | StoreError::Replayed(_))) => {
            cas.logins.failed(&username, address).await;
            cas.audit_login(&username, "second_factor_failed", address)
                .await;
            let message = if matches!(e, StoreError::Replayed(_)) {
                "This code was already used. Wait for the next one."
            } else {
                "Wrong code."
            };
            (
                StatusCode::UNAUTHORIZED,
                second_factor_page(&session.csrf, Some(message)),
            )
                .into_response()
        }
        Err(StoreError::RateLimited(_)) => (
            StatusCode::TOO_MANY_REQUESTS,
            second_factor_page(
                &session.csrf,
                Some("Too many wrong codes for this account. Wait, or ask an admin to clear the lock."),
            ),
        )
            .into_response(),
        Err(e) => super::internal(&e),
    }
}

/// The logout form's field.
#[derive(serde::Deserialize, Default)]
#[serde(default)]
pub struct CsrfForm {
    /// The CSRF token.
    pub csrf: String,
}

/// `POST /logout`.
pub async fn logout(
    State(cas): State<Cas>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    let current = match cas.session_of(&headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if let Some((session, token)) = current {
        if !same_secret(&session.csrf, &form.csrf) {
            return csrf_refused();
        }
        if let Err(e) = cas.store.end_session(&token).await {
            return super::internal(&e);
        }
    }
    with_cookie(&cas, cas.session_cookie(), "", Redirect::to("/login"))
}

impl Cas {
    /// Audits a login event of an existing operator; unknown names are
    /// only counted by the limiter, so a flood cannot fill the log.
    pub(super) async fn audit_login(&self, username: &str, outcome: &str, address: IpAddr) {
        match self.store.operator(username).await {
            Ok(Some(_)) => {
                if let Err(e) = self
                    .store
                    .audit_login(username, outcome, &address.to_string(), self.clock.now())
                    .await
                {
                    tracing::error!(error = %e, "auditing a login");
                }
            }
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "auditing a login"),
        }
    }
}
