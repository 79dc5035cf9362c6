//! Where a benchmark's report goes: the `pairgate` binary prints text for
//! people or JSON for scripts, whichever was asked for.

use serde_json::Value;

/// A report's destination.
pub trait Output {
    /// Takes the report as text and as JSON.
    fn print(&self, text: &str, value: Value);
}
