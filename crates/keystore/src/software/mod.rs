//! The software key store: a directory holding one JSON document,
//! `keystore.json`, with private keys sealed under a passphrase (see
//! [`document`]). Every change re-reads the document under an exclusive
//! lock, applies the change, and replaces the file atomically, so several
//! processes may share a store and a crash never leaves half a change.

pub(crate) mod atomic;
mod document;

use std::collections::HashMap;
use std::fs::{DirBuilder, File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair};
use pairgate_pki::{
    CertificateFingerprint, KeyAlgorithm, SignatureScheme, SpkiPin, TrustedCertificate,
};
use rustls_pki_types::CertificateDer;

pub use document::KdfParams;
use document::{Document, Hex, KeyEntry, Sealer, key_aad};

use crate::{Alias, AliasEntry, KeyStore, KeyStoreError, Passphrase, PublicKeyInfo};

const DOCUMENT_NAME: &str = "keystore.json";
const LOCK_NAME: &str = ".keystore.lock";

enum SoftKey {
    Ecdsa(EcdsaKeyPair),
    Rsa(RsaKeyPair),
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Stamp {
    len: u64,
    ino: u64,
    modified: Option<SystemTime>,
}

struct State {
    doc: Document,
    stamp: Option<Stamp>,
    /// Unsealed keys, by alias, with the (hex) public key they were
    /// unsealed for.
    keys: HashMap<String, (Hex, Arc<SoftKey>)>,
}

/// A key store in a directory, private keys encrypted at rest.
pub struct SoftwareKeyStore {
    dir: PathBuf,
    path: PathBuf,
    sealer: Sealer,
    salt: Vec<u8>,
    state: Mutex<State>,
}

impl std::fmt::Debug for SoftwareKeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoftwareKeyStore")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn stamp_of(path: &Path) -> Result<Option<Stamp>, KeyStoreError> {
    match std::fs::metadata(path) {
        Ok(m) => Ok(Some(Stamp {
            len: m.len(),
            ino: m.ino(),
            modified: m.modified().ok(),
        })),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(KeyStoreError::io("reading", path, e)),
    }
}

fn read_document(path: &Path) -> Result<Option<(Document, Stamp)>, KeyStoreError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(KeyStoreError::io("reading", path, e)),
    };
    let stamp = stamp_of(path)?.ok_or_else(|| KeyStoreError::NotFound(path.to_path_buf()))?;
    let doc = Document::parse(&bytes).map_err(|reason| KeyStoreError::Corrupt {
        path: path.to_path_buf(),
        reason,
    })?;
    Ok(Some((doc, stamp)))
}

struct DirLock(File);

impl DirLock {
    fn exclusive(dir: &Path) -> Result<Self, KeyStoreError> {
        let path = dir.join(LOCK_NAME);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| KeyStoreError::io("opening lock", &path, e))?;
        file.lock()
            .map_err(|e| KeyStoreError::io("locking", &path, e))?;
        Ok(Self(file))
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

impl SoftwareKeyStore {
    /// Opens an existing store; [`KeyStoreError::NotFound`] when `dir`
    /// holds none, [`KeyStoreError::WrongPassphrase`] when the passphrase
    /// does not open it.
    pub fn open(dir: &Path, passphrase: Passphrase) -> Result<Self, KeyStoreError> {
        let path = dir.join(DOCUMENT_NAME);
        let (doc, stamp) =
            read_document(&path)?.ok_or_else(|| KeyStoreError::NotFound(dir.to_path_buf()))?;
        Self::unlock(dir, passphrase, doc, Some(stamp))
    }

    /// Opens the store in `dir`, creating it (and `dir`, mode 0700) with
    /// the default Argon2id cost when there is none.
    pub fn open_or_create(dir: &Path, passphrase: Passphrase) -> Result<Self, KeyStoreError> {
        Self::open_or_create_with(dir, passphrase, KdfParams::default())
    }

    /// As [`Self::open_or_create`], with explicit Argon2id costs for a new
    /// store (an existing store keeps the costs it was created with).
    pub fn open_or_create_with(
        dir: &Path,
        passphrase: Passphrase,
        params: KdfParams,
    ) -> Result<Self, KeyStoreError> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| KeyStoreError::io("creating", dir, e))?;
        let _lock = DirLock::exclusive(dir)?;
        let path = dir.join(DOCUMENT_NAME);
        if let Some((doc, stamp)) = read_document(&path)? {
            return Self::unlock(dir, passphrase, doc, Some(stamp));
        }
        atomic::remove_stale_temporaries(dir, DOCUMENT_NAME);
        let mut salt = vec![0u8; 16];
        aws_lc_rs::rand::fill(&mut salt).map_err(|_| KeyStoreError::Crypto("RNG failure"))?;
        let sealer = Sealer::derive(&passphrase, params, &salt)?;
        let doc = Document::new(&sealer, params, &salt)?;
        atomic::write_atomic(&path, &doc.to_bytes()?)?;
        let stamp = stamp_of(&path)?;
        Ok(Self::assemble(dir, sealer, salt, doc, stamp))
    }

    /// Restores a store from [`KeyStore::sealed_copy`] into `dir`: the
    /// passphrase must be the one the copy was sealed under, and every key
    /// must unseal, before anything is written. Refused when `dir` already
    /// holds a store with keys or trusted certificates (an empty one is
    /// replaced).
    pub fn restore(
        dir: &Path,
        sealed: &[u8],
        passphrase: Passphrase,
    ) -> Result<Self, KeyStoreError> {
        let doc = Document::parse(sealed).map_err(KeyStoreError::BadSealedCopy)?;
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| KeyStoreError::io("creating", dir, e))?;
        let _lock = DirLock::exclusive(dir)?;
        let path = dir.join(DOCUMENT_NAME);
        if let Some((existing, _)) = read_document(&path)?
            && (!existing.keys.is_empty() || !existing.trusted.is_empty())
        {
            return Err(KeyStoreError::NotEmpty(dir.to_path_buf()));
        }
        let store = Self::unlock(dir, passphrase, doc, None)?;
        {
            let mut state = store.state();
            let aliases: Vec<String> = state.doc.keys.keys().cloned().collect();
            for name in aliases {
                let alias = Alias::new(&name)
                    .map_err(|_| KeyStoreError::BadSealedCopy(format!("bad alias {name:?}")))?;
                store.unsealed(&mut state, &alias)?;
            }
            atomic::remove_stale_temporaries(dir, DOCUMENT_NAME);
            atomic::write_atomic(&path, &state.doc.to_bytes()?)?;
            state.stamp = stamp_of(&path)?;
        }
        Ok(store)
    }

    fn unlock(
        dir: &Path,
        passphrase: Passphrase,
        doc: Document,
        stamp: Option<Stamp>,
    ) -> Result<Self, KeyStoreError> {
        let salt = doc.salt().to_vec();
        let sealer = Sealer::derive(&passphrase, doc.kdf.params, &salt)?;
        if !sealer.opens_key_check(&doc.key_check.0) {
            return Err(KeyStoreError::WrongPassphrase(dir.to_path_buf()));
        }
        Ok(Self::assemble(dir, sealer, salt, doc, stamp))
    }

    fn assemble(
        dir: &Path,
        sealer: Sealer,
        salt: Vec<u8>,
        doc: Document,
        stamp: Option<Stamp>,
    ) -> Self {
        Self {
            dir: dir.to_path_buf(),
            path: dir.join(DOCUMENT_NAME),
            sealer,
            salt,
            state: Mutex::new(State {
                doc,
                stamp,
                keys: HashMap::new(),
            }),
        }
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Checks that a document read from disk belongs to this store's
    /// passphrase: another process may have replaced the whole store.
    fn adopt(&self, doc: &Document) -> Result<(), KeyStoreError> {
        if doc.salt() != self.salt || !self.sealer.opens_key_check(&doc.key_check.0) {
            return Err(KeyStoreError::WrongPassphrase(self.dir.clone()));
        }
        Ok(())
    }

    /// Runs `f` on the current document, re-reading it if another process
    /// changed the file.
    fn read<R>(
        &self,
        f: impl FnOnce(&mut State) -> Result<R, KeyStoreError>,
    ) -> Result<R, KeyStoreError> {
        let mut state = self.state();
        let stamp = stamp_of(&self.path)?;
        if stamp != state.stamp {
            let (doc, stamp) = read_document(&self.path)?
                .ok_or_else(|| KeyStoreError::NotFound(self.dir.clone()))?;
            self.adopt(&doc)?;
            state.doc = doc;
            state.stamp = Some(stamp);
        }
        f(&mut state)
    }

    /// Applies `f` to a fresh copy of the document under the directory
    /// lock and replaces the file atomically; on any error nothing changes.
    fn mutate<R>(
        &self,
        f: impl FnOnce(&mut Document) -> Result<R, KeyStoreError>,
    ) -> Result<R, KeyStoreError> {
        let _lock = DirLock::exclusive(&self.dir)?;
        // Under the lock no writer of ours is mid-write: any temporary file
        // is a crash's leftover.
        atomic::remove_stale_temporaries(&self.dir, DOCUMENT_NAME);
        let mut state = self.state();
        let (mut doc, _) =
            read_document(&self.path)?.ok_or_else(|| KeyStoreError::NotFound(self.dir.clone()))?;
        self.adopt(&doc)?;
        let result = f(&mut doc)?;
        atomic::write_atomic(&self.path, &doc.to_bytes()?)?;
        state.stamp = stamp_of(&self.path)?;
        state.keys.retain(|alias, (public_key, _)| {
            doc.keys
                .get(alias)
                .is_some_and(|e| e.public_key == *public_key)
        });
        state.doc = doc;
        Ok(result)
    }

    fn unsealed(
        &self,
        state: &mut State,
        alias: &Alias,
    ) -> Result<(KeyAlgorithm, Arc<SoftKey>), KeyStoreError> {
        let entry = state
            .doc
            .keys
            .get(alias.as_str())
            .ok_or_else(|| KeyStoreError::NoSuchAlias(alias.to_string()))?;
        let algorithm = entry.algorithm;
        // Hot path (a signature per TLS handshake): compare the stored hex
        // text, decoding nothing, when the key is already unsealed.
        if let Some((cached_public_key, key)) = state.keys.get(alias.as_str())
            && *cached_public_key == entry.public_key
        {
            return Ok((algorithm, key.clone()));
        }
        let spki = entry.public_key.0.clone();
        let aad = key_aad(alias.as_str(), algorithm, &spki);
        let corrupt = |reason: &str| KeyStoreError::Corrupt {
            path: self.path.clone(),
            reason: format!("the private key of alias {alias:?} {reason}"),
        };
        let pkcs8 = self
            .sealer
            .open(&aad, &entry.sealed_private_key.0)
            .ok_or_else(|| corrupt("does not authenticate (the file was altered)"))?;
        let key = match algorithm {
            KeyAlgorithm::P256 => SoftKey::Ecdsa(
                EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, &pkcs8)
                    .map_err(|_| corrupt("is not a P-256 key"))?,
            ),
            KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 => SoftKey::Rsa(
                RsaKeyPair::from_pkcs8(&pkcs8).map_err(|_| corrupt("is not an RSA key"))?,
            ),
        };
        let key = Arc::new(key);
        state
            .keys
            .insert(alias.to_string(), (entry.public_key.clone(), key.clone()));
        Ok((algorithm, key))
    }
}

fn generate(
    algorithm: KeyAlgorithm,
) -> Result<(zeroize::Zeroizing<Vec<u8>>, Vec<u8>), KeyStoreError> {
    let failed = KeyStoreError::Crypto("key generation failed");
    match algorithm {
        KeyAlgorithm::P256 => {
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(
                &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
                &SystemRandom::new(),
            )
            .map_err(|_| failed)?;
            let pkcs8 = zeroize::Zeroizing::new(pkcs8.as_ref().to_vec());
            let key = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, &pkcs8)
                .map_err(|_| KeyStoreError::Crypto("generated key does not load"))?;
            let spki = pairgate_pki::der::p256_spki(key.public_key().as_ref());
            Ok((pkcs8, spki))
        }
        KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 => {
            let size = if algorithm == KeyAlgorithm::Rsa2048 {
                aws_lc_rs::rsa::KeySize::Rsa2048
            } else {
                aws_lc_rs::rsa::KeySize::Rsa3072
            };
            let key = RsaKeyPair::generate(size).map_err(|_| failed)?;
            let pkcs8 = key
                .as_der()
                .map_err(|_| KeyStoreError::Crypto("PKCS#8 encoding failed"))?;
            let pkcs8 = zeroize::Zeroizing::new(pkcs8.as_ref().to_vec());
            let spki = key
                .public_key()
                .as_der()
                .map_err(|_| KeyStoreError::Crypto("public key encoding failed"))?;
            Ok((pkcs8, spki.as_ref().to_vec()))
        }
    }
}

fn decode_chain(entry: &KeyEntry) -> Vec<CertificateDer<'static>> {
    entry
        .certificate_chain
        .iter()
        .map(|c| CertificateDer::from(c.0.clone()))
        .collect()
}

impl KeyStore for SoftwareKeyStore {
    fn describe(&self) -> String {
        format!("file:{}", self.dir.display())
    }

    fn generate_key(
        &self,
        alias: &Alias,
        algorithm: KeyAlgorithm,
    ) -> Result<PublicKeyInfo, KeyStoreError> {
        if self.read(|s| Ok(s.doc.keys.contains_key(alias.as_str())))? {
            return Err(KeyStoreError::AliasExists(alias.to_string()));
        }
        // Generate outside the lock: RSA generation can take a second.
        let (pkcs8, spki) = generate(algorithm)?;
        let sealed = self
            .sealer
            .seal(&key_aad(alias.as_str(), algorithm, &spki), &pkcs8)?;
        self.mutate(|doc| {
            if doc.keys.contains_key(alias.as_str()) {
                return Err(KeyStoreError::AliasExists(alias.to_string()));
            }
            doc.keys.insert(
                alias.to_string(),
                KeyEntry {
                    algorithm,
                    public_key: Hex::of(&spki),
                    sealed_private_key: Hex(sealed),
                    certificate_chain: Vec::new(),
                },
            );
            Ok(())
        })?;
        Ok(PublicKeyInfo {
            algorithm,
            spki_der: spki,
        })
    }

    fn public_key(&self, alias: &Alias) -> Result<PublicKeyInfo, KeyStoreError> {
        self.read(|s| {
            let entry = s
                .doc
                .keys
                .get(alias.as_str())
                .ok_or_else(|| KeyStoreError::NoSuchAlias(alias.to_string()))?;
            Ok(PublicKeyInfo {
                algorithm: entry.algorithm,
                spki_der: entry.public_key.0.clone(),
            })
        })
    }

    fn sign(
        &self,
        alias: &Alias,
        scheme: SignatureScheme,
        message: &[u8],
    ) -> Result<Vec<u8>, KeyStoreError> {
        let (algorithm, key) = self.read(|s| self.unsealed(s, alias))?;
        if !scheme.suits(algorithm) {
            return Err(KeyStoreError::SchemeMismatch {
                alias: alias.to_string(),
                algorithm,
                scheme,
            });
        }
        let rng = SystemRandom::new();
        let failed = KeyStoreError::Crypto("signing failed");
        match key.as_ref() {
            SoftKey::Ecdsa(k) => Ok(k.sign(&rng, message).map_err(|_| failed)?.as_ref().to_vec()),
            SoftKey::Rsa(k) => {
                let padding: &'static dyn signature::RsaEncoding = match scheme {
                    SignatureScheme::RsaPkcs1Sha256 => &signature::RSA_PKCS1_SHA256,
                    SignatureScheme::RsaPkcs1Sha384 => &signature::RSA_PKCS1_SHA384,
                    SignatureScheme::RsaPkcs1Sha512 => &signature::RSA_PKCS1_SHA512,
                    SignatureScheme::RsaPssSha256 => &signature::RSA_PSS_SHA256,
                    SignatureScheme::RsaPssSha384 => &signature::RSA_PSS_SHA384,
                    SignatureScheme::RsaPssSha512 => &signature::RSA_PSS_SHA512,
                    SignatureScheme::EcdsaP256Sha256 => return Err(failed),
                };
                let mut out = vec![0u8; k.public_modulus_len()];
                k.sign(padding, &rng, message, &mut out)
                    .map_err(|_| failed)?;
                Ok(out)
            }
        }
    }

    fn set_certificate_chain(
        &self,
        alias: &Alias,
        chain: &[CertificateDer<'static>],
    ) -> Result<(), KeyStoreError> {
        self.mutate(|doc| {
            let entry = doc
                .keys
                .get_mut(alias.as_str())
                .ok_or_else(|| KeyStoreError::NoSuchAlias(alias.to_string()))?;
            let public = PublicKeyInfo {
                algorithm: entry.algorithm,
                spki_der: entry.public_key.0.clone(),
            };
            public.check_chain(alias, chain)?;
            entry.certificate_chain = chain.iter().map(Hex::of).collect();
            Ok(())
        })
    }

    fn certificate_chain(
        &self,
        alias: &Alias,
    ) -> Result<Vec<CertificateDer<'static>>, KeyStoreError> {
        self.read(|s| {
            s.doc
                .keys
                .get(alias.as_str())
                .map(decode_chain)
                .ok_or_else(|| KeyStoreError::NoSuchAlias(alias.to_string()))
        })
    }

    fn aliases(&self) -> Result<Vec<AliasEntry>, KeyStoreError> {
        self.read(|s| {
            s.doc
                .keys
                .iter()
                .map(|(name, entry)| {
                    Ok(AliasEntry {
                        alias: Alias::new(name)?,
                        algorithm: entry.algorithm,
                        public_key_pin: SpkiPin::of_spki(&entry.public_key.0),
                        certificate: decode_chain(entry)
                            .first()
                            .map(|c| CertificateFingerprint::of_certificate(c)),
                    })
                })
                .collect()
        })
    }

    fn delete(&self, alias: &Alias) -> Result<(), KeyStoreError> {
        self.mutate(|doc| {
            doc.keys
                .remove(alias.as_str())
                .map(|_| ())
                .ok_or_else(|| KeyStoreError::NoSuchAlias(alias.to_string()))
        })
    }

    fn add_trusted(&self, certificate: &TrustedCertificate) -> Result<(), KeyStoreError> {
        let encoded = Hex::of(certificate.der());
        self.mutate(|doc| {
            if !doc.trusted.contains(&encoded) {
                doc.trusted.push(encoded);
            }
            Ok(())
        })
    }

    fn trusted(&self) -> Result<Vec<CertificateDer<'static>>, KeyStoreError> {
        self.read(|s| {
            Ok(s.doc
                .trusted
                .iter()
                .map(|c| CertificateDer::from(c.0.clone()))
                .collect())
        })
    }

    fn remove_trusted(&self, fingerprint: &CertificateFingerprint) -> Result<(), KeyStoreError> {
        self.mutate(|doc| {
            let before = doc.trusted.len();
            doc.trusted
                .retain(|c| CertificateFingerprint::of_certificate(&c.0) != *fingerprint);
            if doc.trusted.len() == before {
                return Err(KeyStoreError::NotTrusted(*fingerprint));
            }
            Ok(())
        })
    }

    fn sealed_copy(&self) -> Result<Option<Vec<u8>>, KeyStoreError> {
        self.read(|s| s.doc.to_bytes().map(Some))
    }

    fn factory_reset(&self) -> Result<(), KeyStoreError> {
        self.mutate(|doc| {
            doc.keys.clear();
            doc.trusted.clear();
            Ok(())
        })
    }
}
