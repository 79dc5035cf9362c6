//! Text for people, JSON for scripts: each command hands both forms to
//! [`Output`], which prints the one asked for.

use serde_json::Value;

/// Where command results go.
pub struct Output {
    json: bool,
}

impl Output {
    /// `json` selects JSON output.
    pub fn new(json: bool) -> Self {
        Self { json }
    }

    /// Whether JSON was asked for.
    pub fn is_json(&self) -> bool {
        self.json
    }

    /// Prints `text` for people or `value` for scripts.
    pub fn print(&self, text: impl AsRef<str>, value: Value) {
        if self.json {
            println!("{value}");
        } else {
            let text = text.as_ref();
            if text.ends_with('\n') {
                print!("{text}");
            } else {
                println!("{text}");
            }
        }
    }

    /// Prints an error with its causes.
    pub fn error(&self, error: &anyhow::Error) {
        if self.json {
            let value = serde_json::json!({ "error": { "message": format!("{error:#}") } });
            eprintln!("{value}");
        } else {
            eprintln!("error: {error:#}");
        }
    }
}
