//! The public half of a store's key, as every backend reports it.

use pairgate_pki::{CertificateInfo, KeyAlgorithm, SignatureScheme, SpkiPin};
use rustls_pki_types::CertificateDer;

use crate::{Alias, KeyStoreError};

/// A key's algorithm and DER SubjectPublicKeyInfo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKeyInfo {
    /// The key algorithm.
    pub algorithm: KeyAlgorithm,
    /// DER SubjectPublicKeyInfo.
    pub spki_der: Vec<u8>,
}

impl PublicKeyInfo {
    /// The pin (SHA-256 of the SubjectPublicKeyInfo).
    pub fn pin(&self) -> SpkiPin {
        SpkiPin::of_spki(&self.spki_der)
    }

    /// The BIT STRING content of the SubjectPublicKeyInfo: the EC point or
    /// the PKCS#1 RSA key.
    pub fn raw_public_key(&self) -> Result<Vec<u8>, KeyStoreError> {
        pairgate_pki::der::spki_subject_public_key(&self.spki_der)
            .map_err(|_| KeyStoreError::Crypto("malformed public key"))
    }

    /// Verifies a signature made by this key.
    pub fn verify(
        &self,
        scheme: SignatureScheme,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), KeyStoreError> {
        let raw = self.raw_public_key()?;
        aws_lc_rs::signature::UnparsedPublicKey::new(scheme.verification_algorithm(), raw)
            .verify(message, signature)
            .map_err(|_| KeyStoreError::Crypto("signature does not verify"))
    }

    /// Refuses `chain` unless its leaf certifies this key. Every backend
    /// calls this before storing a chain.
    pub(crate) fn check_chain(
        &self,
        alias: &Alias,
        chain: &[CertificateDer<'static>],
    ) -> Result<(), KeyStoreError> {
        let leaf = chain.first().ok_or(KeyStoreError::EmptyChain)?;
        for cert in chain {
            CertificateInfo::parse(cert)?;
        }
        let info = CertificateInfo::parse(leaf)?;
        if info.spki_der != self.spki_der {
            return Err(KeyStoreError::CertificateKeyMismatch {
                alias: alias.to_string(),
                certificate_key: SpkiPin::of_spki(&info.spki_der),
                alias_key: self.pin(),
            });
        }
        Ok(())
    }
}
