//! Stores for the tests: a software store with a cheap KDF in a temporary
//! directory, and a fresh SoftHSM2 token per test.

#[cfg(feature = "pkcs11")]
use std::path::PathBuf;

use pairgate_keystore::Passphrase;
#[cfg(feature = "pkcs11")]
use pairgate_keystore::Pkcs11Uri;
#[cfg(feature = "pkcs11")]
use pairgate_keystore::pkcs11::{Pkcs11KeyStore, provision_token};
use pairgate_keystore::software::{KdfParams, SoftwareKeyStore};
use pairgate_testkit::{TempDir, temp_dir};

/// Argon2id parameters cheap enough for many tests; the default ones are
/// exercised by the software-specific tests.
pub const CHEAP_KDF: KdfParams = KdfParams {
    memory_kib: 64,
    iterations: 1,
    parallelism: 1,
};

pub fn passphrase() -> Passphrase {
    Passphrase::new("correct horse battery staple").unwrap()
}

pub fn software_store() -> (SoftwareKeyStore, TempDir) {
    let dir = temp_dir();
    let store =
        SoftwareKeyStore::open_or_create_with(&dir.path().join("keys"), passphrase(), CHEAP_KDF)
            .unwrap();
    (store, dir)
}

#[cfg(feature = "pkcs11")]
pub fn pkcs11_module() -> PathBuf {
    assert!(
        std::env::var_os("SOFTHSM2_CONF").is_some(),
        "SOFTHSM2_CONF is not set: run the tests through scripts/test, which creates a throwaway SoftHSM2 token directory"
    );
    let module = std::env::var_os("PAIRGATE_TEST_PKCS11_MODULE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/softhsm/libsofthsm2.so"));
    assert!(
        module.exists(),
        "no PKCS#11 module at {} (apt-get install softhsm2)",
        module.display()
    );
    module
}

#[cfg(feature = "pkcs11")]
pub const USER_PIN: &str = "user-pin-4711";

#[cfg(feature = "pkcs11")]
/// A fresh token with a unique label, and the URI that opens it.
pub fn softhsm_uri() -> (Pkcs11Uri, TempDir) {
    let module = pkcs11_module();
    let mut random = [0u8; 8];
    aws_lc_rs::rand::fill(&mut random).unwrap();
    let label = format!("pg-{}", hex::encode(random));
    provision_token(&module, &label, "so-pin-0815", USER_PIN).unwrap();
    let dir = temp_dir();
    let pin = dir.path().join("pin");
    std::fs::write(&pin, format!("{USER_PIN}\n")).unwrap();
    let uri: Pkcs11Uri = format!(
        "pkcs11:token={label}?module-path={}&pin-source=file:{}",
        module.display(),
        pin.display()
    )
    .parse()
    .unwrap();
    (uri, dir)
}

#[cfg(feature = "pkcs11")]
pub fn softhsm_store() -> (Pkcs11KeyStore, TempDir) {
    let (uri, dir) = softhsm_uri();
    (Pkcs11KeyStore::open(&uri).unwrap(), dir)
}
