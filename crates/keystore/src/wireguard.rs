//! WireGuard keys (issue 19): an X25519 key made on the machine that uses
//! it, kept in a file of mode 0600 that only this module writes, since
//! wg-quick and wireguard-go take the key as text. Only the public key is
//! meant to travel; the private key is read back only to write it into
//! the local wg-quick configuration (also 0600).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use crate::KeyStoreError;

/// A WireGuard key pair held in a file.
pub struct WireGuardKey {
    secret: StaticSecret,
}

impl std::fmt::Debug for WireGuardKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WireGuardKey")
            .field("public", &self.public_base64())
            .finish_non_exhaustive()
    }
}

impl WireGuardKey {
    /// Makes a key and writes it to `path` (0600); refused when the file
    /// exists, so a key is never replaced by accident.
    pub fn generate(path: &Path) -> Result<Self, KeyStoreError> {
        if path.exists() {
            return Err(KeyStoreError::WireGuard(format!(
                "{} exists: a WireGuard key is there already",
                path.display()
            )));
        }
        let mut bytes = Zeroizing::new([0u8; 32]);
        aws_lc_rs::rand::fill(bytes.as_mut())
            .map_err(|_| KeyStoreError::Crypto("the system random generator failed"))?;
        let secret = StaticSecret::from(*bytes);
        let text = Zeroizing::new(format!("{}\n", STANDARD.encode(secret.to_bytes())));
        crate::write_atomic(path, text.as_bytes())?;
        Ok(Self { secret })
    }

    /// The key in `path`; refused when others may read the file or it
    /// does not hold a key.
    pub fn load(path: &Path) -> Result<Self, KeyStoreError> {
        let meta = std::fs::metadata(path).map_err(|e| KeyStoreError::io("reading", path, e))?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(KeyStoreError::WireGuard(format!(
                "{} may be read by others (mode {:o}): chmod 600 it",
                path.display(),
                meta.permissions().mode() & 0o777
            )));
        }
        let text = Zeroizing::new(
            std::fs::read_to_string(path).map_err(|e| KeyStoreError::io("reading", path, e))?,
        );
        let bytes = Zeroizing::new(
            STANDARD
                .decode(text.trim())
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
                .ok_or_else(|| {
                    KeyStoreError::WireGuard(format!("{} holds no WireGuard key", path.display()))
                })?,
        );
        Ok(Self {
            secret: StaticSecret::from(*bytes),
        })
    }

    /// The public key, base64: what the server is told.
    pub fn public_base64(&self) -> String {
        STANDARD.encode(PublicKey::from(&self.secret).as_bytes())
    }

    /// The private key, base64, for the local wg-quick file only.
    pub fn private_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(STANDARD.encode(self.secret.to_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_made_once_kept_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wg.key");
        let made = WireGuardKey::generate(&path).unwrap();
        assert!(WireGuardKey::generate(&path).is_err(), "never replaced");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let read = WireGuardKey::load(&path).unwrap();
        assert_eq!(read.public_base64(), made.public_base64());
        assert_ne!(read.public_base64(), *read.private_base64());
        assert!(!format!("{read:?}").contains(read.private_base64().as_str()));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(WireGuardKey::load(&path).is_err(), "readable by others");
        std::fs::write(dir.path().join("bad"), "nope").unwrap();
        std::fs::set_permissions(
            dir.path().join("bad"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        assert!(WireGuardKey::load(&dir.path().join("bad")).is_err());
    }
}
