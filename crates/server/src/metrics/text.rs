//! The Prometheus text exposition format (version 0.0.4): `# HELP` and
//! `# TYPE` lines, then one sample per line with escaped label values.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use super::{BUCKETS, Histogram};

/// A metrics page being written.
#[derive(Debug, Default)]
pub(crate) struct Text(String);

/// Writes `value` as a label value: backslash, quote and newline escaped.
fn escaped(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

impl Text {
    /// The `# HELP` and `# TYPE` lines of a metric.
    pub(crate) fn help(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    /// A gauge without labels: its `# HELP`, `# TYPE` and one sample.
    pub(crate) fn gauge(&mut self, name: &str, help: &str, value: f64) {
        self.help(name, "gauge", help);
        self.sample(name, &[], value);
    }

    /// One sample.
    pub(crate) fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (key, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                self.0.push_str(key);
                self.0.push_str("=\"");
                escaped(&mut self.0, value);
                self.0.push('"');
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }

    /// A histogram's cumulative buckets, sum and count.
    pub(crate) fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &Histogram) {
        let bucket = format!("{name}_bucket");
        let mut cumulative = 0u64;
        for (upper, count) in BUCKETS.iter().zip(&h.buckets) {
            cumulative += count.load(Ordering::Relaxed);
            let le = upper.to_string();
            let mut with_le = labels.to_vec();
            with_le.push(("le", &le));
            self.sample(&bucket, &with_le, cumulative as f64);
        }
        let count = h.count.load(Ordering::Relaxed);
        let mut with_le = labels.to_vec();
        with_le.push(("le", "+Inf"));
        self.sample(&bucket, &with_le, count as f64);
        let sum = h.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        self.sample(&format!("{name}_sum"), labels, sum);
        self.sample(&format!("{name}_count"), labels, count as f64);
    }

    /// The page.
    pub(crate) fn finish(self) -> String {
        self.0
    }
}
