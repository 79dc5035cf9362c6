//! CAS pages of the block list of terminal keys: block the key of a
//! pairing request (with a reason; its open requests end), the list of
//! blocked keys, and unblock. Operators and admins change it; every change
//! is the store's audited call, as from `pairgate admin key` and the API.

use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::html;
use pairgate_pki::TerminalFingerprint;
use pairgate_store::StoreError;

use super::Cas;
use super::auth::SignedIn;
use super::html::{Flash, csrf_field, flash, page, when};
use super::pages::may_change;
use super::requests::detail_view;

/// The block form.
#[derive(serde::Deserialize, Default)]
#[serde(default)]
pub struct BlockForm {
    csrf: String,
    reason: String,
}

/// `POST /requests/{id}/block`: blocks the key that made the request.
pub async fn block(
    State(cas): State<Cas>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<BlockForm>,
) -> Response {
    let who = match cas.signed_in_form(&headers, &form.csrf).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    if let Err(r) = may_change(&who) {
        return r;
    }
    let request = match cas.store.pairing_request(&id).await {
        Ok(Some(r)) => r,
        Ok(None) => return detail_view(&cas, &who, &id, None).await,
        Err(e) => return super::internal(&e),
    };
    let fingerprint = request.fingerprint;
    let reason = form.reason.trim();
    if reason.is_empty() {
        let m = (Flash::Error, "Say why the key is blocked.".to_owned());
        return detail_view(&cas, &who, &id, Some(m)).await;
    }
    let message = match cas
        .store
        .block_key(&fingerprint, reason, &who.actor(), cas.clock.now())
        .await
    {
        Ok(_) => (
            Flash::Done,
            "Key blocked: it can no longer ask to pair, and its open requests ended.".to_owned(),
        ),
        Err(
            e @ (StoreError::AlreadyExists(_) | StoreError::Conflict(_) | StoreError::Invalid(_)),
        ) => (Flash::Error, format!("Not blocked: {e}")),
        Err(e) => return super::internal(&e),
    };
    detail_view(&cas, &who, &id, Some(message)).await
}

async fn list_view(cas: &Cas, who: &SignedIn, message: Option<(Flash, String)>) -> Response {
    let keys = match cas.store.blocked_keys().await {
        Ok(k) => k,
        Err(e) => return super::internal(&e),
    };
    let changes = who.session.operator.role.may_change_trust();
    let status = match &message {
        Some((Flash::Error, _)) => StatusCode::BAD_REQUEST,
        _ => StatusCode::OK,
    };
    let body = html! {
        @if let Some((kind, text)) = &message { (flash(*kind, text)) }
        p { "A blocked key cannot ask to pair at the gate. Block a key from its pairing request's page." }
        @if keys.is_empty() { p.muted { "No key is blocked." } } @else {
            div.table-wrap { table id="blocked-keys" {
                tr { th { "Fingerprint" } th { "Reason" } th { "By" } th { "When" } th {} }
                @for k in &keys {
                    tr {
                        td.fp { (k.fingerprint.grouped()) }
                        td { (k.reason) }
                        td { (k.blocked_by) }
                        td { (when(Some(k.blocked_at))) }
                        td { @if changes {
                            form.inline method="post" action={ "/blocked-keys/" (k.fingerprint) "/unblock" } {
                                (csrf_field(&who.session.csrf))
                                button type="submit" { "Unblock" }
                            }
                        } }
                    }
                }
            } }
        }
    };
    (status, page("Blocked keys", Some(&who.viewer()), body)).into_response()
}

/// `GET /blocked-keys`.
pub async fn list(State(cas): State<Cas>, who: SignedIn) -> Response {
    list_view(&cas, &who, None).await
}

/// `POST /blocked-keys/{fingerprint}/unblock`.
pub async fn unblock(
    State(cas): State<Cas>,
    headers: HeaderMap,
    Path(fp): Path<String>,
    Form(form): Form<super::auth::CsrfForm>,
) -> Response {
    let who = match cas.signed_in_form(&headers, &form.csrf).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    if let Err(r) = may_change(&who) {
        return r;
    }
    let Ok(fingerprint) = fp.parse::<TerminalFingerprint>() else {
        let m = (Flash::Error, "That is not a key fingerprint.".to_owned());
        return list_view(&cas, &who, Some(m)).await;
    };
    let message = match cas
        .store
        .unblock_key(&fingerprint, &who.actor(), cas.clock.now())
        .await
    {
        Ok(()) => (Flash::Done, format!("Key {fingerprint} unblocked.")),
        Err(e @ StoreError::NotFound(_)) => (Flash::Error, format!("Not unblocked: {e}")),
        Err(e) => return super::internal(&e),
    };
    list_view(&cas, &who, Some(message)).await
}
