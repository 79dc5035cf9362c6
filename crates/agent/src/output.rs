//! Text for people, JSON for scripts: each command hands both forms to
//! [`Output`], which prints the one asked for.

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
    pub fn print(&self, text: impl AsRef<str>, value: impl serde::Serialize) {
        if self.json {
            match serde_json::to_string(&value) {
                Ok(json) => println!("{json}"),
                Err(e) => eprintln!("error: writing JSON: {e}"),
            }
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
        let message = message(error);
        if self.json {
            let value = serde_json::json!({ "error": { "message": message } });
            eprintln!("{value}");
        } else {
            eprintln!("error: {message}");
        }
    }
}

/// The error and its causes, each said once: many errors print their
/// source in their own message as well as exposing it as the source.
fn message(error: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn each_reason_is_said_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let inner = anyhow::Error::new(io).context("reading f: no such file");
        let outer = inner.context("server identity: reading f: no such file");
        assert_eq!(
            super::message(&outer),
            "server identity: reading f: no such file"
        );
        let plain = anyhow::anyhow!("low").context("high");
        assert_eq!(super::message(&plain), "high: low");
    }
}
