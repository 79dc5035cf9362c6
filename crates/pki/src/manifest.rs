//! Vendor manifests: a vendor's signed list of the terminals it made, each
//! serial with the SPKI pin of the key made inside that terminal. A
//! manifest is JSON (format in docs/protocol.md) with a detached signature
//! over the file's exact bytes: Ed25519 (64 raw bytes, as `openssl pkeyutl
//! -sign -rawin` makes it) or ECDSA P-256 with SHA-256 (DER, as `openssl
//! dgst -sha256 -sign` makes it), by a vendor key an admin registered.
//!
//! [`UnverifiedManifest::parse`] reads the document and checks its rules
//! (version, sizes, lowercase 64-hex pins, no serial with two keys and no
//! key for two serials); [`UnverifiedManifest::verify`] checks the
//! signature and returns the [`VerifiedManifest`] proof the store's import
//! takes.

use std::collections::HashMap;

use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1, ED25519, UnparsedPublicKey};
use serde::{Deserialize, Serialize};
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::SpkiPin;

/// The largest manifest file accepted, in bytes.
pub const MAX_MANIFEST_BYTES: usize = 16 * 1024 * 1024;
/// The most terminals one manifest may list.
pub const MAX_MANIFEST_TERMINALS: usize = 100_000;

const ED25519_OID: &str = "1.3.101.112";
const EC_PUBLIC_KEY_OID: &str = "1.2.840.10045.2.1";
const P256_OID: &str = "1.2.840.10045.3.1.7";

/// A manifest or vendor key that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    /// The vendor key is not an Ed25519 or P-256 public key in PEM.
    #[error("vendor key: {0}")]
    Key(String),
    /// The document breaks the format or its rules.
    #[error("manifest: {0}")]
    Format(String),
    /// The signature does not verify with the vendor's key.
    #[error("the manifest's signature does not verify with vendor {0}'s key")]
    BadSignature(String),
}

/// The signature algorithm of a vendor key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VendorAlgorithm {
    /// Ed25519; signatures are 64 raw bytes.
    Ed25519,
    /// ECDSA on P-256 with SHA-256; signatures are DER.
    P256,
}

impl VendorAlgorithm {
    /// The name used in listings and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ed25519 => "ed25519",
            Self::P256 => "p256",
        }
    }
}

/// A vendor's public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VendorKey {
    algorithm: VendorAlgorithm,
    spki_der: Vec<u8>,
    raw: Vec<u8>,
}

impl VendorKey {
    /// Reads a `PUBLIC KEY` PEM (SubjectPublicKeyInfo) holding an Ed25519
    /// or P-256 key.
    pub fn from_pem(pem_text: &[u8]) -> Result<Self, ManifestError> {
        let block =
            pem::parse(pem_text).map_err(|e| ManifestError::Key(format!("not PEM: {e}")))?;
        if block.tag() != "PUBLIC KEY" {
            return Err(ManifestError::Key(format!(
                "a {} block; give the public key (openssl pkey -pubout)",
                block.tag()
            )));
        }
        Self::from_spki(block.contents())
    }

    /// An Ed25519 key from its 32 raw bytes (what `Ed25519KeyPair`
    /// gives), wrapped in its SubjectPublicKeyInfo.
    pub fn ed25519(raw: &[u8]) -> Result<Self, ManifestError> {
        // SEQUENCE { SEQUENCE { OID 1.3.101.112 }, BIT STRING (0 unused) }
        let mut spki = vec![
            0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
        ];
        spki.extend_from_slice(raw);
        Self::from_spki(&spki)
    }

    /// Reads a DER SubjectPublicKeyInfo.
    pub fn from_spki(der: &[u8]) -> Result<Self, ManifestError> {
        let (rest, spki) = SubjectPublicKeyInfo::from_der(der)
            .map_err(|e| ManifestError::Key(format!("not a SubjectPublicKeyInfo: {e}")))?;
        if !rest.is_empty() {
            return Err(ManifestError::Key("bytes after the key".into()));
        }
        let oid = spki.algorithm.algorithm.to_id_string();
        let algorithm = match oid.as_str() {
            ED25519_OID => VendorAlgorithm::Ed25519,
            EC_PUBLIC_KEY_OID => {
                let curve = spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|p| p.as_oid().ok())
                    .map(|o| o.to_id_string());
                if curve.as_deref() != Some(P256_OID) {
                    return Err(ManifestError::Key(
                        "an EC key on another curve than P-256".into(),
                    ));
                }
                VendorAlgorithm::P256
            }
            other => {
                return Err(ManifestError::Key(format!(
                    "algorithm {other}; vendor keys are Ed25519 or P-256"
                )));
            }
        };
        let raw = spki.subject_public_key.data.to_vec();
        let expected = match algorithm {
            VendorAlgorithm::Ed25519 => 32,
            VendorAlgorithm::P256 => 65,
        };
        if raw.len() != expected {
            return Err(ManifestError::Key(format!(
                "a {} key is {expected} bytes, not {}",
                algorithm.as_str(),
                raw.len()
            )));
        }
        Ok(Self {
            algorithm,
            spki_der: der.to_vec(),
            raw,
        })
    }

    /// Its algorithm.
    pub fn algorithm(&self) -> VendorAlgorithm {
        self.algorithm
    }

    /// The SHA-256 pin of its SubjectPublicKeyInfo.
    pub fn pin(&self) -> SpkiPin {
        SpkiPin::of_spki(&self.spki_der)
    }

    /// The key as PEM, for storing.
    pub fn to_pem(&self) -> String {
        pem::encode(&pem::Pem::new("PUBLIC KEY", self.spki_der.clone()))
    }

    fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        let algorithm: &'static dyn aws_lc_rs::signature::VerificationAlgorithm =
            match self.algorithm {
                VendorAlgorithm::Ed25519 => &ED25519,
                VendorAlgorithm::P256 => &ECDSA_P256_SHA256_ASN1,
            };
        UnparsedPublicKey::new(algorithm, &self.raw)
            .verify(message, signature)
            .is_ok()
    }
}

/// One terminal in a manifest, as written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestTerminal {
    /// The serial the terminal asks to pair as.
    pub serial: String,
    /// Its model.
    #[serde(default)]
    pub model: String,
    /// SHA-256 of its key's SubjectPublicKeyInfo, 64 lowercase hex digits.
    pub spki_pin: String,
}

/// A manifest document, as written (format version 1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestDocument {
    /// Always 1.
    pub version: u32,
    /// The vendor's id for this manifest; importing it again changes nothing.
    pub manifest_id: String,
    /// The registered vendor whose key signed it.
    pub vendor: String,
    /// When the vendor issued it (RFC 3339).
    pub issued_at: String,
    /// The terminals it vouches for.
    pub terminals: Vec<ManifestTerminal>,
}

/// A manifest whose format is checked and whose signature is not yet.
#[derive(Clone, Debug)]
pub struct UnverifiedManifest {
    document: ManifestDocument,
    pins: Vec<SpkiPin>,
    bytes: Vec<u8>,
}

/// A manifest whose signature verified with its vendor's key: the proof
/// the store's import takes.
#[derive(Clone, Debug)]
pub struct VerifiedManifest {
    document: ManifestDocument,
    pins: Vec<SpkiPin>,
    file_sha256: String,
    vendor_key: SpkiPin,
}

fn format(message: impl Into<String>) -> ManifestError {
    ManifestError::Format(message.into())
}

impl UnverifiedManifest {
    /// Reads a manifest file and checks its rules.
    pub fn parse(bytes: &[u8]) -> Result<Self, ManifestError> {
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(format(format!(
                "{} bytes; at most {MAX_MANIFEST_BYTES} are accepted",
                bytes.len()
            )));
        }
        let document: ManifestDocument = serde_json::from_slice(bytes)
            .map_err(|e| format(format!("not the manifest JSON: {e}")))?;
        if document.version != 1 {
            return Err(format(format!(
                "version {}; this server reads version 1",
                document.version
            )));
        }
        for (name, value) in [
            ("manifest_id", &document.manifest_id),
            ("vendor", &document.vendor),
        ] {
            if value.is_empty() || value.len() > 100 || value.chars().any(char::is_control) {
                return Err(format(format!(
                    "{name} must be 1 to 100 printable characters"
                )));
            }
        }
        time::OffsetDateTime::parse(
            &document.issued_at,
            &time::format_description::well_known::Rfc3339,
        )
        .map_err(|_| {
            format(format!(
                "issued_at {:?} is not an RFC 3339 time",
                document.issued_at
            ))
        })?;
        if document.terminals.is_empty() || document.terminals.len() > MAX_MANIFEST_TERMINALS {
            return Err(format(format!(
                "{} terminals; a manifest lists 1 to {MAX_MANIFEST_TERMINALS}",
                document.terminals.len()
            )));
        }
        let pins = check_entries(&document.terminals)?;
        Ok(Self {
            document,
            pins,
            bytes: bytes.to_vec(),
        })
    }

    /// The vendor the manifest names (whose key must verify it).
    pub fn vendor(&self) -> &str {
        &self.document.vendor
    }

    /// Checks `signature` over the file's bytes with `key`, the named
    /// vendor's registered key.
    pub fn verify(
        self,
        key: &VendorKey,
        signature: &[u8],
    ) -> Result<VerifiedManifest, ManifestError> {
        if !key.verifies(&self.bytes, signature) {
            return Err(ManifestError::BadSignature(self.document.vendor));
        }
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &self.bytes);
        Ok(VerifiedManifest {
            document: self.document,
            pins: self.pins,
            file_sha256: hex::encode(digest.as_ref()),
            vendor_key: key.pin(),
        })
    }
}

/// Each pin is 64 lowercase hex digits; no serial has two keys, and no
/// key two serials. A serial listed twice with the same key is one entry.
fn check_entries(entries: &[ManifestTerminal]) -> Result<Vec<SpkiPin>, ManifestError> {
    let mut by_serial: HashMap<&str, &str> = HashMap::new();
    let mut by_pin: HashMap<&str, &str> = HashMap::new();
    let mut pins = Vec::with_capacity(entries.len());
    for t in entries {
        let lowercase_hex = t.spki_pin.len() == 64
            && t.spki_pin
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !lowercase_hex {
            return Err(format(format!(
                "terminal {:?}: spki_pin must be 64 lowercase hex digits",
                t.serial
            )));
        }
        if let Some(other) = by_serial.insert(&t.serial, &t.spki_pin)
            && other != t.spki_pin
        {
            return Err(format(format!(
                "serial {:?} is listed with two different keys",
                t.serial
            )));
        }
        if let Some(other) = by_pin.insert(&t.spki_pin, &t.serial)
            && other != t.serial
        {
            return Err(format(format!(
                "key {} is listed for two serials, {other:?} and {:?}",
                t.spki_pin, t.serial
            )));
        }
        pins.push(t.spki_pin.parse().map_err(|e| format(format!("{e}")))?);
    }
    Ok(pins)
}

impl VerifiedManifest {
    /// The document.
    pub fn document(&self) -> &ManifestDocument {
        &self.document
    }

    /// Its terminals with their parsed pins.
    pub fn terminals(&self) -> impl Iterator<Item = (&ManifestTerminal, &SpkiPin)> {
        self.document.terminals.iter().zip(self.pins.iter())
    }

    /// SHA-256 of the file, lowercase hex: a re-import must be this file.
    pub fn file_sha256(&self) -> &str {
        &self.file_sha256
    }

    /// The pin of the vendor key that verified it.
    pub fn vendor_key(&self) -> &SpkiPin {
        &self.vendor_key
    }
}
