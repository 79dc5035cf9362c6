//! Adapts a key-store alias to rcgen's remote-signing traits, so that CSRs
//! and certificates are signed inside the store.

use pairgate_pki::KeyAlgorithm;

use crate::{Alias, KeyStore, KeyStoreError};

/// A key-store alias that rcgen can sign with.
pub struct StoreSigner<'a> {
    store: &'a dyn KeyStore,
    alias: Alias,
    algorithm: KeyAlgorithm,
    raw_public_key: Vec<u8>,
    spki_der: Vec<u8>,
}

impl<'a> StoreSigner<'a> {
    /// A signer for the key of `alias`.
    pub fn new(store: &'a dyn KeyStore, alias: &Alias) -> Result<Self, KeyStoreError> {
        let public = store.public_key(alias)?;
        Ok(Self {
            store,
            alias: alias.clone(),
            algorithm: public.algorithm,
            raw_public_key: public.raw_public_key()?,
            spki_der: public.spki_der,
        })
    }
}

impl rcgen::PublicKeyData for StoreSigner<'_> {
    fn der_bytes(&self) -> &[u8] {
        &self.raw_public_key
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        self.algorithm.rcgen_algorithm()
    }

    fn subject_public_key_info(&self) -> Vec<u8> {
        self.spki_der.clone()
    }
}

impl rcgen::SigningKey for StoreSigner<'_> {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.store
            .sign(&self.alias, self.algorithm.certificate_scheme(), msg)
            .map_err(|_| rcgen::Error::RemoteKeyError)
    }
}
