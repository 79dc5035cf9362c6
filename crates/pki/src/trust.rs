//! The terminal trust-store rule: a server or CA certificate may enter only
//! when it is signed by one of the firmware roots (the acquirer's root, the
//! vendor's root) baked into the terminal, uses no broken algorithm, has a
//! strong key and is inside its validity. `TrustedCertificate` can only be
//! made by [`FirmwareRoots::admit`], so a key store cannot be handed a
//! certificate that skipped the rule.

use std::time::SystemTime;

use rustls_pki_types::CertificateDer;
use x509_parser::prelude::*;

use crate::certificate::{CertificateError, CertificateInfo, parse_certificates};
use crate::fingerprint::CertificateFingerprint;

/// Why a certificate was not admitted to the trust store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustError {
    /// The certificate itself breaks a rule.
    #[error(transparent)]
    Certificate(#[from] CertificateError),
    /// No firmware root signed it.
    #[error(
        "certificate {subject:?} (issuer {issuer:?}) is not signed by any firmware root; \
         only certificates signed by the acquirer or vendor roots may enter the trust store"
    )]
    NotSignedByFirmwareRoot {
        /// Subject of the refused certificate.
        subject: String,
        /// Its issuer.
        issuer: String,
    },
    /// A firmware root itself is unusable.
    #[error("firmware root {index} is refused: {reason}")]
    BadRoot {
        /// Position of the root in the bundle, from 1.
        index: usize,
        /// Why.
        reason: CertificateError,
    },
    /// No firmware roots were configured.
    #[error("no firmware roots are configured: give a PEM bundle of the acquirer and vendor roots")]
    NoRoots,
}

#[derive(Clone, Debug)]
struct Root {
    der: CertificateDer<'static>,
    info: CertificateInfo,
}

/// The roots a terminal's firmware trusts to sign its trust store.
#[derive(Clone, Debug)]
pub struct FirmwareRoots {
    roots: Vec<Root>,
}

/// A certificate that passed the trust-store rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustedCertificate {
    der: CertificateDer<'static>,
    info: CertificateInfo,
    signed_by: CertificateFingerprint,
}

impl TrustedCertificate {
    /// The certificate's DER.
    pub fn der(&self) -> &CertificateDer<'static> {
        &self.der
    }

    /// What the certificate says.
    pub fn info(&self) -> &CertificateInfo {
        &self.info
    }

    /// Fingerprint of the firmware root that signed it.
    pub fn signed_by(&self) -> CertificateFingerprint {
        self.signed_by
    }
}

impl FirmwareRoots {
    /// Roots from a PEM bundle (or one DER certificate). Every root must
    /// meet the same algorithm rules as the certificates it admits: a root
    /// self-signed with SHA-1 or holding a weak key is refused, so that a
    /// misconfigured bundle fails at start rather than trusting less than
    /// it seems.
    pub fn from_pem(input: &[u8]) -> Result<Self, TrustError> {
        let certs = parse_certificates(input).map_err(|e| match e {
            CertificateError::Empty => TrustError::NoRoots,
            other => TrustError::Certificate(other),
        })?;
        Self::from_certificates(certs)
    }

    /// Roots from DER certificates.
    pub fn from_certificates(certs: Vec<CertificateDer<'static>>) -> Result<Self, TrustError> {
        if certs.is_empty() {
            return Err(TrustError::NoRoots);
        }
        let mut roots = Vec::with_capacity(certs.len());
        for (i, der) in certs.into_iter().enumerate() {
            let info = CertificateInfo::parse(&der).map_err(|reason| TrustError::BadRoot {
                index: i + 1,
                reason,
            })?;
            roots.push(Root { der, info });
        }
        Ok(Self { roots })
    }

    /// The roots' DER certificates.
    pub fn certificates(&self) -> impl Iterator<Item = &CertificateDer<'static>> {
        self.roots.iter().map(|r| &r.der)
    }

    /// Applies the trust-store rule to a DER certificate at time `now`.
    pub fn admit(&self, der: &[u8], now: SystemTime) -> Result<TrustedCertificate, TrustError> {
        let info = CertificateInfo::parse(der)?;
        let (_, cert) = X509Certificate::from_der(der)
            .map_err(|e| CertificateError::Malformed(e.to_string()))?;
        for root in self
            .roots
            .iter()
            .filter(|r| r.info.subject_der == info.issuer_der)
        {
            let Ok((_, root_cert)) = X509Certificate::from_der(&root.der) else {
                continue;
            };
            if cert.verify_signature(Some(root_cert.public_key())).is_ok() {
                // Who signed it matters most, so it is reported first; a
                // firmware-signed certificate must still be in its validity.
                info.check_validity(now)?;
                return Ok(TrustedCertificate {
                    der: CertificateDer::from(der.to_vec()),
                    info,
                    signed_by: root.info.fingerprint,
                });
            }
        }
        Err(TrustError::NotSignedByFirmwareRoot {
            subject: info.subject,
            issuer: info.issuer,
        })
    }
}
