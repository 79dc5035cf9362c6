//! Bulk decisions in CAS, for the day a site installs fifty terminals:
//! the pending requests filtered (serial prefix, model, age, flag), and a
//! selected set approved (each by the code its terminal shows, under one
//! fresh TOTP) or rejected. Each request is decided as on its own page,
//! and the page lists what happened to each.

use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use pairgate_pki::PairingCode;
use pairgate_store::{PairingRequest, RequestFilter};

use super::Cas;
use super::auth::SignedIn;
use super::html::{Flash, age, csrf_field, flash, grouped, page};
use super::pages::may_change;

/// The filter of the bulk page.
#[derive(serde::Deserialize, Default, Clone)]
#[serde(default)]
pub struct BulkQuery {
    serial_prefix: String,
    model: String,
    older_than_mins: Option<u64>,
    flagged: String,
}

impl BulkQuery {
    fn filter(&self, now: i64) -> RequestFilter {
        RequestFilter {
            status: "pending".into(),
            serial_prefix: self.serial_prefix.trim().to_owned(),
            model: self.model.trim().to_owned(),
            created_before: self.older_than_mins.map(|m| {
                now.saturating_sub(i64::try_from(m.saturating_mul(60_000)).unwrap_or(i64::MAX))
            }),
            flagged: match self.flagged.as_str() {
                "yes" => Some(true),
                "no" => Some(false),
                _ => None,
            },
        }
    }
}

async fn view(cas: &Cas, who: &SignedIn, q: &BulkQuery, outcome: Option<Markup>) -> Response {
    let now = crate::http::unix_millis(cas.clock.now());
    let found = match cas
        .store
        .filter_pairing_requests(&q.filter(now), 0, 200)
        .await
    {
        Ok(p) => p,
        Err(e) => return super::internal(&e),
    };
    let may = who.session.operator.role.may_change_trust();
    let body = html! {
        @if let Some(o) = outcome { (o) }
        form.inline method="get" action="/requests/bulk" {
            label { "Serial starts with" input name="serial_prefix" value=(q.serial_prefix); }
            label { "Model" input name="model" value=(q.model); }
            label { "Older than (minutes)" input name="older_than_mins" inputmode="numeric" value=(q.older_than_mins.map(|m| m.to_string()).unwrap_or_default()); }
            label { "Flagged" select name="flagged" {
                @for (v, t) in [("", "any"), ("yes", "flagged"), ("no", "not flagged")] {
                    option value=(v) selected[q.flagged == v] { (t) }
                }
            } }
            button type="submit" { "Filter" }
        }
        p.muted { (found.total) " pending request(s) match" @if found.total > 200 { "; the oldest 200 are not shown" } }
        form method="post" action="/requests/bulk" {
            (csrf_field(&who.session.csrf))
            div.table-wrap { table id="bulk-requests" {
                tr { th {} th { "Serial" } th { "Model" } th { "Fingerprint" } th { "From" } th { "Age" } th { "Code the terminal shows" } }
                @for r in &found.rows { (row(r, now)) }
            } }
            @if may && !found.rows.is_empty() {
                div.inline {
                    label { "Your current TOTP code (to approve)" input name="totp" autocomplete="one-time-code" inputmode="numeric"; }
                    button type="submit" name="action" value="approve" { "Approve selected" }
                    button.danger type="submit" name="action" value="reject" { "Reject selected" }
                }
            }
        }
    };
    page("Bulk decisions", Some(&who.viewer()), body).into_response()
}

fn row(r: &PairingRequest, now: i64) -> Markup {
    html! {
        tr {
            td { input type="checkbox" name="pick" value=(r.id) aria-label={ "select " (r.serial) }; }
            td { a href={ "/requests/" (r.id) } { (r.serial) } @if r.flagged { " " span.tag.flag { "flagged" } } }
            td { (r.model) }
            td.fp { (grouped(r.fingerprint.to_hex().get(..16).unwrap_or_default())) "…" }
            td { (r.remote_address) }
            td { (age(r.created_at, now)) }
            td { input name={ "code_" (r.id) } placeholder="NNNN-NNNN" inputmode="numeric" size="10"; }
        }
    }
}

/// `GET /requests/bulk`.
pub async fn list(State(cas): State<Cas>, who: SignedIn, Query(q): Query<BulkQuery>) -> Response {
    view(&cas, &who, &q, None).await
}

/// One outcome per request: what was done, or why not.
type Outcomes = Vec<(String, Result<&'static str, String>)>;

/// The first value of form field `name` (empty when missing).
fn field<'a>(fields: &'a [(String, String)], name: &str) -> &'a str {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.as_str())
}

/// The page again with `text` as its error.
async fn refused(cas: &Cas, who: &SignedIn, text: &str) -> Response {
    let page = view(
        cas,
        who,
        &BulkQuery::default(),
        Some(flash(Flash::Error, text)),
    )
    .await;
    super::with_status(page, StatusCode::BAD_REQUEST)
}

/// Approves each of `picked` by its code, under one fresh TOTP; the
/// refusal page when the TOTP is not accepted.
async fn approve_all(
    cas: &Cas,
    who: &SignedIn,
    fields: &[(String, String)],
    picked: &[&str],
) -> Result<Outcomes, Response> {
    let factor = match cas.fresh_factor(who, field(fields, "totp")).await {
        Ok(f) => f,
        Err(e) => {
            let Some((status, m)) = super::step_up_refusal(&e) else {
                return Err(super::internal(&e));
            };
            let text = format!("Nothing approved: {m}");
            let page = view(
                cas,
                who,
                &BulkQuery::default(),
                Some(flash(Flash::Error, &text)),
            )
            .await;
            return Err(super::with_status(page, status));
        }
    };
    let mut results = Vec::with_capacity(picked.len());
    for id in picked {
        let done = match field(fields, &format!("code_{id}"))
            .trim()
            .parse::<PairingCode>()
        {
            Err(_) => Err("no code, or not NNNN-NNNN".to_owned()),
            Ok(code) => cas
                .store
                .approve_pairing(id, &code, &factor, cas.clock.now())
                .await
                .map(|_| "approved")
                .map_err(|e| e.to_string()),
        };
        results.push(((*id).to_owned(), done));
    }
    Ok(results)
}

/// The outcome table.
fn outcomes(results: &Outcomes) -> Markup {
    html! {
        div.table-wrap { table id="bulk-results" {
            tr { th { "Request" } th { "Outcome" } }
            @for (id, r) in results {
                tr {
                    td { a href={ "/requests/" (id) } { (id.get(..8).unwrap_or_default()) } }
                    td { @match r {
                        Ok(done) => span class={ "tag state-" (done) } { (done) },
                        Err(why) => { span.tag.flag { "refused" } " " (why) },
                    } }
                }
            }
        } }
    }
}

/// `POST /requests/bulk`: approve (one fresh TOTP, each by its code) or
/// reject the selected requests.
pub async fn decide(
    State(cas): State<Cas>,
    headers: HeaderMap,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let who = match cas.signed_in_form(&headers, field(&fields, "csrf")).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let by = match may_change(&who) {
        Ok(by) => by,
        Err(r) => return r,
    };
    let picked: Vec<&str> = fields
        .iter()
        .filter(|(k, _)| k == "pick")
        .map(|(_, v)| v.as_str())
        .collect();
    if picked.is_empty() || picked.len() > pairgate_proto::bulk::MAX_BULK {
        let text = format!("Select 1 to {} requests.", pairgate_proto::bulk::MAX_BULK);
        return refused(&cas, &who, &text).await;
    }
    let results = match field(&fields, "action") {
        "approve" => match approve_all(&cas, &who, &fields, &picked).await {
            Ok(r) => r,
            Err(page) => return page,
        },
        "reject" => {
            let mut results = Vec::with_capacity(picked.len());
            for id in picked {
                let done = cas
                    .store
                    .reject_pairing(id, &by, cas.clock.now())
                    .await
                    .map(|_| "rejected")
                    .map_err(|e| e.to_string());
                results.push((id.to_owned(), done));
            }
            results
        }
        _ => return refused(&cas, &who, "Approve or reject?").await,
    };
    view(&cas, &who, &BulkQuery::default(), Some(outcomes(&results))).await
}
