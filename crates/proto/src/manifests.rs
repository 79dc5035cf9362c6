//! Vendor keys and manifests in the CAS API (`/api/v1/vendors`,
//! `/api/v1/manifests`) and `pairgate admin --json`. The manifest file
//! itself is `pairgate_pki::manifest::ManifestDocument` (its format is in
//! docs/protocol.md); it travels as the request body, byte for byte,
//! because its signature covers those bytes.

use zeroize::Zeroizing;

use crate::Timestamp;

/// The header that carries a manifest's detached signature, base64, on
/// `POST /api/v1/manifests`.
pub const SIGNATURE_HEADER: &str = "pairgate-manifest-signature";

/// A registered vendor key.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VendorView {
    /// The name manifests give as `vendor`.
    pub name: String,
    /// `ed25519` or `p256`.
    pub algorithm: String,
    /// SHA-256 of the key's SubjectPublicKeyInfo (64 hex digits).
    pub key_pin: String,
    /// When it was added.
    pub added_at: Timestamp,
    /// Who added it.
    pub added_by: String,
}

/// `GET /vendors`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VendorList {
    /// By name.
    pub vendors: Vec<VendorView>,
}

/// `POST /vendors`: an admin registers a vendor key.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VendorBody {
    /// The vendor's name.
    pub name: String,
    /// Its public key, PEM (`-----BEGIN PUBLIC KEY-----`), Ed25519 or P-256.
    pub public_key: String,
    /// The admin's current TOTP code.
    pub totp: Zeroizing<String>,
}

/// An imported manifest.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ManifestView {
    /// The vendor's manifest id.
    pub id: String,
    /// The vendor that signed it.
    pub vendor: String,
    /// When the vendor issued it, as written (RFC 3339).
    pub issued_at: String,
    /// How many terminals it vouches for.
    pub terminals: i64,
    /// When it was imported.
    pub imported_at: Timestamp,
    /// Who imported it.
    pub imported_by: String,
}

/// `GET /manifests`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ManifestList {
    /// Newest first.
    pub manifests: Vec<ManifestView>,
}

/// What an import did.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ManifestImport {
    /// The manifest id.
    pub manifest_id: String,
    /// Terminals it vouches for.
    pub terminals: usize,
    /// Of those, terminals registered by this import.
    pub registered: usize,
    /// Imported before: nothing changed.
    pub unchanged: bool,
}
