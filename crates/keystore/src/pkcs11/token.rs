//! Reaching a token: loading and initialising a PKCS#11 module once per
//! process, finding the slot a URI names, reading the user PIN, and
//! provisioning a fresh token.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::session::UserType;
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;

use super::{MODULE_ENV, PIN_FILE_ENV, ck};
use crate::{KeyStoreError, Pkcs11Uri};

/// Loaded and initialised modules, by path. C_Initialize may run only once
/// per module per process, so every store on a module shares its context.
pub(super) fn module(path: &Path) -> Result<Pkcs11, KeyStoreError> {
    static MODULES: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    let mut modules = MODULES
        .get_or_init(|| Mutex::new(HashMap::new()))
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(ctx) = modules.get(path) {
        return Ok(ctx.clone());
    }
    let ctx = Pkcs11::new(path)
        .map_err(|e| KeyStoreError::Pkcs11(format!("loading module {}: {e}", path.display())))?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => {
            return Err(KeyStoreError::Pkcs11(format!(
                "initialising {}: {e}",
                path.display()
            )));
        }
    }
    modules.insert(path.to_path_buf(), ctx.clone());
    Ok(ctx)
}

pub(super) fn module_path(uri: &Pkcs11Uri) -> Result<PathBuf, KeyStoreError> {
    uri.module_path
        .clone()
        .or_else(|| std::env::var_os(MODULE_ENV).map(PathBuf::from))
        .ok_or_else(|| KeyStoreError::InvalidUri {
            uri: uri.to_string(),
            reason: format!("no module: add ?module-path=… or set {MODULE_ENV}"),
        })
}

/// The file holding the user PIN: the URI's `pin-source`, else the
/// environment's.
fn pin_file(uri: &Pkcs11Uri) -> Result<PathBuf, KeyStoreError> {
    uri.pin_source
        .clone()
        .or_else(|| std::env::var_os(PIN_FILE_ENV).map(PathBuf::from))
        .ok_or_else(|| KeyStoreError::InvalidUri {
            uri: uri.to_string(),
            reason: format!("no PIN: add pin-source=file:PATH or set {PIN_FILE_ENV}"),
        })
}

pub(super) fn read_pin(uri: &Pkcs11Uri) -> Result<AuthPin, KeyStoreError> {
    let path = pin_file(uri)?;
    let passphrase = crate::Passphrase::from_file(&path)?;
    let pin = std::str::from_utf8(passphrase.expose()).map_err(|_| {
        KeyStoreError::Pkcs11(format!("the PIN in {} is not UTF-8", path.display()))
    })?;
    Ok(AuthPin::new(pin.into()))
}

pub(super) fn find_slot(ctx: &Pkcs11, uri: &Pkcs11Uri) -> Result<Slot, KeyStoreError> {
    let mut labels = Vec::new();
    let mut unreadable = 0usize;
    // Slots with a token, read one by one: a token that cannot be read (on
    // SoftHSM2, one that another process is creating or deleting in the
    // shared token directory) must not hide the token we are looking for.
    for slot in ctx.get_slots_with_token().map_err(ck("listing slots"))? {
        let Ok(info) = ctx.get_token_info(slot) else {
            unreadable += 1;
            continue;
        };
        if !info.token_initialized() {
            continue;
        }
        let label = info.label().trim_end().to_owned();
        let matches = label == uri.token
            && uri
                .manufacturer
                .as_deref()
                .is_none_or(|m| info.manufacturer_id().trim_end() == m)
            && uri
                .model
                .as_deref()
                .is_none_or(|m| info.model().trim_end() == m)
            && uri
                .serial
                .as_deref()
                .is_none_or(|s| info.serial_number().trim_end() == s);
        if matches {
            return Ok(slot);
        }
        labels.push(label);
    }
    Err(KeyStoreError::Pkcs11(format!(
        "no token labelled {:?} (tokens present: {}{})",
        uri.token,
        if labels.is_empty() {
            "none".to_owned()
        } else {
            labels.join(", ")
        },
        if unreadable > 0 {
            format!("; {unreadable} unreadable")
        } else {
            String::new()
        }
    )))
}

/// Initialises a fresh token in the module's first free slot and sets its
/// user PIN: provisioning for a new terminal, and per-test tokens.
pub fn provision_token(
    module_path: &Path,
    label: &str,
    so_pin: &str,
    user_pin: &str,
) -> Result<(), KeyStoreError> {
    static PROVISIONING: Mutex<()> = Mutex::new(());
    let _guard = PROVISIONING.lock().unwrap_or_else(|p| p.into_inner());
    let ctx = module(module_path)?;
    let mut free = None;
    for slot in ctx.get_slots_with_token().map_err(ck("listing slots"))? {
        let Ok(info) = ctx.get_token_info(slot) else {
            continue;
        };
        if info.label().trim_end() == label && info.token_initialized() {
            return Err(KeyStoreError::Pkcs11(format!(
                "a token labelled {label:?} already exists"
            )));
        }
        if !info.token_initialized() && free.is_none() {
            free = Some(slot);
        }
    }
    let slot =
        free.ok_or_else(|| KeyStoreError::Pkcs11("no free slot to initialise a token in".into()))?;
    let so_pin = AuthPin::new(so_pin.into());
    ctx.init_token(slot, &so_pin, label)
        .map_err(ck("initialising the token"))?;
    let session = ctx.open_rw_session(slot).map_err(ck("opening a session"))?;
    session
        .login(UserType::So, Some(&so_pin))
        .map_err(ck("security officer login"))?;
    session
        .init_pin(&AuthPin::new(user_pin.into()))
        .map_err(ck("setting the user PIN"))?;
    session.logout().map_err(ck("logging out"))?;
    Ok(())
}

/// Escapes a token field for a pkcs11-helper serialized id: every byte
/// but letters and digits as `\xNN`, which its reader takes for any
/// byte (so `/`, the separator, never appears inside a field).
fn helper_field(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' => char::from(*b).to_string(),
            other => format!("\\x{other:02X}"),
        })
        .collect()
}

/// How another program names the certificate with `CKA_ID` `id` on the
/// token in `slot`.
pub(super) fn reference(
    ctx: &Pkcs11,
    slot: Slot,
    uri: &Pkcs11Uri,
    id: &[u8],
) -> Result<crate::Pkcs11Reference, KeyStoreError> {
    let info = ctx
        .get_token_info(slot)
        .map_err(super::ck("reading the token's information"))?;
    let pin_file = pin_file(uri)?;
    // pkcs11-helper's serialized id (what `openvpn --show-pkcs11-ids`
    // prints): manufacturer/model/serial/label/CKA_ID in hex. Its reader
    // of RFC 7512 URIs refuses CKA_IDs such as ours.
    let serialized_id = format!(
        "{}/{}/{}/{}/{}",
        helper_field(info.manufacturer_id().trim_end().as_bytes()),
        helper_field(info.model().trim_end().as_bytes()),
        helper_field(info.serial_number().trim_end().as_bytes()),
        helper_field(info.label().trim_end().as_bytes()),
        hex::encode_upper(id),
    );
    Ok(crate::Pkcs11Reference {
        module: module_path(uri)?,
        serialized_id,
        token_label: info.label().trim_end().to_owned(),
        pin_file,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn helper_fields_escape_all_but_letters_and_digits() {
        assert_eq!(
            super::helper_field(b"SoftHSM project"),
            "SoftHSM\\x20project"
        );
        assert_eq!(super::helper_field(b"a/b-c"), "a\\x2Fb\\x2Dc");
    }
}
