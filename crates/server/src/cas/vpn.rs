//! A terminal's VPN in CAS (issue 19): the section of its page that shows
//! what the server offers, the terminal's credential (type, address,
//! state) and its history, and regenerates it with a fresh TOTP — the
//! credential is revoked, the VPN server drops it at its next sync, and
//! the terminal makes a new key and enrols again. The same over the API:
//! `GET /api/v1/terminals/{serial}/vpn` and `POST …/vpn/regenerate`.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use maud::{Markup, html};
use pairgate_proto::cas::TotpBody;
use pairgate_proto::vpn::TerminalVpn;
use pairgate_store::{Serial, StoreError, Terminal, TerminalState, VpnCredential};

use super::Cas;
use super::api::{bearer, existing, store};
use super::auth::SignedIn;
use super::html::{Flash, csrf_field, when};
use super::pages::{StepUpForm, stepped_up, terminal_view};
use crate::error::ApiError;
use crate::http::{JsonBody, JsonPath};

/// The page section.
pub(super) fn section(
    who: &SignedIn,
    t: &Terminal,
    vpn: Option<&crate::VpnSettings>,
    history: &[VpnCredential],
) -> Markup {
    let active = history.iter().find(|c| c.revoked_at.is_none());
    html! {
        h2 { "VPN" }
        @match vpn {
            None => p.muted { "This server offers no VPN (vpn_type = \"none\")." },
            Some(v) => {
                dl.facts id="vpn" {
                    dt { "Type" } dd { (v.vpn_type) " to " (v.endpoint) ", pool " (v.pool_v4) }
                    dt { "State" } dd id="vpn-state" {
                        @match (active, history.first()) {
                            (Some(_), _) => "enrolled",
                            (None, Some(c)) => { "revoked (" (c.revoked_reason.as_deref().unwrap_or("?")) ")" },
                            (None, None) => "not enrolled",
                        }
                    }
                    @if let Some(c) = active {
                        dt { "Address" } dd id="vpn-address" { (c.address) @if let Some(v6) = &c.address_v6 { ", " (v6) } }
                        dt { "Key" } dd.fp { (c.public_key) }
                        @if let Some(serial) = &c.certificate_serial { dt { "Certificate" } dd.fp { (serial) } }
                        dt { "Issued" } dd { (when(Some(c.issued_at))) }
                    }
                }
                @if active.is_some() && t.state == TerminalState::Paired && who.session.operator.role.may_change_trust() {
                    p { "Regenerate: the VPN server drops this credential at its next sync; the terminal makes a new key and enrols again." }
                    form.inline method="post" action={ "/terminals/" (t.serial.as_str()) "/vpn/regenerate" } {
                        (csrf_field(&who.session.csrf))
                        label { "Your current TOTP code" input name="totp" autocomplete="one-time-code" inputmode="numeric" required; }
                        button.danger type="submit" { "Regenerate" }
                    }
                }
                @if t.vpn_profile.is_empty() { } @else {
                    details { summary { "Profile (no private key)" } pre { (t.vpn_profile) } }
                }
            }
        }
    }
}

/// `GET /vpn`: the VPN's settings (read-only here: they are set in the
/// settings file or environment, like every setting) and every terminal
/// the VPN server admits.
pub async fn overview(State(cas): State<Cas>, who: SignedIn) -> Response {
    let credentials = match &cas.vpn {
        Some(v) => match cas.store.vpn_credentials(v.vpn_type.as_str()).await {
            Ok(c) => c,
            Err(e) => return super::internal(&e),
        },
        None => Vec::new(),
    };
    let admitted: Vec<&VpnCredential> = credentials
        .iter()
        .filter(|c| c.revoked_at.is_none())
        .collect();
    let body = html! {
        @match cas.vpn.as_deref() {
            None => p { "This server offers no VPN. Set vpn_type, vpn_endpoint and vpn_pool_v4 and run "
                code { "pairgate vpn init" } " (docs/operations.md, VPN profiles)." },
            Some(v) => {
                p.muted { "Set in the settings file or environment; " code { "pairgate server --help" } " lists them." }
                dl.facts id="vpn-settings" {
                    dt { "Type" } dd { (v.vpn_type) }
                    dt { "Endpoint" } dd { (v.endpoint) }
                    dt { "Pools" } dd { (v.pool_v4) " (" (v.pool_v4.capacity()) " terminals)"
                        @if let Some(v6) = v.pool_v6 { ", " (v6) } }
                    dt { "Routes" } dd { (v.tunnel_networks().join(", ")) }
                    dt { "DNS" } dd { (v.dns.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")) }
                    dt { "Keepalive" } dd { (v.keepalive_secs) " s" }
                }
                h2 { "Admitted terminals (" (admitted.len()) ")" }
                div.table-wrap { table id="vpn-admitted" {
                    tr { th { "Terminal" } th { "Address" } th { "Key" } th { "Issued" } }
                    @for c in &admitted {
                        tr {
                            td { a href={ "/terminals/" (c.serial.as_str()) } { (c.serial.as_str()) } }
                            td { (c.address) }
                            td.fp { (c.public_key.get(..16).unwrap_or_default()) "…" }
                            td { (when(Some(c.issued_at))) }
                        }
                    }
                } }
                p.muted { (credentials.len() - admitted.len()) " revoked credentials are on record." }
            }
        }
    };
    (
        StatusCode::OK,
        super::html::page("VPN", Some(&who.viewer()), body),
    )
        .into_response()
}

/// `POST /terminals/{serial}/vpn/regenerate`: a fresh TOTP, then the
/// store revokes the credential (audited).
pub async fn regenerate(
    State(cas): State<Cas>,
    headers: HeaderMap,
    Path(serial): Path<String>,
    Form(form): Form<StepUpForm>,
) -> Response {
    let (who, parsed, trust) = match stepped_up(&cas, &headers, &serial, &form, "regenerated").await
    {
        Ok(proven) => proven,
        Err(r) => return r,
    };
    let note = match cas
        .store
        .revoke_vpn_credential(&parsed, &trust, cas.clock.now())
        .await
    {
        Ok(()) => (
            Flash::Done,
            "VPN credential revoked; the terminal enrols again.".into(),
        ),
        Err(e @ (StoreError::Conflict(_) | StoreError::NotFound(_))) => {
            (Flash::Error, e.to_string())
        }
        Err(e) => return super::internal(&e),
    };
    terminal_view(&cas, &who, &serial, Some(note)).await
}

/// `GET /api/v1/terminals/{serial}/vpn`.
pub async fn api_status(
    State(cas): State<Cas>,
    headers: HeaderMap,
    JsonPath(s): JsonPath<String>,
) -> Response {
    tri!(bearer(&cas, &headers).await);
    let s = tri!(Serial::new(&s).map_err(|e| ApiError::from(e).into_response()));
    tri!(existing(&cas, &s).await);
    listed(&cas, &s).await
}

/// Terminal `s`'s credentials, newest first, as the API shows them.
async fn listed(cas: &Cas, s: &Serial) -> Response {
    let history = tri!(store(cas.store.vpn_history(s).await));
    Json(TerminalVpn {
        credentials: history.iter().map(VpnCredential::view).collect(),
    })
    .into_response()
}

/// `POST /api/v1/terminals/{serial}/vpn/regenerate` `{"totp"}`.
pub async fn api_regenerate(
    State(cas): State<Cas>,
    headers: HeaderMap,
    JsonPath(s): JsonPath<String>,
    body: Result<JsonBody<TotpBody>, ApiError>,
) -> Response {
    let op = tri!(bearer(&cas, &headers).await);
    let JsonBody(body) = tri!(body.map_err(IntoResponse::into_response));
    let (s, by) = tri!(super::api::stepped_up(&cas, &op, &s, &body.totp).await);
    tri!(store(
        cas.store
            .revoke_vpn_credential(&s, &by, cas.clock.now())
            .await
    ));
    listed(&cas, &s).await
}
