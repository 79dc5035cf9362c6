//! The page frame and the small pieces every CAS page uses: navigation by
//! role, the CSRF field, fingerprints in groups of four, times, flashes.
//! maud escapes every value it interpolates, so text from terminals,
//! operators or the database cannot become markup.

use maud::{DOCTYPE, Markup, html};
use pairgate_store::{Operator, Role};

/// The form field name of the CSRF token.
pub const CSRF_FIELD: &str = "csrf";

/// Who is looking, for the frame.
pub struct Viewer<'a> {
    /// The operator.
    pub operator: &'a Operator,
    /// The session's CSRF token (for the logout form).
    pub csrf: &'a str,
}

/// A whole page.
pub fn page(title: &str, viewer: Option<&Viewer<'_>>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · pairgate CAS" }
                link rel="stylesheet" href="/static/cas.css";
            }
            body {
                header {
                    a.brand href="/" { "pairgate" }
                    @if let Some(v) = viewer {
                        nav {
                            a href="/" { "Dashboard" }
                            a href="/terminals" { "Terminals" }
                            a href="/requests" { "Pairing requests" }
                            a href="/blocked-keys" { "Blocked keys" }
                            a href="/vendors" { "Vendors" }
                            a href="/vpn" { "VPN" }
                            a href="/audit" { "Audit log" }
                            @if v.operator.role == Role::Admin {
                                a href="/operators" { "Operators" }
                            }
                            a href="/tokens" { "API tokens" }
                        }
                        form.logout method="post" action="/logout" {
                            (csrf_field(v.csrf))
                            span.who { (v.operator.username) " (" (v.operator.role.as_str()) ")" }
                            button type="submit" { "Log out" }
                        }
                    }
                }
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// The hidden CSRF field of a form.
pub fn csrf_field(token: &str) -> Markup {
    html! { input type="hidden" name=(CSRF_FIELD) value=(token); }
}

/// An error or success line.
pub fn flash(kind: Flash, text: &str) -> Markup {
    let class = match kind {
        Flash::Error => "flash error",
        Flash::Done => "flash done",
    };
    html! { p class=(class) role=(if kind == Flash::Error { "alert" } else { "status" }) { (text) } }
}

/// What a flash line says.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Flash {
    /// Something was refused.
    Error,
    /// Something was done.
    Done,
}

/// A hex fingerprint in groups of four, as on the terminal's screen.
pub fn grouped(hex: &str) -> String {
    hex.as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A Unix-ms time as UTC text.
pub fn when(millis: Option<i64>) -> String {
    millis.map_or_else(|| "never".to_owned(), crate::http::rfc3339)
}

/// How long ago, roughly.
pub fn age(millis: i64, now: i64) -> String {
    let seconds = (now - millis).max(0) / 1000;
    match seconds {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} days", s / 86_400),
    }
}

/// The style sheet, served at `/static/cas.css` (a file, so the content
/// security policy can forbid inline styles).
pub const STYLE: &str = r#"
:root { --fg: #1b1f24; --muted: #5b6570; --line: #d6dbe0; --accent: #0b5cad; --bad: #b3261e; --good: #1e7b34; --bg: #f6f8fa; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: var(--bg); }
header { display: flex; flex-wrap: wrap; gap: .5rem 1.25rem; align-items: center; padding: .6rem 1rem; background: #fff; border-bottom: 1px solid var(--line); }
header .brand { font-weight: 700; color: var(--fg); text-decoration: none; }
nav { display: flex; flex-wrap: wrap; gap: .25rem 1rem; flex: 1; }
nav a { color: var(--accent); text-decoration: none; }
form.logout { display: flex; gap: .5rem; align-items: center; margin: 0; }
.who { color: var(--muted); }
main { max-width: 72rem; margin: 0 auto; padding: 1rem; }
h1 { font-size: 1.4rem; margin: .5rem 0 1rem; }
h2 { font-size: 1.1rem; margin: 1.5rem 0 .5rem; }
table { width: 100%; border-collapse: collapse; background: #fff; border: 1px solid var(--line); }
th, td { text-align: left; padding: .45rem .6rem; border-bottom: 1px solid var(--line); vertical-align: top; }
th { background: #eef1f4; font-weight: 600; }
.table-wrap { overflow-x: auto; }
form.stack { display: grid; gap: .6rem; max-width: 28rem; background: #fff; padding: 1rem; border: 1px solid var(--line); }
form.inline { display: flex; flex-wrap: wrap; gap: .5rem; align-items: end; margin: .5rem 0; }
label { display: grid; gap: .2rem; font-weight: 600; }
input, select, textarea { font: inherit; padding: .4rem .5rem; border: 1px solid #aab3bc; border-radius: 4px; background: #fff; }
button { font: inherit; padding: .4rem .9rem; border: 0; border-radius: 4px; background: var(--accent); color: #fff; cursor: pointer; }
button.danger { background: var(--bad); }
button.quiet { background: #5b6570; }
.flash { padding: .6rem .8rem; border-radius: 4px; }
.flash.error { background: #fde8e7; color: var(--bad); }
.flash.done { background: #e5f4e8; color: var(--good); }
.fp { font-family: ui-monospace, "SFMono-Regular", Menlo, monospace; word-spacing: .2em; }
.code { font-family: ui-monospace, monospace; font-size: 1.1rem; }
.tag { display: inline-block; padding: 0 .4rem; border-radius: 3px; font-size: .85em; background: #eef1f4; }
.tag.flag { background: #fff1cc; color: #7a5200; }
.tag.state-paired, .tag.state-approved { background: #e5f4e8; color: var(--good); }
.tag.state-pending, .tag.state-awaiting_reveal { background: #e6effa; color: var(--accent); }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(10rem, 1fr)); gap: .75rem; }
.card { background: #fff; border: 1px solid var(--line); padding: .8rem; }
.card .n { font-size: 1.8rem; font-weight: 700; }
.muted { color: var(--muted); }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .3rem 1rem; background: #fff; border: 1px solid var(--line); padding: 1rem; }
dl.facts dt { font-weight: 600; }
dl.facts dd { margin: 0; overflow-wrap: anywhere; }
.qr svg { width: 14rem; height: 14rem; background: #fff; }
.pager { display: flex; gap: 1rem; margin: .75rem 0; }
.tag.state-suspended { background: #fde8e7; color: var(--bad); }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(22rem, 1fr)); gap: .75rem; }
figure.chart { margin: 0; background: #fff; border: 1px solid var(--line); padding: .6rem .8rem; }
figure.chart figcaption { font-weight: 600; margin-bottom: .4rem; }
figure.chart svg { width: 100%; height: auto; }
.chart-bar { fill: #9cc2ea; }
.chart-bar-auto { fill: var(--accent); }
.chart-axis { stroke: var(--line); }
.chart-label, .chart-value { font-size: 13px; fill: var(--muted); }
.legend-req { color: #9cc2ea; font-weight: 400; }
.legend-auto { color: var(--accent); font-weight: 400; }
@media (max-width: 40rem) { th, td { padding: .35rem; } dl.facts { grid-template-columns: 1fr; } }
"#;
