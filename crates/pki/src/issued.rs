//! Rule `ca` of the approval rules: a terminal certificate issued by an
//! acquirer's or vendor's CA (one the server is configured with) to a
//! named serial, in its subject's common name or a DNS subject
//! alternative name. Pure: bytes and a `now` in, a verdict out.

use std::time::SystemTime;

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::*;

use crate::certificate::CertificateError;
use crate::fingerprint::CertificateFingerprint;
use crate::trust::{FirmwareRoots, TrustError};

/// Why a certificate does not vouch for a serial.
#[derive(Debug, thiserror::Error)]
pub enum IssuedError {
    /// None of the CAs issued it, or it is outside its validity.
    #[error(transparent)]
    NotIssued(#[from] TrustError),
    /// A CA issued it, to other names.
    #[error("the certificate names {names:?}, not serial {serial}")]
    OtherSerial {
        /// The serial asked for.
        serial: String,
        /// The names it carries.
        names: Vec<String>,
    },
    /// It does not parse.
    #[error(transparent)]
    Certificate(#[from] CertificateError),
}

/// The names a certificate is issued to: the common names of its subject
/// and its DNS subject alternative names.
pub fn certified_names(der: &[u8]) -> Result<Vec<String>, CertificateError> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| CertificateError::Malformed(e.to_string()))?;
    let mut names: Vec<String> = cert
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok().map(str::to_owned))
        .collect();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::DNSName(dns) = name {
                names.push((*dns).to_owned());
            }
        }
    }
    Ok(names)
}

/// Whether `der` was issued by one of `cas` (signature, and validity at
/// `now`) to `serial`; the issuing CA's fingerprint when it was.
pub fn issued_for(
    cas: &FirmwareRoots,
    der: &[u8],
    serial: &str,
    now: SystemTime,
) -> Result<CertificateFingerprint, IssuedError> {
    let issued = cas.admit(der, now)?;
    let names = certified_names(der)?;
    if names.iter().any(|n| n == serial) {
        Ok(issued.signed_by())
    } else {
        Err(IssuedError::OtherSerial {
            serial: serial.to_owned(),
            names,
        })
    }
}
