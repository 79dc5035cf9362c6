//! A terminal's suspension in CAS: the section of its page that shows a
//! clone suspicion with its evidence, suspends a paired terminal (any
//! operator: it only takes trust away), and resumes it (a fresh TOTP:
//! it gives trust back).

use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::{Markup, html};
use pairgate_store::{Serial, StoreError, Terminal, TerminalState};

use super::Cas;
use super::auth::SignedIn;
use super::html::{Flash, csrf_field, when};
use super::pages::{StepUpForm, may_change, stepped_up, terminal_view};

/// The page section: the suspicion and its evidence, and the suspend or
/// resume form the operator's role allows.
pub(super) fn section(who: &SignedIn, t: &Terminal) -> Markup {
    let may = who.session.operator.role.may_change_trust();
    let action = |verb: &str| format!("/terminals/{}/{verb}", t.serial.as_str());
    html! {
        @if t.suspected_clone {
            h2 { "Suspected clone" }
            p id="clone-evidence" {
                span.tag.flag { "suspected clone" } " This identity was seen in two places at once: "
                code { (t.clone_evidence.as_deref().unwrap_or("")) }
            }
        }
        @if let Some(at) = t.suspended_at {
            p id="suspension" { "Suspended " (when(Some(at))) " by " (t.suspended_by.as_deref().unwrap_or("?"))
                ". The master refuses it; the pairing is kept." }
        }
        @if may && t.state == TerminalState::Paired {
            @if t.suspended_at.is_some() || t.suspected_clone {
                form.inline method="post" action=(action("resume")) {
                    (csrf_field(&who.session.csrf))
                    label { "Your current TOTP code" input name="totp" autocomplete="one-time-code" inputmode="numeric" required; }
                    button type="submit" { @if t.suspended_at.is_some() { "Resume" } @else { "Clear the suspicion" } }
                }
            }
            @if t.suspended_at.is_none() {
                form.inline method="post" action=(action("suspend")) {
                    (csrf_field(&who.session.csrf))
                    button.danger type="submit" { "Suspend" }
                }
            }
        }
    }
}

/// The form of a suspension: CSRF only.
#[derive(serde::Deserialize, Default)]
#[serde(default)]
pub struct CsrfForm {
    /// CSRF token.
    pub csrf: String,
}

fn parsed(who: &SignedIn, serial: &str) -> Result<Serial, Response> {
    Serial::new(serial)
        .map_err(|_| super::refused(who, StatusCode::NOT_FOUND, "Terminal", "No such terminal."))
}

async fn answer(
    cas: &Cas,
    who: &SignedIn,
    serial: &str,
    done: Result<Terminal, StoreError>,
    what: &str,
) -> Response {
    match done {
        Ok(_) => terminal_view(cas, who, serial, Some((Flash::Done, format!("{what}.")))).await,
        Err(e @ (StoreError::Conflict(_) | StoreError::NotFound(_) | StoreError::Invalid(_))) => {
            terminal_view(cas, who, serial, Some((Flash::Error, e.to_string()))).await
        }
        Err(e) => super::internal(&e),
    }
}

/// `POST /terminals/{serial}/suspend`.
pub async fn suspend(
    State(cas): State<Cas>,
    headers: HeaderMap,
    Path(serial): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let who = match cas.signed_in_form(&headers, &form.csrf).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let by = match may_change(&who) {
        Ok(by) => by,
        Err(r) => return r,
    };
    let s = match parsed(&who, &serial) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let done = cas.store.suspend_terminal(&s, &by, cas.clock.now()).await;
    answer(&cas, &who, &serial, done, "Suspended").await
}

/// `POST /terminals/{serial}/resume`: a fresh TOTP first.
pub async fn resume(
    State(cas): State<Cas>,
    headers: HeaderMap,
    Path(serial): Path<String>,
    Form(form): Form<StepUpForm>,
) -> Response {
    let (who, s, trust) = match stepped_up(&cas, &headers, &serial, &form, "resumed").await {
        Ok(proven) => proven,
        Err(r) => return r,
    };
    let done = cas.store.resume_terminal(&s, &trust, cas.clock.now()).await;
    answer(&cas, &who, &serial, done, "Resumed").await
}
