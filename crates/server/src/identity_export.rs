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
use pairgate_keystore::{Alias, KeyStore, KeyStoreUri, Passphrase};
use pairgate_pki::SpkiPin;
use zeroize::Zeroizing;

use crate::ServerError;
use crate::identity::SERVER_ALIAS;

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
    let pin = store.public_key(&Alias::new(SERVER_ALIAS)?)?.pin();
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
    let recipient = age::scrypt::Recipient::new(secret(export_passphrase)?);
    let encrypted = age::encrypt(&recipient, &plaintext).map_err(failed)?;
    Ok((encrypted, pin))
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
    let identity = age::scrypt::Identity::new(secret(export_passphrase)?);
    let plaintext = Zeroizing::new(age::decrypt(&identity, encrypted).map_err(|e| match e {
        age::DecryptError::DecryptionFailed
        | age::DecryptError::KeyDecryptionFailed
        | age::DecryptError::NoMatchingKeys => failed("wrong passphrase for this identity export"),
        other => failed(format!("not a pairgate identity export: {other}")),
    })?);
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
/// holding no key yet) and its passphrase file (which must not exist);
/// returns the pin, checked against the key.
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
    let passphrase = Passphrase::new(opened.store_passphrase.to_vec())?;
    let store = SoftwareKeyStore::restore(&dir, &opened.sealed, passphrase)?;
    let pin = store.public_key(&Alias::new(SERVER_ALIAS)?)?.pin();
    if pin != opened.pin {
        return Err(failed(format!(
            "the exported key is {pin}, not the {} the export names",
            opened.pin
        )));
    }
    pairgate_keystore::write_atomic(passphrase_file, &opened.store_passphrase)
        .map_err(|e| failed(format!("writing {}: {e}", passphrase_file.display())))?;
    Ok(pin)
}
