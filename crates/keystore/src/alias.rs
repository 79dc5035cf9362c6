//! Key aliases: the names under which a store keeps a key and its
//! certificates. They end up as file keys, PKCS#11 labels and command-line
//! arguments, so they are restricted to a safe alphabet.

use std::fmt;
use std::str::FromStr;

use crate::KeyStoreError;

/// A validated alias: 1 to 64 characters of `A-Z a-z 0-9 . _ -`, not
/// starting with `.` or `-`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct Alias(String);

impl Alias {
    /// Validates `name` as an alias.
    pub fn new(name: &str) -> Result<Self, KeyStoreError> {
        let ok_len = (1..=64).contains(&name.len());
        let ok_chars = name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        let ok_start = !name.starts_with(['.', '-']);
        if ok_len && ok_chars && ok_start {
            Ok(Self(name.to_owned()))
        } else {
            Err(KeyStoreError::InvalidAlias(name.to_owned()))
        }
    }

    /// The alias text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Alias {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Alias {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl FromStr for Alias {
    type Err = KeyStoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        for good in ["terminal", "terminal_pub", "a", "k-1.v2"] {
            Alias::new(good).unwrap();
        }
        for bad in [
            "",
            ".hidden",
            "-x",
            "a/b",
            "a:b",
            "trust:x",
            "é",
            &"x".repeat(65),
        ] {
            assert!(Alias::new(bad).is_err(), "{bad}");
        }
    }
}
