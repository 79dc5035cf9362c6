//! Charts drawn on the server as inline SVG: no script, no inline style
//! (colours are presentation attributes and classes from `cas.css`), so
//! they live under CAS's content security policy as they are.

use maud::{Markup, html};
use pairgate_store::DayActivity;

/// Chart width in SVG units (the page scales it).
const WIDTH: i64 = 420;
/// Height of one horizontal bar and its gap.
const ROW: i64 = 22;
/// Room for labels left of the bars.
const LABEL: i64 = 110;

fn scale(value: i64, max: i64, span: i64) -> i64 {
    if max <= 0 {
        0
    } else {
        value.saturating_mul(span) / max
    }
}

/// Horizontal bars, one per `(label, value)`.
pub fn bars(title: &str, id: &str, rows: &[(String, i64)]) -> Markup {
    let max = rows.iter().map(|(_, v)| *v).max().unwrap_or(0);
    let height = ROW * i64::try_from(rows.len()).unwrap_or(0) + 4;
    let span = WIDTH - LABEL - 50;
    html! {
        figure.chart id=(id) {
            figcaption { (title) }
            @if rows.is_empty() { p.muted { "No data yet." } } @else {
                svg xmlns="http://www.w3.org/2000/svg" viewBox={ "0 0 " (WIDTH) " " (height) } role="img" aria-label=(title) {
                    @for (i, (label, value)) in rows.iter().enumerate() {
                        @let y = ROW * i64::try_from(i).unwrap_or(0);
                        text x=(LABEL - 6) y=(y + 15) text-anchor="end" class="chart-label" { (label) }
                        rect x=(LABEL) y=(y + 3) width=(scale(*value, max, span).max(1)) height=(ROW - 6) class="chart-bar" {}
                        text x=(LABEL + scale(*value, max, span) + 6) y=(y + 15) class="chart-value" { (value) }
                    }
                }
            }
        }
    }
}

/// Pairing requests per day, with the part approved by a rule.
pub fn days(title: &str, id: &str, days: &[DayActivity]) -> Markup {
    let max = days.iter().map(|d| d.requests).max().unwrap_or(0);
    let chart = 160;
    let columns = i64::try_from(days.len()).unwrap_or(1).max(1);
    let step = WIDTH / columns;
    html! {
        figure.chart id=(id) {
            figcaption { (title) " " span.legend-req { "■ requests" } " " span.legend-auto { "■ approved by rule" } }
            svg xmlns="http://www.w3.org/2000/svg" viewBox={ "0 0 " (WIDTH) " " (chart + 36) } role="img" aria-label=(title) {
                line x1="0" y1=(chart) x2=(WIDTH) y2=(chart) class="chart-axis" {}
                @for (i, d) in days.iter().enumerate() {
                    @let x = step * i64::try_from(i).unwrap_or(0) + 4;
                    @let h = scale(d.requests, max, chart - 16);
                    @let a = scale(d.auto_approved, max, chart - 16);
                    rect x=(x) y=(chart - h) width=(step - 8) height=(h) class="chart-bar" {
                        title { (crate::http::rfc3339(d.start).get(..10).unwrap_or_default()) ": " (d.requests) " requests, " (d.auto_approved) " by rule" }
                    }
                    rect x=(x) y=(chart - a) width=(step - 8) height=(a) class="chart-bar-auto" {}
                    @if d.requests > 0 {
                        text x=(x + (step - 8) / 2) y=(chart - h - 3) text-anchor="middle" class="chart-value" { (d.requests) }
                    }
                    // Day of the month, every other day (the full date is in the bar's title).
                    @if (days.len() - 1 - i).is_multiple_of(2) {
                        text x=(x + (step - 8) / 2) y=(chart + 14) text-anchor="middle" class="chart-label" {
                            (crate::http::rfc3339(d.start).get(8..10).unwrap_or_default())
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_largest_and_escape_labels() {
        let svg = bars("t", "c", &[("<b>".into(), 10), ("x".into(), 5)]).into_string();
        assert!(svg.contains("&lt;b&gt;"), "{svg}");
        assert!(svg.contains(r#"width="260""#), "{svg}");
        assert!(svg.contains(r#"width="130""#), "{svg}");
        assert!(!svg.contains("style="), "{svg}");
        assert!(bars("t", "c", &[]).into_string().contains("No data yet"));
    }
}
