//! Errors of every key store operation, each worded so that the person
//! reading it knows what to do next.

use std::path::PathBuf;

use pairgate_pki::{
    CertificateError, CertificateFingerprint, KeyAlgorithm, SignatureScheme, SpkiPin, TrustError,
};

/// A key store operation failed; nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    /// The alias is not a valid name.
    #[error("invalid alias {0:?}: use 1 to 64 of A-Z a-z 0-9 . _ -, not starting with . or -")]
    InvalidAlias(String),
    /// No key under the alias.
    #[error("no key with alias {0:?} in this key store")]
    NoSuchAlias(String),
    /// The alias already holds a key.
    #[error("alias {0:?} already holds a key; delete it first or choose another alias")]
    AliasExists(String),
    /// A certificate chain whose leaf is for another key.
    #[error(
        "the certificate's public key is not the key of alias {alias:?} \
         (certificate key pin {certificate_key}, alias key pin {alias_key})"
    )]
    CertificateKeyMismatch {
        /// The alias.
        alias: String,
        /// Pin of the certificate's key.
        certificate_key: SpkiPin,
        /// Pin of the alias's key.
        alias_key: SpkiPin,
    },
    /// An empty certificate chain.
    #[error("the certificate chain is empty")]
    EmptyChain,
    /// No certificate set for the alias.
    #[error(
        "alias {0:?} has no certificate yet: make a self-signed one or import one issued for its CSR"
    )]
    NoCertificate(String),
    /// The key cannot make that kind of signature.
    #[error("alias {alias:?} holds a {algorithm} key, which cannot make {scheme:?} signatures")]
    SchemeMismatch {
        /// The alias.
        alias: String,
        /// Its key algorithm.
        algorithm: KeyAlgorithm,
        /// The scheme asked for.
        scheme: SignatureScheme,
    },
    /// The trust store has no such certificate.
    #[error("no certificate with fingerprint {0} in the trust store")]
    NotTrusted(CertificateFingerprint),
    /// A software store needs a passphrase.
    #[error(
        "the software key store needs a passphrase: set PAIRGATE_KEYSTORE_PASSPHRASE or give --passphrase-file"
    )]
    PassphraseRequired,
    /// An empty passphrase.
    #[error("the key store passphrase is empty")]
    EmptyPassphrase,
    /// The passphrase does not open the store.
    #[error("wrong passphrase for the key store at {0}")]
    WrongPassphrase(PathBuf),
    /// No store at the path.
    #[error("no key store at {0}: generate a key first (pairgate terminal keys generate)")]
    NotFound(PathBuf),
    /// The store's file is damaged or not ours.
    #[error("the key store file {path} is corrupt or not a pairgate key store: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A file system error.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A key store URI that cannot be used.
    #[error("invalid key store URI {uri:?}: {reason}")]
    InvalidUri {
        /// The URI, with any secret removed.
        uri: String,
        /// What is wrong.
        reason: String,
    },
    /// The PKCS#11 module or token failed.
    #[error("PKCS#11: {0}")]
    Pkcs11(String),
    /// A certificate breaks the algorithm rules or cannot be read.
    #[error(transparent)]
    Certificate(#[from] CertificateError),
    /// A certificate was refused by the trust-store rule.
    // Not `#[from]`: that makes the reason the error's source too, and
    // `{:#}` would print it twice.
    #[error("refused by the trust store: {0}")]
    Trust(TrustError),
    /// A restore would overwrite a store that holds keys or trust.
    #[error(
        "the key store at {0} already holds keys or trusted certificates; restore into a fresh one"
    )]
    NotEmpty(PathBuf),
    /// The sealed copy of a store (from a restore point) is damaged.
    #[error("the key store copy in the restore point is damaged: {0}")]
    BadSealedCopy(String),
    /// A cryptographic operation failed.
    #[error("cryptographic failure: {0}")]
    Crypto(&'static str),
    /// A WireGuard key file cannot be used.
    #[error("WireGuard key: {0}")]
    WireGuard(String),
}

impl KeyStoreError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

impl From<TrustError> for KeyStoreError {
    fn from(e: TrustError) -> Self {
        Self::Trust(e)
    }
}
