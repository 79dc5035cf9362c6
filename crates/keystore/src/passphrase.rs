//! The secret that unlocks a software key store (or a restore point). It
//! comes from an environment variable or a file, never from a command-line
//! argument where other users could read it, and its `Debug` is redacted.

use std::fmt;
use std::path::Path;

use zeroize::Zeroizing;

use crate::KeyStoreError;

/// A passphrase or key-file content, wiped from memory on drop.
#[derive(Clone)]
pub struct Passphrase(Zeroizing<Vec<u8>>);

impl Passphrase {
    /// Wraps bytes; refused when empty.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, KeyStoreError> {
        let bytes = Zeroizing::new(bytes.into());
        if bytes.is_empty() {
            return Err(KeyStoreError::EmptyPassphrase);
        }
        Ok(Self(bytes))
    }

    /// Reads a passphrase or key file; one trailing newline is dropped.
    pub fn from_file(path: &Path) -> Result<Self, KeyStoreError> {
        let mut bytes = Zeroizing::new(
            std::fs::read(path)
                .map_err(|e| KeyStoreError::io("reading passphrase file", path, e))?,
        );
        let len = bytes.len();
        if bytes.ends_with(b"\r\n") {
            bytes.truncate(len - 2);
        } else if bytes.ends_with(b"\n") {
            bytes.truncate(len - 1);
        }
        Self::new(bytes.to_vec())
    }

    /// Reads the environment variable `name`, if set.
    pub fn from_env(name: &str) -> Result<Option<Self>, KeyStoreError> {
        match std::env::var_os(name) {
            None => Ok(None),
            Some(value) => Self::new(value.into_encoded_bytes()).map(Some),
        }
    }

    /// The passphrase as text, for formats that take text (age restore
    /// points); `None` when it is not UTF-8.
    pub fn as_text(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }

    pub(crate) fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacted_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p");
        std::fs::write(&path, "s3cret\n").unwrap();
        let p = Passphrase::from_file(&path).unwrap();
        assert_eq!(p.expose(), b"s3cret");
        assert_eq!(format!("{p:?}"), "Passphrase(<redacted>)");
        std::fs::write(&path, "\n").unwrap();
        assert!(matches!(
            Passphrase::from_file(&path),
            Err(KeyStoreError::EmptyPassphrase)
        ));
    }
}
