//! Pure PKI logic shared by every pairgate part: fingerprints and pins, key
//! and signature algorithms, DER helpers for keys held in hardware,
//! certificate and CSR building, the development CA's issuing rules, the
//! terminal trust-store rule, the pairing-code derivation and vendor
//! manifests.
//!
//! Nothing in this crate performs I/O: callers hand in bytes and a `now`, and
//! get values or errors back. That keeps every rule testable without a
//! network, a disk or a clock.

#![forbid(unsafe_code)]

pub mod algorithm;
pub mod ca;
pub mod certificate;
pub mod der;
pub mod fingerprint;
pub mod issued;
pub mod manifest;
pub mod pairing;
pub mod rekey;
pub mod rotation;
pub mod subject;
pub mod trust;
pub mod validity;

pub use algorithm::{KeyAlgorithm, SignatureScheme};
pub use ca::{CaError, CertificateAuthority};
pub use certificate::{CertificateError, CertificateInfo};
pub use fingerprint::{CertificateFingerprint, FingerprintError, SpkiPin, TerminalFingerprint};
pub use manifest::{
    ManifestError, UnverifiedManifest, VendorAlgorithm, VendorKey, VerifiedManifest,
};
pub use pairing::{Commitment, Nonce, PairingCode, PairingError};
pub use rekey::{ProvenSuccessor, RekeyProofError, RekeyStatement};
pub use rustls_pki_types::{CertificateDer, CertificateSigningRequestDer};
pub use subject::{Subject, SubjectError};
pub use trust::{FirmwareRoots, TrustError, TrustedCertificate};
