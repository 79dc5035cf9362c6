//! Key stores for terminal (and server) identities. A key is generated
//! inside a store under an alias and never leaves it: callers get its
//! public key and ask the store to sign. Each alias also holds the
//! certificate chain for its key, and the store keeps a trust store of
//! server and CA certificates that passed the firmware-root rule.
//!
//! Two backends implement [`KeyStore`]: [`software::SoftwareKeyStore`], a
//! directory with private keys encrypted under a passphrase, and
//! [`pkcs11::Pkcs11KeyStore`], a PKCS#11 token (an HSM; SoftHSM2 in tests).
//! Stores are named by URI ([`KeyStoreUri`]): `file:/path` or RFC 7512
//! `pkcs11:token=…`.

#![forbid(unsafe_code)]

mod alias;
mod error;
mod operations;
mod passphrase;
#[cfg(feature = "pkcs11")]
pub mod pkcs11;
mod public_key;
mod signer;
pub mod software;
mod uri;
pub mod wireguard;

use std::fmt;

use pairgate_pki::{
    CertificateFingerprint, KeyAlgorithm, SignatureScheme, SpkiPin, TrustedCertificate,
};
use rustls_pki_types::CertificateDer;

pub use alias::Alias;
pub use error::KeyStoreError;
pub use operations::{
    add_trusted_certificate, certificate_request, import_certificate_chain,
    self_signed_certificate, self_signed_server_certificate, terminal_fingerprint,
};
pub use passphrase::Passphrase;
pub use public_key::PublicKeyInfo;
pub use signer::StoreSigner;
pub use software::atomic::write_atomic;
pub use uri::{KeyStoreUri, Pkcs11Uri};

/// What a store lists for one alias.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AliasEntry {
    /// The alias.
    pub alias: Alias,
    /// Its key's algorithm.
    pub algorithm: KeyAlgorithm,
    /// Pin of its public key.
    pub public_key_pin: SpkiPin,
    /// Fingerprint of its leaf certificate, when one is set.
    pub certificate: Option<CertificateFingerprint>,
}

/// A store of non-exportable keys, their certificate chains, and a trust
/// store. Implementations are safe to share between threads; every
/// mutation is all-or-nothing.
pub trait KeyStore: Send + Sync + fmt::Debug {
    /// A description for messages and logs, without secrets.
    fn describe(&self) -> String;

    /// Generates a key under `alias` inside the store. Refused when the
    /// alias already holds a key.
    fn generate_key(
        &self,
        alias: &Alias,
        algorithm: KeyAlgorithm,
    ) -> Result<PublicKeyInfo, KeyStoreError>;

    /// The public key of `alias`.
    fn public_key(&self, alias: &Alias) -> Result<PublicKeyInfo, KeyStoreError>;

    /// Signs `message` with the key of `alias`. ECDSA signatures are DER.
    fn sign(
        &self,
        alias: &Alias,
        scheme: SignatureScheme,
        message: &[u8],
    ) -> Result<Vec<u8>, KeyStoreError>;

    /// Sets the certificate chain of `alias`, leaf first. Refused unless
    /// the leaf's public key is the alias's key.
    fn set_certificate_chain(
        &self,
        alias: &Alias,
        chain: &[CertificateDer<'static>],
    ) -> Result<(), KeyStoreError>;

    /// The certificate chain of `alias`, leaf first; empty when none is set.
    fn certificate_chain(
        &self,
        alias: &Alias,
    ) -> Result<Vec<CertificateDer<'static>>, KeyStoreError>;

    /// Every alias holding a key, sorted by name.
    fn aliases(&self) -> Result<Vec<AliasEntry>, KeyStoreError>;

    /// Deletes the key and certificates of `alias`.
    fn delete(&self, alias: &Alias) -> Result<(), KeyStoreError>;

    /// Adds a certificate that passed the firmware-root rule to the trust
    /// store. Adding one that is already there changes nothing.
    fn add_trusted(&self, certificate: &TrustedCertificate) -> Result<(), KeyStoreError>;

    /// The trust store's certificates.
    fn trusted(&self) -> Result<Vec<CertificateDer<'static>>, KeyStoreError>;

    /// Removes a trust-store certificate by fingerprint.
    fn remove_trusted(&self, fingerprint: &CertificateFingerprint) -> Result<(), KeyStoreError>;

    /// Wipes every key, certificate and trust-store entry. Firmware roots
    /// are not in the store and so survive.
    fn factory_reset(&self) -> Result<(), KeyStoreError>;

    /// A copy of the whole store for a restore point, every private key
    /// still sealed under the store's own passphrase (so a restore needs
    /// that passphrase too); `None` when keys cannot leave the store, as
    /// with a PKCS#11 token.
    fn sealed_copy(&self) -> Result<Option<Vec<u8>>, KeyStoreError>;

    /// Whether signing goes to hardware and may block for a while, so that
    /// async callers move it off their executor's worker.
    fn is_hardware(&self) -> bool {
        false
    }

    /// Where another program (OpenVPN) finds `alias`'s key and leaf
    /// certificate through PKCS#11, the key staying on the token; `None`
    /// for a store no other program can reach.
    fn pkcs11_reference(&self, alias: &Alias) -> Result<Option<Pkcs11Reference>, KeyStoreError> {
        let _ = alias;
        Ok(None)
    }
}

/// A key on a PKCS#11 token, as another program names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pkcs11Reference {
    /// The module (`pkcs11-providers`).
    pub module: std::path::PathBuf,
    /// The certificate as pkcs11-helper serializes it (OpenVPN's
    /// `pkcs11-id`): token manufacturer, model, serial and label, and the
    /// `CKA_ID` the key shares with it.
    pub serialized_id: String,
    /// The token's label, as the program's PIN prompt names it.
    pub token_label: String,
    /// The file holding the user PIN.
    pub pin_file: std::path::PathBuf,
}

impl Pkcs11Reference {
    /// The user PIN, for the program that logs in to the same token (as
    /// OpenVPN asks for it over its management socket).
    pub fn pin(&self) -> Result<zeroize::Zeroizing<String>, KeyStoreError> {
        let secret = Passphrase::from_file(&self.pin_file)?;
        let text = std::str::from_utf8(secret.expose()).map_err(|_| {
            KeyStoreError::Pkcs11(format!(
                "the PIN in {} is not UTF-8",
                self.pin_file.display()
            ))
        })?;
        Ok(zeroize::Zeroizing::new(text.to_owned()))
    }
}

/// Opens the store a URI names. A software store needs `passphrase`; when
/// `create` is set and no software store exists yet, one is created.
pub fn open(
    uri: &KeyStoreUri,
    passphrase: Option<Passphrase>,
    create: bool,
) -> Result<Box<dyn KeyStore>, KeyStoreError> {
    match uri {
        KeyStoreUri::File(dir) => {
            let passphrase = passphrase.ok_or(KeyStoreError::PassphraseRequired)?;
            let store = if create {
                software::SoftwareKeyStore::open_or_create(dir, passphrase)?
            } else {
                software::SoftwareKeyStore::open(dir, passphrase)?
            };
            Ok(Box::new(store))
        }
        #[cfg(feature = "pkcs11")]
        KeyStoreUri::Pkcs11(uri) => Ok(Box::new(pkcs11::Pkcs11KeyStore::open(uri)?)),
        #[cfg(not(feature = "pkcs11"))]
        KeyStoreUri::Pkcs11(_) => Err(KeyStoreError::Pkcs11(
            "this build has no PKCS#11 support (built without the pkcs11 feature)".into(),
        )),
    }
}
