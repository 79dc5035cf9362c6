//! The on-disk format of the software key store, one JSON document
//! (`keystore.json`), and the sealing of private keys in it.
//!
//! Private keys are PKCS#8 DER sealed with AES-256-GCM under a key derived
//! from the passphrase with Argon2id (parameters and salt in the document).
//! The additional data binds each sealed key to its alias, algorithm and
//! public key, so swapping sealed blobs between aliases is detected. A
//! sealed known value (`key_check`) tells a wrong passphrase from a damaged
//! key. Public keys and certificates are stored in the clear: they are
//! public, and listing them needs no decryption.

use std::collections::BTreeMap;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use pairgate_pki::KeyAlgorithm;
use zeroize::Zeroizing;

use crate::{KeyStoreError, Passphrase};

/// The format tag of version 1.
pub(crate) const FORMAT_V1: &str = "pairgate-keystore/1";
const KEY_CHECK_PLAINTEXT: &[u8] = b"pairgate keystore key check v1";
const KEY_CHECK_AAD: &[u8] = b"pairgate-keystore/1 key-check";

/// Argon2id cost parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KdfParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Default for KdfParams {
    /// OWASP's Argon2id baseline (19 MiB, 2 passes, 1 lane): a few tens of
    /// milliseconds on a terminal-class CPU, paid once per store opening.
    fn default() -> Self {
        Self {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
        }
    }
}

impl KdfParams {
    fn check(&self) -> Result<(), String> {
        // Bounds keep a damaged or hostile file from making us allocate
        // gigabytes or spin for minutes.
        if !(8..=1024 * 1024).contains(&self.memory_kib) {
            return Err(format!(
                "Argon2 memory {} KiB out of range",
                self.memory_kib
            ));
        }
        if !(1..=64).contains(&self.iterations) || !(1..=16).contains(&self.parallelism) {
            return Err("Argon2 iterations or parallelism out of range".into());
        }
        Ok(())
    }
}

/// Bytes stored as lowercase hex. Bad hex fails the document's parse, so
/// no field is ever read from text that did not decode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Hex(pub Vec<u8>);

impl Hex {
    /// Encodes `bytes`.
    pub fn of(bytes: impl AsRef<[u8]>) -> Self {
        Self(bytes.as_ref().to_vec())
    }
}

impl AsRef<[u8]> for Hex {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl serde::Serialize for Hex {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(&self.0))
    }
}

impl<'de> serde::Deserialize<'de> for Hex {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        hex::decode(text.as_ref())
            .map(Self)
            .map_err(|_| serde::de::Error::custom("a field that should be hex is not"))
    }
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Kdf {
    pub algorithm: String,
    #[serde(flatten)]
    pub params: KdfParams,
    pub salt: Hex,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KeyEntry {
    pub algorithm: KeyAlgorithm,
    /// DER SubjectPublicKeyInfo.
    pub public_key: Hex,
    /// Nonce ‖ AES-256-GCM(PKCS#8).
    pub sealed_private_key: Hex,
    /// DER certificates, leaf first.
    #[serde(default)]
    pub certificate_chain: Vec<Hex>,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Document {
    pub format: String,
    pub kdf: Kdf,
    pub key_check: Hex,
    #[serde(default)]
    pub keys: BTreeMap<String, KeyEntry>,
    /// DER certificates of the trust store.
    #[serde(default)]
    pub trusted: Vec<Hex>,
}

/// The AES-256-GCM key derived from the passphrase.
pub(crate) struct Sealer {
    key: LessSafeKey,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(<redacted>)")
    }
}

impl Sealer {
    pub fn derive(
        passphrase: &Passphrase,
        params: KdfParams,
        salt: &[u8],
    ) -> Result<Self, KeyStoreError> {
        let argon = argon2::Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            argon2::Params::new(
                params.memory_kib,
                params.iterations,
                params.parallelism,
                Some(32),
            )
            .map_err(|_| KeyStoreError::Crypto("invalid Argon2 parameters"))?,
        );
        let mut key = Zeroizing::new([0u8; 32]);
        argon
            .hash_password_into(passphrase.expose(), salt, key.as_mut())
            .map_err(|_| KeyStoreError::Crypto("Argon2 key derivation failed"))?;
        let unbound = UnboundKey::new(&AES_256_GCM, key.as_ref())
            .map_err(|_| KeyStoreError::Crypto("AES key setup failed"))?;
        Ok(Self {
            key: LessSafeKey::new(unbound),
        })
    }

    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, KeyStoreError> {
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).map_err(|_| KeyStoreError::Crypto("RNG failure"))?;
        let mut buffer = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut buffer,
            )
            .map_err(|_| KeyStoreError::Crypto("sealing failed"))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buffer);
        Ok(out)
    }

    /// Opens a sealed blob; `None` when it does not authenticate.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        let (nonce, ciphertext) = sealed.split_at_checked(NONCE_LEN)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buffer = Zeroizing::new(ciphertext.to_vec());
        let len = self
            .key
            .open_in_place(nonce, Aad::from(aad), buffer.as_mut_slice())
            .ok()?
            .len();
        buffer.truncate(len);
        Some(buffer)
    }

    pub fn key_check(&self) -> Result<Vec<u8>, KeyStoreError> {
        self.seal(KEY_CHECK_AAD, KEY_CHECK_PLAINTEXT)
    }

    pub fn opens_key_check(&self, sealed: &[u8]) -> bool {
        self.open(KEY_CHECK_AAD, sealed)
            .is_some_and(|p| p.as_slice() == KEY_CHECK_PLAINTEXT)
    }
}

/// The additional data that binds a sealed private key to its entry.
pub(crate) fn key_aad(alias: &str, algorithm: KeyAlgorithm, spki_der: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(64 + spki_der.len());
    aad.extend_from_slice(FORMAT_V1.as_bytes());
    aad.push(0);
    aad.extend_from_slice(alias.as_bytes());
    aad.push(0);
    aad.extend_from_slice(algorithm.name().as_bytes());
    aad.push(0);
    aad.extend_from_slice(spki_der);
    aad
}

impl Document {
    pub fn new(sealer: &Sealer, params: KdfParams, salt: &[u8]) -> Result<Self, KeyStoreError> {
        Ok(Self {
            format: FORMAT_V1.to_owned(),
            kdf: Kdf {
                algorithm: "argon2id".to_owned(),
                params,
                salt: Hex::of(salt),
            },
            key_check: Hex(sealer.key_check()?),
            keys: BTreeMap::new(),
            trusted: Vec::new(),
        })
    }

    /// Parses and checks the structure (not the passphrase).
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let doc: Document = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if doc.format != FORMAT_V1 {
            return Err(format!(
                "unknown format {:?} (expected {FORMAT_V1})",
                doc.format
            ));
        }
        if doc.kdf.algorithm != "argon2id" {
            return Err(format!("unknown KDF {:?}", doc.kdf.algorithm));
        }
        doc.kdf.params.check()?;
        if doc.kdf.salt.0.len() < 16 {
            return Err("salt shorter than 16 bytes".into());
        }
        for alias in doc.keys.keys() {
            crate::Alias::new(alias).map_err(|_| format!("invalid alias {alias:?}"))?;
        }
        Ok(doc)
    }

    pub fn salt(&self) -> &[u8] {
        &self.kdf.salt.0
    }

    pub fn to_bytes(&self) -> Result<Vec<u8>, KeyStoreError> {
        let mut bytes = serde_json::to_vec_pretty(self)
            .map_err(|_| KeyStoreError::Crypto("serialising the key store"))?;
        bytes.push(b'\n');
        Ok(bytes)
    }
}
