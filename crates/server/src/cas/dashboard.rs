//! The CAS dashboard, a fleet view for an operator of thousands of
//! terminals: terminals by state, the alerts (suspected clones, repeated
//! wrong codes, unknown-serial floods, manifest-key mismatches), charts of
//! pairing activity and of the paired fleet (last seen, model, firmware),
//! pending requests and terminals gone quiet. Every chart is SVG drawn
//! here; nothing runs in the browser.

use std::time::Duration;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use pairgate_store::{AlertKind, FleetView};

use super::Cas;
use super::auth::SignedIn;
use super::charts;
use super::html::{age, grouped, page, when};

/// A paired terminal not seen for this long is listed on the dashboard.
const QUIET_AFTER: Duration = Duration::from_secs(24 * 3600);

/// Where an alert's subject is looked at.
fn alert_link(kind: AlertKind, subject: &str) -> Markup {
    match kind {
        // The subject is an address, not a terminal.
        AlertKind::UnknownSerials => html! { (subject) },
        _ => html! { a href={ "/terminals/" (subject) } { (subject) } },
    }
}

/// A certificate the operator's CA issued is never replaced by pairgate:
/// from 30 days before its end, the dashboard says so (as do the log and
/// `/metrics`).
fn certificate_banner(
    served: crate::identity::ServedCertificate,
    now: std::time::SystemTime,
) -> Markup {
    if !served.operator_issued {
        return html! {};
    }
    let until = crate::http::rfc3339(crate::http::unix_millis(served.not_after));
    let text = match served.not_after.duration_since(now) {
        Err(_) => format!(
            "The server certificate your CA issued expired on {until}. It is still served; \
             install a renewed chain with `pairgate admin identity install`."
        ),
        Ok(left) if left < crate::identity::RENEW_BEFORE => format!(
            "The server certificate your CA issued expires on {until}, in {} days. Install a \
             renewed chain with `pairgate admin identity install`.",
            left.as_secs() / 86_400
        ),
        Ok(_) => return html! {},
    };
    html! { div id="certificate-expiry" { (super::html::flash(super::html::Flash::Error, &text)) } }
}

fn alerts(fleet: &FleetView, now: i64) -> Markup {
    html! {
        h2 { "Alerts" }
        p.muted {
            "Terminals: " a href="/terminals?state=suspected_clone" { "suspected clones" }
            " · " a href="/terminals?state=suspended" { "suspended" }
            " · " a href="/requests" { "pairing requests" }
        }
        @if fleet.alerts.is_empty() { p.muted id="alerts" { "None." } } @else {
            div.table-wrap { table id="alerts" {
                tr { th { "Alert" } th { "Terminal or address" } th { "Records" } th { "Newest" } }
                @for a in &fleet.alerts {
                    tr class={ "alert-" (a.kind.as_str().replace(' ', "-")) } {
                        td { span.tag.flag { (a.kind.as_str()) } }
                        td { (alert_link(a.kind, &a.subject)) }
                        td { (a.count) }
                        td { (age(a.at, now)) }
                    }
                }
            } }
        }
    }
}

fn charts(fleet: &FleetView) -> Markup {
    let owned = |rows: &[(&'static str, i64)]| -> Vec<(String, i64)> {
        rows.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    };
    let named = |rows: &[(String, i64)], empty: &str| -> Vec<(String, i64)> {
        rows.iter()
            .map(|(k, v)| {
                (
                    if k.is_empty() {
                        empty.to_owned()
                    } else {
                        k.clone()
                    },
                    *v,
                )
            })
            .collect()
    };
    html! {
        h2 { "Fleet" }
        div.charts {
            (charts::days(
                &format!("Pairing requests per day, last {} days", pairgate_store::FLEET_DAYS),
                "chart-days",
                &fleet.days,
            ))
            (charts::bars("Paired terminals by last seen", "chart-last-seen", &owned(&fleet.last_seen)))
            (charts::bars("Paired terminals by model", "chart-models", &named(&fleet.models, "(not reported)")))
            (charts::bars("Paired terminals by firmware", "chart-firmware", &named(&fleet.firmware, "(not reported)")))
        }
    }
}

/// `GET /`: terminals by state, alerts, the fleet's charts, pending
/// requests, terminals gone quiet.
pub async fn dashboard(State(cas): State<Cas>, who: SignedIn) -> Response {
    let now = crate::http::unix_millis(cas.clock.now());
    let cutoff = now - i64::try_from(QUIET_AFTER.as_millis()).unwrap_or(0);
    let (counts, pending, quiet, fleet) = match tokio::try_join!(
        cas.store.terminal_counts(),
        cas.store.pairing_requests(true, 20),
        cas.store.paired_terminals_not_seen_since(cutoff, 20),
        cas.store.fleet_view(now),
    ) {
        Ok(all) => all,
        Err(e) => return super::internal(&e),
    };
    page(
        "Dashboard",
        Some(&who.viewer()),
        html! {
            (certificate_banner(cas.presented.certificate(), cas.clock.now()))
            div.cards {
                @for (state, n) in &counts {
                    a.card href={ "/terminals?state=" (state.as_str()) } {
                        div.n { (n) } div.muted { "terminals " (state.as_str()) }
                    }
                }
                a.card href="/requests" { div.n id="pending-count" { (pending.len()) } div.muted { "pending pairing requests" } }
            }
            (alerts(&fleet, now))
            (charts(&fleet))
            h2 { "Pending pairing requests" }
            @if pending.is_empty() { p.muted { "None." } } @else {
                div.table-wrap { table {
                    tr { th { "Serial" } th { "Fingerprint" } th { "From" } th { "Age" } th {} }
                    @for r in &pending {
                        tr {
                            td { a href={ "/requests/" (r.id) } { (r.serial) } }
                            td.fp { (grouped(r.fingerprint.to_hex().get(..16).unwrap_or_default())) "…" }
                            td { (r.remote_address) }
                            td { (age(r.created_at, now)) }
                            td { @if r.flagged { span.tag.flag { "flagged" } } }
                        }
                    }
                } }
            }
            h2 { "Paired terminals not seen in 24 h" }
            @if quiet.is_empty() { p.muted { "None." } } @else {
                ul { @for t in &quiet {
                    li { a href={ "/terminals/" (t.serial.as_str()) } { (t.serial.as_str()) } " — last seen " (when(t.last_seen_at)) }
                } }
            }
        },
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use crate::identity::ServedCertificate;

    #[test]
    fn the_banner_warns_of_an_operator_issued_certificate_from_30_days_before_its_end() {
        let now = SystemTime::now();
        let day = Duration::from_secs(86_400);
        let banner = |days_left: i64, operator_issued: bool| {
            let not_after = if days_left >= 0 {
                now + day * u32::try_from(days_left).unwrap_or(0)
            } else {
                now - day * u32::try_from(-days_left).unwrap_or(0)
            };
            let served = ServedCertificate {
                not_after,
                operator_issued,
            };
            super::certificate_banner(served, now).into_string()
        };
        assert!(
            banner(10, true).contains("expires on"),
            "{}",
            banner(10, true)
        );
        assert!(banner(-3, true).contains("expired on"));
        assert!(banner(-3, true).contains("still served"));
        assert_eq!(banner(40, true), "");
        assert_eq!(banner(10, false), "");
    }
}
