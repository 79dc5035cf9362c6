//! CAS pages for onboarding by manifest: the vendor keys (an admin adds
//! or removes one with a fresh TOTP) and the imported manifests, with an
//! upload form (the manifest file and its detached signature) for
//! operators. Larger manifests than a form carries go through the API.

use axum::Form;
use axum::extract::{Multipart, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use pairgate_pki::VendorKey;
use pairgate_store::{Role, StoreError};
use zeroize::Zeroizing;

use super::Cas;
use super::auth::SignedIn;
use super::html::{Flash, csrf_field, flash, page, when};
use super::pages::may_change;

/// The largest manifest or signature a form upload carries.
const MAX_UPLOAD_BYTES: usize = 2 << 20;

async fn view(cas: &Cas, who: &SignedIn, message: Option<(Flash, String)>) -> Response {
    let (vendors, manifests) = match tokio::try_join!(cas.store.vendors(), cas.store.manifests()) {
        Ok(both) => both,
        Err(e) => return super::internal(&e),
    };
    let admin = who.session.operator.role == Role::Admin;
    let operator = who.session.operator.role.may_change_trust();
    let status = match &message {
        Some((Flash::Error, _)) => StatusCode::BAD_REQUEST,
        _ => StatusCode::OK,
    };
    let totp = html! { label { "Your current TOTP code" input name="totp" autocomplete="one-time-code" inputmode="numeric" required; } };
    let body: Markup = html! {
        @if let Some((kind, text)) = &message { (flash(*kind, text)) }
        p.muted { "A vendor signs a manifest of the terminals it made, each serial with its key's pin; a terminal that asks with that key pairs without a code (rule manifest). Format: docs/protocol.md." }
        h2 { "Vendor keys" }
        @if vendors.is_empty() { p.muted id="vendors" { "None." } } @else {
            div.table-wrap { table id="vendors" {
                tr { th { "Vendor" } th { "Algorithm" } th { "Key pin" } th { "Added" } @if admin { th {} } }
                @for v in &vendors {
                    tr {
                        td { (v.name) } td { (v.algorithm) } td.fp { (v.key_pin) }
                        td { (when(Some(v.added_at))) " by " (v.added_by) }
                        @if admin { td {
                            form.inline method="post" action={ "/vendors/" (v.name) "/remove" } {
                                (csrf_field(&who.session.csrf)) (totp) button.danger type="submit" { "Remove" }
                            }
                        } }
                    }
                }
            } }
        }
        @if admin {
            h2 { "Add a vendor key" }
            form.stack method="post" action="/vendors" {
                (csrf_field(&who.session.csrf))
                label { "Vendor name (as manifests give it)" input name="name" required; }
                label { "Public key, PEM (Ed25519 or P-256)" textarea name="public_key" rows="5" required {} }
                (totp)
                button type="submit" { "Add vendor key" }
            }
        }
        h2 { "Manifests" }
        @if manifests.is_empty() { p.muted id="manifests" { "None." } } @else {
            div.table-wrap { table id="manifests" {
                tr { th { "Manifest" } th { "Vendor" } th { "Terminals" } th { "Issued" } th { "Imported" } }
                @for m in &manifests {
                    tr { td { (m.id) } td { (m.vendor) } td { (m.terminals) } td { (m.issued_at) }
                         td { (when(Some(m.imported_at))) " by " (m.imported_by) } }
                }
            } }
        }
        @if operator {
            h2 { "Import a manifest" }
            form.stack method="post" action="/manifests" enctype="multipart/form-data" {
                (csrf_field(&who.session.csrf))
                label { "Manifest (JSON)" input type="file" name="manifest" required; }
                label { "Detached signature" input type="file" name="signature" required; }
                button type="submit" { "Import" }
            }
        }
    };
    (
        status,
        page("Vendors and manifests", Some(&who.viewer()), body),
    )
        .into_response()
}

/// `GET /vendors`.
pub async fn list(State(cas): State<Cas>, who: SignedIn) -> Response {
    view(&cas, &who, None).await
}

/// The add-vendor form.
#[derive(serde::Deserialize, Default)]
#[serde(default)]
pub struct VendorForm {
    csrf: String,
    name: String,
    public_key: String,
    totp: Zeroizing<String>,
}

/// A refusal or failure as the page's message.
async fn outcome(cas: &Cas, who: &SignedIn, done: Result<String, StoreError>) -> Response {
    match done {
        Ok(text) => view(cas, who, Some((Flash::Done, text))).await,
        Err(e) => match super::step_up_refusal(&e) {
            Some((status, m)) => {
                super::with_status(view(cas, who, Some((Flash::Error, m))).await, status)
            }
            None if matches!(
                e,
                StoreError::Invalid(_)
                    | StoreError::Conflict(_)
                    | StoreError::NotFound(_)
                    | StoreError::AlreadyExists(_)
                    | StoreError::Forbidden(_)
            ) =>
            {
                view(cas, who, Some((Flash::Error, e.to_string()))).await
            }
            None => super::internal(&e),
        },
    }
}

/// `POST /vendors`: an admin with a fresh TOTP adds a vendor key.
pub async fn add(
    State(cas): State<Cas>,
    headers: HeaderMap,
    Form(form): Form<VendorForm>,
) -> Response {
    let who = match cas.signed_in_form(&headers, &form.csrf).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let key = match VendorKey::from_pem(form.public_key.as_bytes()) {
        Ok(key) => key,
        Err(e) => return view(&cas, &who, Some((Flash::Error, e.to_string()))).await,
    };
    let now = cas.clock.now();
    let done = async {
        let by = cas.fresh_factor(&who, &form.totp).await?.admin()?;
        let v = cas
            .store
            .add_vendor(form.name.trim(), &key, &by, now)
            .await?;
        Ok(format!("Vendor key {} added (pin {}).", v.name, v.key_pin))
    }
    .await;
    outcome(&cas, &who, done).await
}

/// The remove-vendor form.
#[derive(serde::Deserialize, Default)]
#[serde(default)]
pub struct RemoveForm {
    csrf: String,
    totp: Zeroizing<String>,
}

/// `POST /vendors/{name}/remove`: an admin with a fresh TOTP.
pub async fn remove(
    State(cas): State<Cas>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Form(form): Form<RemoveForm>,
) -> Response {
    let who = match cas.signed_in_form(&headers, &form.csrf).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let now = cas.clock.now();
    let done = async {
        let by = cas.fresh_factor(&who, &form.totp).await?.admin()?;
        cas.store.remove_vendor(&name, &by, now).await?;
        Ok(format!(
            "Vendor key {name} removed; its manifests vouch for nothing now."
        ))
    }
    .await;
    outcome(&cas, &who, done).await
}

/// Reads the upload form: CSRF, manifest, signature.
async fn upload_fields(multipart: &mut Multipart) -> Result<(String, Vec<u8>, Vec<u8>), String> {
    let (mut csrf, mut manifest, mut signature) = (String::new(), Vec::new(), Vec::new());
    while let Some(field) = multipart.next_field().await.map_err(|e| e.to_string())? {
        let name = field.name().unwrap_or_default().to_owned();
        let bytes = field.bytes().await.map_err(|e| e.to_string())?;
        if bytes.len() > MAX_UPLOAD_BYTES {
            return Err(format!(
                "{name} is over {} KiB; use the API for larger manifests",
                MAX_UPLOAD_BYTES / 1024
            ));
        }
        match name.as_str() {
            "csrf" => csrf = String::from_utf8_lossy(&bytes).into_owned(),
            "manifest" => manifest = bytes.to_vec(),
            "signature" => signature = bytes.to_vec(),
            _ => {}
        }
    }
    Ok((csrf, manifest, signature))
}

/// `POST /manifests`: an operator imports a signed manifest.
pub async fn import(
    State(cas): State<Cas>,
    headers: HeaderMap,
    mut multipart: Multipart,
) -> Response {
    let fields = upload_fields(&mut multipart).await;
    let csrf = fields.as_ref().map(|f| f.0.clone()).unwrap_or_default();
    let who = match cas.signed_in_form(&headers, &csrf).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let by = match may_change(&who) {
        Ok(by) => by,
        Err(r) => return r,
    };
    let (_, manifest, signature) = match fields {
        Ok(f) => f,
        Err(e) => return view(&cas, &who, Some((Flash::Error, e))).await,
    };
    let done = async {
        let i = cas
            .store
            .import_signed_manifest(&manifest, &signature, &by, cas.clock.now())
            .await?;
        Ok(if i.unchanged {
            format!(
                "Manifest {} was imported before; nothing changed.",
                i.manifest_id
            )
        } else {
            format!(
                "Manifest {} imported: {} terminals vouched for, {} newly registered.",
                i.manifest_id, i.terminals, i.registered
            )
        })
    }
    .await;
    outcome(&cas, &who, done).await
}
