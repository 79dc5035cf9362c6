//! Moving the server identity to a new machine (`pairgate admin identity
//! export` / `import`), so the new machine keeps the pin every terminal
//! holds. The export is one file encrypted in the `age` format under a
//! passphrase the operator chooses (scrypt): the identity's software key
//! store as it is on disk (its key still sealed under the store's own
//! passphrase) and that passphrase. A key in a PKCS#11 token never leaves
//! it: exporting one is refused, and the new machine is pointed at the
//! token instead. Importing fails closed: the target key store must hold
//! no key yet, and the key must be the one the file names.

use std::path::Path;

use age::secrecy::SecretString;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use pairgate_keystore::software::SoftwareKeyStore;
use pairgate_keystore::{KeyStore, KeyStoreUri, Passphrase};
use pairgate_pki::SpkiPin;
use zeroize::Zeroizing;

use crate::ServerError;

/// The format tag inside the encrypted file.
const FORMAT: &str = "pairgate-identity-export/1";

/// The decrypted content of an export.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Exported {
    format: String,
    /// The identity's pin (hex): what the import must find.
    pin: String,
    /// The software key store document, key sealed (base64).
    sealed_store: String,
    /// The key store's passphrase (base64).
    store_passphrase: String,
}

fn failed(why: impl std::fmt::Display) -> ServerError {
    ServerError::Identity(why.to_string())
}

fn secret(passphrase: &Passphrase) -> Result<SecretString, ServerError> {
    let text = passphrase
        .as_text()
        .ok_or_else(|| failed("the export passphrase must be text (UTF-8)"))?;
    Ok(SecretString::from(text.to_owned()))
}

/// Encrypts the identity of `keystore_uri` (a software store, unlocked by
/// `passphrase_file`) under `export_passphrase`; returns the file and the
/// identity's pin.
pub fn export(
    keystore_uri: &str,
    passphrase_file: &Path,
    export_passphrase: &Passphrase,
    recorded: Option<SpkiPin>,
) -> Result<(Vec<u8>, SpkiPin), ServerError> {
    let uri: KeyStoreUri = keystore_uri.parse()?;
    if let KeyStoreUri::Pkcs11(_) = uri {
        return Err(failed(
            "the identity's key is in a PKCS#11 token and never leaves it: give the new machine \
             the token (identity_keystore) instead of a file",
        ));
    }
    let store_passphrase = Passphrase::from_file(passphrase_file)?;
    let text = store_passphrase
        .as_text()
        .ok_or_else(|| failed("the identity passphrase file is not text"))?
        .to_owned();
    let store = pairgate_keystore::open(&uri, Some(store_passphrase), false)?;
    // After a rotation the identity is the key the store records.
    let alias = crate::identity::alias_for(store.as_ref(), recorded)?;
    let pin = store.public_key(&alias)?.pin();
    let sealed = store
        .sealed_copy()?
        .ok_or_else(|| failed("this key store cannot be copied"))?;
    let exported = Exported {
        format: FORMAT.into(),
        pin: pin.to_hex(),
        sealed_store: B64.encode(sealed),
        store_passphrase: B64.encode(text.as_bytes()),
    };
    let plaintext = Zeroizing::new(serde_json::to_vec(&exported).map_err(failed)?);
    Ok((seal(&plaintext, export_passphrase)?, pin))
}

/// Encrypts `plaintext` under `passphrase` (age, scrypt): identity exports
/// and the operator's offline recovery key.
pub fn seal(plaintext: &[u8], passphrase: &Passphrase) -> Result<Vec<u8>, ServerError> {
    let recipient = age::scrypt::Recipient::new(secret(passphrase)?);
    age::encrypt(&recipient, plaintext).map_err(failed)
}

/// Decrypts what [`seal`] made; `what` names it in errors.
pub fn unseal(
    encrypted: &[u8],
    passphrase: &Passphrase,
    what: &str,
) -> Result<Zeroizing<Vec<u8>>, ServerError> {
    let identity = age::scrypt::Identity::new(secret(passphrase)?);
    Ok(Zeroizing::new(age::decrypt(&identity, encrypted).map_err(
        |e| match e {
            age::DecryptError::DecryptionFailed
            | age::DecryptError::KeyDecryptionFailed
            | age::DecryptError::NoMatchingKeys => {
                failed(format!("wrong passphrase for this {what}"))
            }
            other => failed(format!("not a pairgate {what}: {other}")),
        },
    )?))
}

/// What an export holds, decrypted and checked.
pub struct Opened {
    /// The identity's pin.
    pub pin: SpkiPin,
    sealed: Zeroizing<Vec<u8>>,
    store_passphrase: Zeroizing<Vec<u8>>,
}

/// Decrypts an export with `export_passphrase`.
pub fn open(encrypted: &[u8], export_passphrase: &Passphrase) -> Result<Opened, ServerError> {
    let plaintext = unseal(encrypted, export_passphrase, "identity export")?;
    let exported: Exported =
        serde_json::from_slice(&plaintext).map_err(|_| failed("not a pairgate identity export"))?;
    if exported.format != FORMAT {
        return Err(failed(format!(
            "identity export format {:?}, expected {FORMAT}",
            exported.format
        )));
    }
    let damaged = |_| failed("the identity export is damaged");
    Ok(Opened {
        pin: exported
            .pin
            .parse()
            .map_err(|_| failed("the identity export is damaged"))?,
        sealed: Zeroizing::new(B64.decode(&exported.sealed_store).map_err(damaged)?),
        store_passphrase: Zeroizing::new(B64.decode(&exported.store_passphrase).map_err(damaged)?),
    })
}

/// Writes `opened` as the identity of `keystore_uri` (a `file:` store
/// directory, which must not exist yet) and its passphrase file (which
/// must not exist either); returns the pin, checked against the key
/// before anything is put in place.
pub fn import(
    opened: &Opened,
    keystore_uri: &str,
    passphrase_file: &Path,
) -> Result<SpkiPin, ServerError> {
    let KeyStoreUri::File(dir) = keystore_uri.parse()? else {
        return Err(failed(
            "an identity export is imported into a file: key store; a PKCS#11 token gets its key \
             by the HSM's own procedure",
        ));
    };
    if passphrase_file.exists() {
        return Err(failed(format!(
            "{} exists: this machine has an identity already; move it away first",
            passphrase_file.display()
        )));
    }
    if dir.exists() {
        return Err(failed(format!(
            "{} exists: this machine has an identity key store already; move it away first",
            dir.display()
        )));
    }
    // Restored beside its place and checked there, then moved in: a bad
    // export leaves nothing behind.
    let staging = dir.with_extension("importing");
    let _ = std::fs::remove_dir_all(&staging);
    let placed = stage(opened, &staging).and_then(|pin| {
        pairgate_keystore::write_atomic(passphrase_file, &opened.store_passphrase)
            .map_err(|e| failed(format!("writing {}: {e}", passphrase_file.display())))?;
        std::fs::rename(&staging, &dir).map_err(|e| {
            let _ = std::fs::remove_file(passphrase_file);
            failed(format!("moving the key store into {}: {e}", dir.display()))
        })?;
        Ok(pin)
    });
    if placed.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    placed
}

/// Restores the export's key store into `staging` and checks that its key
/// is the one the export names.
fn stage(opened: &Opened, staging: &Path) -> Result<SpkiPin, ServerError> {
    let passphrase = Passphrase::new(opened.store_passphrase.to_vec())?;
    let store = SoftwareKeyStore::restore(staging, &opened.sealed, passphrase)?;
    let held = store.aliases()?;
    if !held.iter().any(|e| e.public_key_pin == opened.pin) {
        let pins: Vec<String> = held.iter().map(|e| e.public_key_pin.to_hex()).collect();
        return Err(failed(format!(
            "the exported keys are {}, not the {} the export names",
            pins.join(", "),
            opened.pin
        )));
    }
    Ok(opened.pin)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// An export whose key is not the one it names is refused, and
    /// neither the key store nor the passphrase file is left behind.
    #[test]
    fn a_bad_export_leaves_nothing_behind() {
        let old = tempfile::tempdir().unwrap();
        let uri = format!("file:{}", old.path().join("identity").display());
        let pass = old.path().join("identity.passphrase");
        let now = std::time::SystemTime::now();
        let names = ["localhost".to_owned()];
        crate::identity::load(&uri, &pass, &names, now, crate::identity::Creating::Allowed)
            .unwrap();
        let secret = Passphrase::new(b"an export passphrase".to_vec()).unwrap();
        let (file, pin) = export(&uri, &pass, &secret, None).unwrap();
        let mut opened = open(&file, &secret).unwrap();
        assert_eq!(opened.pin, pin);
        opened.pin = SpkiPin::from_bytes([7; 32]);
        let new = tempfile::tempdir().unwrap();
        let new_uri = format!("file:{}", new.path().join("identity").display());
        let new_pass = new.path().join("identity.passphrase");
        let err = import(&opened, &new_uri, &new_pass).err().unwrap();
        assert!(err.to_string().contains("not the"), "{err}");
        assert!(!new.path().join("identity").exists());
        assert!(!new.path().join("identity.importing").exists());
        assert!(!new_pass.exists());
        // The right one goes in whole.
        opened.pin = pin;
        assert_eq!(import(&opened, &new_uri, &new_pass).unwrap(), pin);
        assert!(new_pass.exists() && new.path().join("identity").is_dir());
    }
}
