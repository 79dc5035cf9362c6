//! CAS pages about pairing requests: the list (open ones first, with flags
//! for superseded requests, several fingerprints for one serial, and
//! recent unknown-serial attempts), a request's detail, approval by the
//! code the location contact reads out plus a fresh TOTP, rejection, and
//! the form that blocks a request's key (`blocked.rs`).

use std::collections::{HashMap, HashSet};

use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use pairgate_pki::PairingCode;
use pairgate_pki::TerminalFingerprint;
use pairgate_store::{PairingRequest, StoreError};
use zeroize::Zeroizing;

use super::Cas;
use super::auth::SignedIn;
use super::html::{Flash, age, csrf_field, flash, grouped, page, when};
use super::pages::may_change;

/// Flags a person should see next to a request.
fn flags(r: &PairingRequest, fingerprints_per_serial: &HashMap<&str, usize>) -> Vec<String> {
    let mut out = Vec::new();
    if r.supersedes.is_some() {
        out.push("supersedes another key's request".to_owned());
    } else if r.flagged {
        out.push("terminal already paired with another key".to_owned());
    }
    if r.state.as_str() == "superseded" {
        out.push("superseded".to_owned());
    }
    if let Some(n) = fingerprints_per_serial
        .get(r.serial.as_str())
        .filter(|n| **n > 1)
    {
        out.push(format!("{n} fingerprints for this serial"));
    }
    out
}

fn fingerprint_counts(requests: &[PairingRequest]) -> HashMap<&str, usize> {
    let mut seen: HashMap<&str, HashSet<&TerminalFingerprint>> = HashMap::new();
    for r in requests {
        seen.entry(r.serial.as_str())
            .or_default()
            .insert(&r.fingerprint);
    }
    seen.into_iter().map(|(s, f)| (s, f.len())).collect()
}

/// `GET /requests`.
pub async fn list(State(cas): State<Cas>, who: SignedIn) -> Response {
    let (mut requests, unknown) = match tokio::try_join!(
        cas.store.pairing_requests(false, 200),
        cas.store.search_audit("pairing.unknown_serial", 0, 20),
    ) {
        Ok(all) => all,
        Err(e) => return super::internal(&e),
    };
    // Open first, newest first within each group.
    requests.sort_by_key(|r| (!r.state.is_open(), -r.created_at));
    let counts = fingerprint_counts(&requests);
    let now = crate::http::unix_millis(cas.clock.now());
    page(
        "Pairing requests",
        Some(&who.viewer()),
        html! {
            p { a href="/requests/bulk" { "Bulk decisions" } ": filter the pending requests, approve or reject a selection." }
            div.table-wrap { table id="requests" {
                tr { th { "Serial" } th { "State" } th { "Fingerprint" } th { "From" } th { "Age" } th { "Flags" } }
                @for r in &requests {
                    tr {
                        td { a href={ "/requests/" (r.id) } { (r.serial) } }
                        td { span class={ "tag state-" (r.state.as_str()) } { (r.state.as_str()) } }
                        td.fp { (grouped(r.fingerprint.to_hex().get(..16).unwrap_or_default())) "…" }
                        td { (r.remote_address) }
                        td { (age(r.created_at, now)) }
                        td { @for f in flags(r, &counts) { span.tag.flag { (f) } " " } }
                    }
                }
            } }
            h2 { "Unknown serials tried recently" }
            p.muted { "One line per address and minute, with the count and the first serial tried." }
            @if unknown.rows.is_empty() { p.muted { "None." } } @else {
                div.table-wrap { table id="unknown-serials" {
                    tr { th { "From" } th { "When" } th { "Detail" } }
                    @for a in &unknown.rows {
                        tr { td { (a.subject) } td { (when(Some(a.at))) } td.fp { (a.detail) } }
                    }
                } }
            }
        },
    )
    .into_response()
}

pub(super) async fn detail_view(
    cas: &Cas,
    who: &SignedIn,
    id: &str,
    message: Option<(Flash, String)>,
) -> Response {
    let r = match cas.store.pairing_request(id).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            return super::refused(
                who,
                StatusCode::NOT_FOUND,
                "Pairing request",
                "No such pairing request.",
            );
        }
        Err(e) => return super::internal(&e),
    };
    let (terminal, others) = match tokio::try_join!(
        cas.store.terminal(&r.serial),
        cas.store.pairing_requests_for(&r.serial, 50)
    ) {
        Ok(both) => both,
        Err(e) => return super::internal(&e),
    };
    let counts = fingerprint_counts(&others);
    let now = crate::http::unix_millis(cas.clock.now());
    let status = match &message {
        Some((Flash::Error, _)) => StatusCode::BAD_REQUEST,
        _ => StatusCode::OK,
    };
    let body = html! {
        @if let Some((kind, text)) = &message { (flash(*kind, text)) }
        dl.facts {
            dt { "Serial" } dd { a href={ "/terminals/" (r.serial) } { (r.serial) } }
            @if let Some(t) = &terminal {
                dt { "Name" } dd { (t.name) }
                dt { "Location" } dd { (t.location) }
                dt { "Contact" } dd { (t.contact_name) " " (t.contact_phone) }
            }
            dt { "State" } dd id="request-state" { (r.state.as_str()) }
            dt { "Fingerprint" } dd.fp id="request-fingerprint" { (r.fingerprint.grouped()) }
            dt { "From" } dd { (r.remote_address) }
            dt { "Age" } dd { (age(r.created_at, now)) " (expires " (when(Some(r.expires_at))) ")" }
            dt { "Model / firmware" } dd { (r.model) " / " (r.firmware) }
            dt { "Wrong codes" } dd { (r.failed_attempts) " of " (pairgate_store::MAX_CODE_ATTEMPTS) }
            dt { "Flags" } dd { @for f in flags(&r, &counts) { span.tag.flag { (f) } " " } }
            @if let Some(by) = &r.decided_by { dt { "Decided by" } dd { (by) " at " (when(r.decided_at)) } }
        }
        @if r.state.is_open() && who.session.operator.role.may_change_trust() {
            (decision_forms(who, &r))
        }
        @if who.session.operator.role.may_change_trust() {
            h2 { "Block this key" }
            p { "For a key that is not the terminal's: it can no longer ask to pair, and its open requests end." }
            form.stack method="post" action={ "/requests/" (r.id) "/block" } {
                (csrf_field(&who.session.csrf))
                label { "Reason" input name="reason" maxlength="200" required; }
                button.danger type="submit" { "Block key" }
            }
        }
    };
    (status, page("Pairing request", Some(&who.viewer()), body)).into_response()
}

fn decision_forms(who: &SignedIn, r: &PairingRequest) -> Markup {
    html! {
        h2 { "Approve" }
        p { "Phone the location contact and ask for the code on the terminal's screen. Type it exactly; a wrong code counts, and the third ends the request." }
        @if r.terminal_nonce.is_none() { p.muted { "The terminal has not shown a code yet." } }
        form.stack method="post" action={ "/requests/" (r.id) "/approve" } {
            (csrf_field(&who.session.csrf))
            label { "Code read out by the contact (NNNN-NNNN)" input name="code" inputmode="numeric" autocomplete="off" required; }
            label { "Your current TOTP code" input name="totp" inputmode="numeric" autocomplete="one-time-code" required; }
            button type="submit" { "Approve" }
        }
        h2 { "Reject" }
        form.inline method="post" action={ "/requests/" (r.id) "/reject" } {
            (csrf_field(&who.session.csrf))
            button.danger type="submit" { "Reject" }
        }
    }
}

/// `GET /requests/{id}`.
pub async fn detail(State(cas): State<Cas>, who: SignedIn, Path(id): Path<String>) -> Response {
    detail_view(&cas, &who, &id, None).await
}

/// The approval form.
#[derive(serde::Deserialize, Default)]
#[serde(default)]
pub struct ApproveForm {
    csrf: String,
    code: String,
    totp: Zeroizing<String>,
}

/// `POST /requests/{id}/approve`: the code, then a fresh TOTP, then the
/// store's approval (the same call as `pairgate admin approve`).
pub async fn approve(
    State(cas): State<Cas>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<ApproveForm>,
) -> Response {
    let who = match cas.signed_in_form(&headers, &form.csrf).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    if let Err(r) = may_change(&who) {
        return r;
    }
    let (shown, status) = match approval(&cas, &who, &id, &form).await {
        Ok(done) => ((Flash::Done, done), None),
        Err(NotApproved::Shown(message, status)) => ((Flash::Error, message), status),
        Err(NotApproved::Internal(response)) => return response,
    };
    let view = detail_view(&cas, &who, &id, Some(shown)).await;
    match status {
        Some(status) => super::with_status(view, status),
        None => view,
    }
}

/// Why an approval from the page did not happen.
enum NotApproved {
    /// Said on the request's page, with a status other than 200 if any.
    Shown(String, Option<StatusCode>),
    /// A store failure's page.
    Internal(Response),
}

/// Checks the form and approves; `Ok` holds the message for the page.
async fn approval(
    cas: &Cas,
    who: &SignedIn,
    id: &str,
    form: &ApproveForm,
) -> Result<String, NotApproved> {
    let operator = &who.session.operator;
    if !operator.totp_enabled {
        return Err(NotApproved::Shown(
            "Approval needs two-factor authentication on your account.".into(),
            None,
        ));
    }
    let Ok(code) = form.code.parse::<PairingCode>() else {
        return Err(NotApproved::Shown(
            "A pairing code is 8 digits, NNNN-NNNN.".into(),
            None,
        ));
    };
    let now = cas.clock.now();
    let factor = cas
        .store
        .verify_second_factor(&operator.username, form.totp.trim(), now)
        .await
        .map_err(|e| match super::step_up_refusal(&e) {
            Some((status, m)) => NotApproved::Shown(format!("Not approved: {m}"), Some(status)),
            None => NotApproved::Internal(super::internal(&e)),
        })?;
    match cas.store.approve_pairing(id, &code, &factor, now).await {
        Ok(t) => Ok(format!("Approved: {} is paired.", t.serial.as_str())),
        Err(
            e @ (StoreError::WrongCode { .. }
            | StoreError::Closed { .. }
            | StoreError::Expired(_)
            | StoreError::NotRevealed(_)
            | StoreError::Forbidden(_)
            | StoreError::NotFound(_)
            | StoreError::Invalid(_)
            | StoreError::Conflict(_)),
        ) => Err(NotApproved::Shown(format!("Not approved: {e}"), None)),
        Err(e) => Err(NotApproved::Internal(super::internal(&e))),
    }
}

/// `POST /requests/{id}/reject`.
pub async fn reject(
    State(cas): State<Cas>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<super::auth::CsrfForm>,
) -> Response {
    let who = match cas.signed_in_form(&headers, &form.csrf).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let by = match may_change(&who) {
        Ok(by) => by,
        Err(r) => return r,
    };
    match cas.store.reject_pairing(&id, &by, cas.clock.now()).await {
        Ok(_) => detail_view(&cas, &who, &id, Some((Flash::Done, "Rejected.".into()))).await,
        Err(
            e @ (StoreError::Closed { .. }
            | StoreError::Expired(_)
            | StoreError::NotFound(_)
            | StoreError::Invalid(_)),
        ) => {
            detail_view(
                &cas,
                &who,
                &id,
                Some((Flash::Error, format!("Not rejected: {e}"))),
            )
            .await
        }
        Err(e) => super::internal(&e),
    }
}
