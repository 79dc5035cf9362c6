//! CAS pages about terminals: the searchable and paged
//! terminal list, registering one or many (CSV import with a result per
//! row), a terminal's detail with its pairing history, and unpair (a
//! fresh TOTP required).

use axum::Form;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use pairgate_store::{Changer, NewTerminal, Serial, StoreError, TerminalFilter, TerminalState};
use zeroize::Zeroizing;

use super::Cas;
use super::auth::SignedIn;
use super::html::{Flash, age, csrf_field, flash, grouped, page, when};

/// Terminals per page.
const PAGE_SIZE: i64 = 50;
/// Largest CSV import.
const MAX_IMPORT_BYTES: usize = 1 << 20;

/// Refuses viewers: they read, they do not change.
pub(crate) fn may_change(who: &SignedIn) -> Result<Changer, Response> {
    who.session.operator.changer().map_err(|_| {
        super::refused(
            who,
            StatusCode::FORBIDDEN,
            "Not allowed",
            "Your role (viewer) can look, not change. Ask an operator or admin.",
        )
    })
}

pub(super) fn state_tag(state: &str) -> Markup {
    html! { span class={ "tag state-" (state) } { (state) } }
}

/// The terminal list's filter for its `state` choice: a state, or
/// suspended terminals, or suspected clones; `None` for an unknown one.
fn filter_of(state: &str) -> Option<TerminalFilter> {
    let none = TerminalFilter::default();
    Some(match state {
        "" => none,
        "suspended" => TerminalFilter {
            suspended: true,
            ..none
        },
        "suspected_clone" => TerminalFilter {
            suspected_clone: true,
            ..none
        },
        s => TerminalFilter {
            state: Some(TerminalState::parse(s).ok()?),
            ..none
        },
    })
}

/// The terminal list's query.
#[derive(serde::Deserialize, Default)]
#[serde(default)]
pub struct ListQuery {
    q: String,
    state: String,
    page: i64,
}

/// `GET /terminals?q=&state=&page=`.
pub async fn terminals(
    State(cas): State<Cas>,
    who: SignedIn,
    Query(query): Query<ListQuery>,
) -> Response {
    let Some(filter) = filter_of(&query.state) else {
        return super::refused(
            &who,
            StatusCode::BAD_REQUEST,
            "Terminals",
            "Unknown state filter.",
        );
    };
    let page_no = query.page.max(0);
    let found = match cas
        .store
        .filter_terminals(
            &query.q,
            &filter,
            page_no.saturating_mul(PAGE_SIZE),
            PAGE_SIZE,
        )
        .await
    {
        Ok(p) => p,
        Err(e) => return super::internal(&e),
    };
    let link = |p: i64| {
        format!(
            "/terminals?q={}&state={}&page={p}",
            urlencode(&query.q),
            query.state
        )
    };
    page(
        "Terminals",
        Some(&who.viewer()),
        html! {
            form.inline method="get" action="/terminals" {
                label { "Search" input name="q" value=(query.q) placeholder="serial, name or location"; }
                label { "State" select name="state" {
                    option value="" selected[query.state.is_empty()] { "any" }
                    @for s in ["registered", "paired", "unpaired", "suspended", "suspected_clone"] {
                        option value=(s) selected[query.state == s] { (s.replace('_', " ")) }
                    }
                } }
                button type="submit" { "Filter" }
                @if who.session.operator.role.may_change_trust() {
                    a href="/terminals/new" { "Register a terminal" }
                    a href="/terminals/import" { "Import CSV" }
                }
            }
            p.muted {
                (found.total) " terminal(s) · export all: "
                a href="/export/terminals?format=csv" { "CSV" } " · "
                a href="/export/terminals?format=json" { "JSON" }
            }
            div.table-wrap { table id="terminals" {
                tr { th { "Serial" } th { "Name" } th { "Location" } th { "State" } th { "Last seen" } }
                @for t in &found.rows {
                    tr {
                        td { a href={ "/terminals/" (t.serial.as_str()) } { (t.serial.as_str()) } }
                        td { (t.name) } td { (t.location) }
                        td { (state_tag(t.state.as_str())) }
                        td { (when(t.last_seen_at)) }
                    }
                }
            } }
            div.pager {
                @if page_no > 0 { a href=(link(page_no - 1)) { "← previous" } }
                @if (page_no + 1) * PAGE_SIZE < found.total { a href=(link(page_no + 1)) { "next →" } }
            }
        },
    )
    .into_response()
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

fn terminal_form(csrf: &str, values: &NewTerminal, error: Option<&str>) -> Markup {
    html! {
        @if let Some(e) = error { (flash(Flash::Error, e)) }
        form.stack method="post" action="/terminals" {
            (csrf_field(csrf))
            label { "Serial" input name="serial" required value=(values.serial); }
            label { "Name" input name="name" value=(values.name); }
            label { "Location" input name="location" value=(values.location); }
            label { "Location contact" input name="contact_name" value=(values.contact_name); }
            label { "Contact phone" input name="contact_phone" type="tel" value=(values.contact_phone); }
            button type="submit" { "Register" }
        }
    }
}

/// `GET /terminals/new`.
pub async fn new_terminal(who: SignedIn) -> Response {
    if let Err(r) = may_change(&who) {
        return r;
    }
    page(
        "Register a terminal",
        Some(&who.viewer()),
        terminal_form(&who.session.csrf, &NewTerminal::default(), None),
    )
    .into_response()
}

/// The registration form.
#[derive(serde::Deserialize, Default)]
#[serde(default)]
pub struct TerminalForm {
    csrf: String,
    #[serde(flatten)]
    terminal: NewTerminal,
}

/// `POST /terminals`.
pub async fn create_terminal(
    State(cas): State<Cas>,
    headers: HeaderMap,
    Form(form): Form<TerminalForm>,
) -> Response {
    let who = match cas.signed_in_form(&headers, &form.csrf).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let by = match may_change(&who) {
        Ok(by) => by,
        Err(r) => return r,
    };
    match cas
        .store
        .register_terminal(&form.terminal, &by, cas.clock.now())
        .await
    {
        Ok(t) => Redirect::to(&format!("/terminals/{}", t.serial.as_str())).into_response(),
        Err(e @ (StoreError::Invalid(_) | StoreError::AlreadyExists(_))) => (
            StatusCode::BAD_REQUEST,
            page(
                "Register a terminal",
                Some(&who.viewer()),
                terminal_form(&who.session.csrf, &form.terminal, Some(&e.to_string())),
            ),
        )
            .into_response(),
        Err(e) => super::internal(&e),
    }
}

/// One imported row: its number, serial, and what happened.
type ImportRow = (usize, String, Result<(), String>);

fn import_page(who: &SignedIn, results: Option<&[ImportRow]>) -> Markup {
    page(
        "Import terminals",
        Some(&who.viewer()),
        html! {
            p { "A CSV file with the columns " code { "serial,name,location,contact_name,contact_phone" } " (a header row is optional; only serial is required). Each row is registered on its own: a bad row does not stop the others." }
            form.stack method="post" action="/terminals/import" enctype="multipart/form-data" {
                (csrf_field(&who.session.csrf))
                label { "CSV file" input name="file" type="file" accept=".csv,text/csv" required; }
                button type="submit" { "Import" }
            }
            @if let Some(results) = results {
                @let ok = results.iter().filter(|r| r.2.is_ok()).count();
                h2 { "Result" }
                p id="import-summary" { (ok) " registered, " (results.len() - ok) " refused" }
                div.table-wrap { table id="import-results" {
                    tr { th { "Row" } th { "Serial" } th { "Result" } }
                    @for (row, serial, result) in results {
                        tr {
                            td { (row) } td { (serial) }
                            td { @match result { Ok(()) => { span.tag.state-paired { "registered" } } Err(e) => { span.tag.flag { (e) } } } }
                        }
                    }
                } }
            }
        },
    )
}

/// `GET /terminals/import`.
pub async fn import_form(who: SignedIn) -> Response {
    if let Err(r) = may_change(&who) {
        return r;
    }
    import_page(&who, None).into_response()
}

/// Reads the import form: the CSRF token and the file.
async fn import_fields(multipart: &mut Multipart) -> Result<(Zeroizing<String>, Vec<u8>), String> {
    let mut csrf = Zeroizing::new(String::new());
    let mut file = Vec::new();
    while let Some(field) = multipart.next_field().await.map_err(|e| e.to_string())? {
        match field.name() {
            Some("csrf") => csrf = Zeroizing::new(field.text().await.map_err(|e| e.to_string())?),
            Some("file") => {
                let bytes = field.bytes().await.map_err(|e| e.to_string())?;
                if bytes.len() > MAX_IMPORT_BYTES {
                    return Err(format!("the file is over {} KiB", MAX_IMPORT_BYTES / 1024));
                }
                file = bytes.to_vec();
            }
            _ => {}
        }
    }
    Ok((csrf, file))
}

/// Parses the CSV rows of a terminal import
/// (`serial,name,location,contact_name,contact_phone`, an optional header
/// row) into terminals, each with its row number, or why the row is not
/// one. The store checks each terminal's fields when it registers it.
pub fn parse_import(bytes: &[u8]) -> Vec<(usize, Result<NewTerminal, String>)> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(bytes);
    let mut rows = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let row = i + 1;
        match record {
            Ok(r) if row == 1 && r.get(0).is_some_and(|c| c.eq_ignore_ascii_case("serial")) => {}
            Ok(r) if r.iter().all(str::is_empty) => {}
            Ok(r) if r.len() > 5 => {
                rows.push((row, Err(format!("{} columns; at most 5", r.len()))))
            }
            Ok(r) => {
                let cell = |n: usize| r.get(n).unwrap_or_default().to_owned();
                rows.push((
                    row,
                    Ok(NewTerminal {
                        serial: cell(0),
                        name: cell(1),
                        location: cell(2),
                        contact_name: cell(3),
                        contact_phone: cell(4),
                    }),
                ));
            }
            Err(e) => rows.push((row, Err(format!("not CSV: {e}")))),
        }
    }
    rows
}

/// `POST /terminals/import`: registers each row; shows a result per row.
pub async fn import(
    State(cas): State<Cas>,
    headers: HeaderMap,
    mut multipart: Multipart,
) -> Response {
    let (csrf, file) = match import_fields(&mut multipart).await {
        Ok(f) => f,
        Err(e) => {
            let who = match cas.signed_in(&headers).await {
                Ok(w) => w,
                Err(r) => return r,
            };
            return super::refused(&who, StatusCode::BAD_REQUEST, "Import terminals", &e);
        }
    };
    let who = match cas.signed_in_form(&headers, &csrf).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let by = match may_change(&who) {
        Ok(by) => by,
        Err(r) => return r,
    };
    let mut results = Vec::new();
    for (row, parsed) in parse_import(&file).into_iter().take(10_000) {
        let (serial, result) = match parsed {
            Ok(t) => {
                let r = cas.store.register_terminal(&t, &by, cas.clock.now()).await;
                match r {
                    Ok(_) => (t.serial, Ok(())),
                    Err(e @ (StoreError::Invalid(_) | StoreError::AlreadyExists(_))) => {
                        (t.serial, Err(e.to_string()))
                    }
                    Err(e) => return super::internal(&e),
                }
            }
            Err(e) => (String::new(), Err(e)),
        };
        results.push((row, serial, result));
    }
    import_page(&who, Some(&results)).into_response()
}

fn terminal_page(who: &SignedIn, serial: &Serial, body: Markup) -> Markup {
    page(
        &format!("Terminal {}", serial.as_str()),
        Some(&who.viewer()),
        body,
    )
}

/// `GET /terminals/{serial}`.
pub async fn terminal(
    State(cas): State<Cas>,
    who: SignedIn,
    Path(serial): Path<String>,
) -> Response {
    terminal_view(&cas, &who, &serial, None).await
}

pub(super) async fn terminal_view(
    cas: &Cas,
    who: &SignedIn,
    serial: &str,
    message: Option<(Flash, String)>,
) -> Response {
    let Ok(serial) = Serial::new(serial) else {
        return super::refused(who, StatusCode::NOT_FOUND, "Terminal", "No such terminal.");
    };
    let (t, history, keys, vpn) = match tokio::try_join!(
        cas.store.terminal(&serial),
        cas.store.pairing_requests_for(&serial, 50),
        cas.store.key_lineage(&serial),
        cas.store.vpn_history(&serial)
    ) {
        Ok((Some(t), h, k, v)) => (t, h, k, v),
        Ok((None, _, _, _)) => {
            return super::refused(who, StatusCode::NOT_FOUND, "Terminal", "No such terminal.");
        }
        Err(e) => return super::internal(&e),
    };
    let now = crate::http::unix_millis(cas.clock.now());
    let status = match &message {
        Some((Flash::Error, _)) => StatusCode::BAD_REQUEST,
        _ => StatusCode::OK,
    };
    let body = html! {
        @if let Some((kind, text)) = &message { (flash(*kind, text)) }
        dl.facts {
            dt { "State" } dd id="terminal-state" {
                @if t.suspended_at.is_some() { (state_tag("suspended")) } @else { (state_tag(t.state.as_str())) }
                @if t.suspected_clone { " " span.tag.flag { "suspected clone" } }
            }
            dt { "Name" } dd { (t.name) }
            dt { "Location" } dd { (t.location) }
            dt { "Contact" } dd { (t.contact_name) " " (t.contact_phone) }
            dt { "Fingerprint" } dd.fp { (t.paired_fingerprint.map(|f| f.grouped()).unwrap_or_else(|| "—".into())) }
            @if let Some(next) = t.successor_fingerprint {
                dt { "New key" } dd.fp { (next.grouped()) " (proven by re-key, not used yet)" }
            }
            dt { "Paired" } dd { (when(t.paired_at)) @if let Some(by) = &t.paired_by { " by " (by) } }
            dt { "Last seen" } dd { (when(t.last_seen_at)) @if let Some(a) = &t.last_seen_address { " from " (a) } }
            dt { "Firmware" } dd { (t.firmware.as_deref().unwrap_or("—")) }
        }
        (super::suspend::section(who, &t))
        (super::vpn::section(who, &t, cas.vpn.as_deref(), &vpn))
        @if t.state == TerminalState::Paired && who.session.operator.role.may_change_trust() {
            h2 { "Unpair" }
            p { "The terminal loses access to the master at once and must pair again." }
            form.inline method="post" action={ "/terminals/" (t.serial.as_str()) "/unpair" } {
                (csrf_field(&who.session.csrf))
                label { "Your current TOTP code" input name="totp" autocomplete="one-time-code" inputmode="numeric" required; }
                button.danger type="submit" { "Unpair" }
            }
        }
        @if !keys.is_empty() {
            h2 { "Keys" }
            p.muted { "The terminal replaced its key over the master (re-key); each key names the one it replaced." }
            div.table-wrap { table id="key-lineage" {
                tr { th { "Fingerprint" } th { "Replaced" } th { "Recorded" } th { "In use since" } th { "Retired" } }
                @for k in &keys {
                    tr {
                        td.fp { (grouped(k.fingerprint.to_hex().get(..16).unwrap_or_default())) "…" }
                        td.fp { @if let Some(p) = k.predecessor { (grouped(p.to_hex().get(..16).unwrap_or_default())) "…" } @else { "— (paired)" } }
                        td { (when(Some(k.recorded_at))) }
                        td { (when(k.activated_at)) }
                        td { (when(k.retired_at)) }
                    }
                }
            } }
        }
        h2 { "Pairing history" }
        div.table-wrap { table {
            tr { th { "Request" } th { "State" } th { "Fingerprint" } th { "From" } th { "Age" } th { "Decided by" } }
            @for r in &history {
                tr {
                    td { a href={ "/requests/" (r.id) } { (r.id.get(..8).unwrap_or_default()) } }
                    td { (state_tag(r.state.as_str())) @if r.flagged { " " span.tag.flag { "flagged" } } }
                    td.fp { (grouped(r.fingerprint.to_hex().get(..16).unwrap_or_default())) "…" }
                    td { (r.remote_address) }
                    td { (age(r.created_at, now)) }
                    td { (r.decided_by.as_deref().unwrap_or("")) }
                }
            }
        } }
    };
    (status, terminal_page(who, &t.serial, body)).into_response()
}

/// The step-up form: CSRF and a fresh TOTP.
#[derive(serde::Deserialize, Default)]
#[serde(default)]
pub struct StepUpForm {
    /// CSRF token.
    pub csrf: String,
    /// TOTP code.
    pub totp: Zeroizing<String>,
}

/// A terminal page's trust change: the signed-in operator (whose role
/// may change trust), the serial, and the change a fresh TOTP proves;
/// or the answer saying why not ("Not `what`: …", on the terminal's page).
pub(crate) async fn stepped_up(
    cas: &Cas,
    headers: &HeaderMap,
    serial: &str,
    form: &StepUpForm,
    what: &str,
) -> Result<(SignedIn, Serial, pairgate_store::TrustChange), Response> {
    let who = cas.signed_in_form(headers, &form.csrf).await?;
    may_change(&who)?;
    let Ok(parsed) = Serial::new(serial) else {
        return Err(super::refused(
            &who,
            StatusCode::NOT_FOUND,
            "Terminal",
            "No such terminal.",
        ));
    };
    let proven = cas
        .fresh_factor(&who, &form.totp)
        .await
        .and_then(|f| f.trust_change());
    match proven {
        Ok(trust) => Ok((who, parsed, trust)),
        Err(e) => {
            let Some((status, m)) = super::step_up_refusal(&e) else {
                return Err(super::internal(&e));
            };
            let note = Some((Flash::Error, format!("Not {what}: {m}")));
            Err(super::with_status(
                terminal_view(cas, &who, serial, note).await,
                status,
            ))
        }
    }
}

/// `POST /terminals/{serial}/unpair`: a fresh TOTP, then the store's
/// unpair (audited; the master drops the terminal at once).
pub async fn unpair(
    State(cas): State<Cas>,
    headers: HeaderMap,
    Path(serial): Path<String>,
    Form(form): Form<StepUpForm>,
) -> Response {
    let (who, parsed, trust) = match stepped_up(&cas, &headers, &serial, &form, "unpaired").await {
        Ok(proven) => proven,
        Err(r) => return r,
    };
    match cas.store.unpair(&parsed, &trust, cas.clock.now()).await {
        Ok(_) => terminal_view(&cas, &who, &serial, Some((Flash::Done, "Unpaired.".into()))).await,
        Err(e @ (StoreError::Invalid(_) | StoreError::Conflict(_) | StoreError::NotFound(_))) => {
            terminal_view(&cas, &who, &serial, Some((Flash::Error, e.to_string()))).await
        }
        Err(e) => super::internal(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_with_header_quotes_and_errors() {
        let rows = parse_import(
            b"serial,name,location\nATM-1,\"Lobby, north\",Main St\n\nATM-2\na,b,c,d,e,f\n",
        );
        assert_eq!(rows.len(), 3);
        let (row, first) = &rows[0];
        assert_eq!(*row, 2);
        let first = first.as_ref().unwrap();
        assert_eq!(
            (first.serial.as_str(), first.name.as_str()),
            ("ATM-1", "Lobby, north")
        );
        assert_eq!(rows[1].1.as_ref().unwrap().serial, "ATM-2");
        assert!(rows[2].1.is_err());
    }

    #[test]
    fn search_text_is_encoded_in_links() {
        assert_eq!(urlencode("a b&c=d"), "a%20b%26c%3Dd");
    }
}
