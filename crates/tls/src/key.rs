//! A key-store alias as a rustls signing key. rustls asks for a signature
//! synchronously in the middle of a handshake; a hardware key store may
//! take a while, so on a multi-threaded tokio runtime the call runs under
//! `block_in_place` and does not stall the other connections on that worker.

use std::sync::Arc;

use pairgate_keystore::{Alias, KeyStore};
use pairgate_pki::{KeyAlgorithm, SignatureScheme as StoreScheme};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::{CertifiedKey, Signer, SigningKey};
use rustls::{SignatureAlgorithm, SignatureScheme};

use crate::TlsError;

/// Our scheme for a rustls scheme, in rustls's preference order for each
/// key type. RSA offers PSS first (TLS 1.3 requires it).
const RSA_SCHEMES: &[(SignatureScheme, StoreScheme)] = &[
    (SignatureScheme::RSA_PSS_SHA256, StoreScheme::RsaPssSha256),
    (SignatureScheme::RSA_PSS_SHA384, StoreScheme::RsaPssSha384),
    (SignatureScheme::RSA_PSS_SHA512, StoreScheme::RsaPssSha512),
    (
        SignatureScheme::RSA_PKCS1_SHA256,
        StoreScheme::RsaPkcs1Sha256,
    ),
    (
        SignatureScheme::RSA_PKCS1_SHA384,
        StoreScheme::RsaPkcs1Sha384,
    ),
    (
        SignatureScheme::RSA_PKCS1_SHA512,
        StoreScheme::RsaPkcs1Sha512,
    ),
];
const EC_SCHEMES: &[(SignatureScheme, StoreScheme)] = &[(
    SignatureScheme::ECDSA_NISTP256_SHA256,
    StoreScheme::EcdsaP256Sha256,
)];

/// The key of an alias, signing inside its store.
#[derive(Debug)]
struct StoreKey {
    store: Arc<dyn KeyStore>,
    alias: Alias,
    algorithm: KeyAlgorithm,
}

impl SigningKey for StoreKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
        let ours = if self.algorithm.is_rsa() {
            RSA_SCHEMES
        } else {
            EC_SCHEMES
        };
        let (scheme, store_scheme) = ours.iter().find(|(s, _)| offered.contains(s))?;
        Some(Box::new(StoreSigner {
            store: self.store.clone(),
            alias: self.alias.clone(),
            scheme: *scheme,
            store_scheme: *store_scheme,
        }))
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        if self.algorithm.is_rsa() {
            SignatureAlgorithm::RSA
        } else {
            SignatureAlgorithm::ECDSA
        }
    }
}

#[derive(Debug)]
struct StoreSigner {
    store: Arc<dyn KeyStore>,
    alias: Alias,
    scheme: SignatureScheme,
    store_scheme: StoreScheme,
}

impl Signer for StoreSigner {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        let sign = || self.store.sign(&self.alias, self.store_scheme, message);
        let result = match tokio::runtime::Handle::try_current() {
            Ok(handle)
                if self.store.is_hardware()
                    && handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread =>
            {
                tokio::task::block_in_place(sign)
            }
            _ => sign(),
        };
        result.map_err(|e| rustls::Error::General(format!("key store signing failed: {e}")))
    }

    fn scheme(&self) -> SignatureScheme {
        self.scheme
    }
}

/// The certificate chain and key of `alias`, for a client or server
/// identity. Refused when the alias has no certificate yet.
pub fn alias_certified_key(
    store: Arc<dyn KeyStore>,
    alias: &Alias,
) -> Result<Arc<CertifiedKey>, TlsError> {
    let public = store.public_key(alias)?;
    let chain = store.certificate_chain(alias)?;
    if chain.is_empty() {
        return Err(pairgate_keystore::KeyStoreError::NoCertificate(alias.to_string()).into());
    }
    let key = StoreKey {
        store,
        alias: alias.clone(),
        algorithm: public.algorithm,
    };
    Ok(Arc::new(CertifiedKey::new(chain, Arc::new(key))))
}

/// A certificate chain and private key from PEM (for servers whose key is a
/// file, such as the development CA's `--key-out`).
pub fn pem_certified_key(
    provider: &rustls::crypto::CryptoProvider,
    chain_pem: &[u8],
    key_pem: &[u8],
) -> Result<Arc<CertifiedKey>, TlsError> {
    use rustls::pki_types::pem::PemObject;
    let chain: Vec<CertificateDer<'static>> =
        pairgate_pki::certificate::parse_certificates(chain_pem)?;
    let key =
        PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::PrivateKey(e.to_string()))?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError::PrivateKey(e.to_string()))?;
    let certified = CertifiedKey::new(chain, signing);
    certified
        .keys_match()
        .map_err(|e| TlsError::PrivateKey(format!("certificate and key do not match: {e}")))?;
    Ok(Arc::new(certified))
}
