//! Reading certificates (PEM or DER) into the facts pairgate shows and
//! checks, the algorithm rules every certificate must meet (no SHA-1, no
//! MD5, no RSA under 2048 bits, only P-256/P-384/Ed25519 curves), and
//! building the certificates and CSRs a terminal's key signs inside its key
//! store.

use std::time::SystemTime;

use ::time::OffsetDateTime;
use rcgen::{
    CertificateParams, DnType, DnValue, ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose,
    SerialNumber, SigningKey,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateSigningRequestDer};
use x509_parser::prelude::*;

use crate::fingerprint::CertificateFingerprint;
use crate::subject::Subject;

/// Why a certificate or CSR was refused or could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    /// Not a parsable X.509 structure.
    #[error("not a valid certificate: {0}")]
    Malformed(String),
    /// No certificate found in the input.
    #[error("no certificate found in the input (expected PEM \"BEGIN CERTIFICATE\" blocks or DER)")]
    Empty,
    /// Signed with a broken hash (SHA-1, MD5, MD2).
    #[error("signed with {algorithm}, which pairgate refuses (SHA-1 and MD5 are broken)")]
    WeakSignatureAlgorithm {
        /// The algorithm's name.
        algorithm: String,
    },
    /// Signed with an algorithm pairgate does not know.
    #[error("signature algorithm {oid} is not supported")]
    UnsupportedSignatureAlgorithm {
        /// The algorithm OID.
        oid: String,
    },
    /// A key too weak to trust.
    #[error("weak public key: {0}")]
    WeakKey(String),
    /// A key type pairgate does not accept.
    #[error("unsupported public key: {0}")]
    UnsupportedKey(String),
    /// The certificate's validity starts in the future.
    #[error("certificate is not valid before {not_before}")]
    NotYetValid {
        /// RFC 3339 start of validity.
        not_before: String,
    },
    /// The certificate's validity has ended.
    #[error("certificate expired at {not_after}")]
    Expired {
        /// RFC 3339 end of validity.
        not_after: String,
    },
    /// The signature does not verify.
    #[error("signature does not verify: {0}")]
    BadSignature(String),
    /// rcgen could not build the certificate.
    #[error("could not build the certificate: {0}")]
    Build(String),
}

/// What pairgate shows and checks about a certificate.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct CertificateInfo {
    /// SHA-256 of the DER.
    pub fingerprint: CertificateFingerprint,
    /// Subject, RFC 4514 style.
    pub subject: String,
    /// Issuer, RFC 4514 style.
    pub issuer: String,
    /// Serial number in hex.
    pub serial: String,
    /// Start of validity, RFC 3339.
    pub not_before: String,
    /// End of validity, RFC 3339.
    pub not_after: String,
    /// Signature algorithm name.
    pub signature_algorithm: String,
    /// Public key description, e.g. `EC P-256` or `RSA 2048`.
    pub public_key: String,
    /// Whether basicConstraints says CA.
    pub is_ca: bool,
    /// DER SubjectPublicKeyInfo.
    #[serde(skip)]
    pub spki_der: Vec<u8>,
    /// DER of the subject name.
    #[serde(skip)]
    pub subject_der: Vec<u8>,
    /// DER of the issuer name.
    #[serde(skip)]
    pub issuer_der: Vec<u8>,
    #[serde(skip)]
    not_before_unix: i64,
    #[serde(skip)]
    not_after_unix: i64,
}

fn rfc3339(t: &ASN1Time) -> String {
    t.to_datetime()
        .format(&::time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

impl CertificateInfo {
    /// Parses a DER certificate and checks its algorithms: the signature
    /// algorithm must not use SHA-1 or MD5 and the key must be strong.
    pub fn parse(der: &[u8]) -> Result<Self, CertificateError> {
        let (rest, cert) = X509Certificate::from_der(der)
            .map_err(|e| CertificateError::Malformed(e.to_string()))?;
        if !rest.is_empty() {
            return Err(CertificateError::Malformed(
                "trailing bytes after the certificate".into(),
            ));
        }
        let signature_algorithm = check_signature_algorithm(&cert.signature_algorithm)?;
        let public_key = check_public_key(cert.public_key())?;
        let validity = cert.validity();
        Ok(Self {
            fingerprint: CertificateFingerprint::of_certificate(der),
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            serial: cert.raw_serial_as_string().replace(':', ""),
            not_before: rfc3339(&validity.not_before),
            not_after: rfc3339(&validity.not_after),
            signature_algorithm,
            public_key,
            is_ca: cert.is_ca(),
            spki_der: cert.public_key().raw.to_vec(),
            subject_der: cert.subject().as_raw().to_vec(),
            issuer_der: cert.issuer().as_raw().to_vec(),
            not_before_unix: validity.not_before.timestamp(),
            not_after_unix: validity.not_after.timestamp(),
        })
    }

    /// Refuses the certificate unless `now` lies inside its validity.
    pub fn check_validity(&self, now: SystemTime) -> Result<(), CertificateError> {
        let now = unix(now);
        if now < self.not_before_unix {
            return Err(CertificateError::NotYetValid {
                not_before: self.not_before.clone(),
            });
        }
        if now > self.not_after_unix {
            return Err(CertificateError::Expired {
                not_after: self.not_after.clone(),
            });
        }
        Ok(())
    }

    /// The validity window (`notBefore`, `notAfter`) as times; a time
    /// before 1970 reads as the epoch.
    pub fn validity(&self) -> (SystemTime, SystemTime) {
        let at = |secs: i64| {
            SystemTime::UNIX_EPOCH
                + std::time::Duration::from_secs(u64::try_from(secs).unwrap_or(0))
        };
        (at(self.not_before_unix), at(self.not_after_unix))
    }
}

pub(crate) fn unix(t: SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// Names the signature algorithm, refusing broken and unknown ones.
pub(crate) fn check_signature_algorithm(
    alg: &AlgorithmIdentifier<'_>,
) -> Result<String, CertificateError> {
    let oid = alg.algorithm.to_id_string();
    let weak_error = |name: &str| CertificateError::WeakSignatureAlgorithm {
        algorithm: name.to_owned(),
    };
    let weak = |name: &str| Err(weak_error(name));
    let name = match oid.as_str() {
        "1.2.840.113549.1.1.11" => "sha256WithRSAEncryption",
        "1.2.840.113549.1.1.12" => "sha384WithRSAEncryption",
        "1.2.840.113549.1.1.13" => "sha512WithRSAEncryption",
        "1.2.840.10045.4.3.2" => "ecdsa-with-SHA256",
        "1.2.840.10045.4.3.3" => "ecdsa-with-SHA384",
        "1.3.101.112" => "Ed25519",
        "1.2.840.113549.1.1.10" => {
            let params = alg
                .parameters
                .as_ref()
                .and_then(|p| x509_parser::signature_algorithm::RsaSsaPssParams::try_from(p).ok())
                .ok_or_else(|| weak_error("RSASSA-PSS with default (SHA-1) parameters"))?;
            match params.hash_algorithm_oid().to_id_string().as_str() {
                "2.16.840.1.101.3.4.2.1" => "RSASSA-PSS-SHA256",
                "2.16.840.1.101.3.4.2.2" => "RSASSA-PSS-SHA384",
                "2.16.840.1.101.3.4.2.3" => "RSASSA-PSS-SHA512",
                _ => return weak("RSASSA-PSS with SHA-1"),
            }
        }
        "1.2.840.113549.1.1.5" | "1.3.14.3.2.29" => return weak("sha1WithRSAEncryption (SHA-1)"),
        "1.2.840.10045.4.1" => return weak("ecdsa-with-SHA1 (SHA-1)"),
        "1.2.840.10040.4.3" => return weak("dsa-with-SHA1 (SHA-1)"),
        "1.2.840.113549.1.1.4" => return weak("md5WithRSAEncryption (MD5)"),
        "1.2.840.113549.1.1.2" => return weak("md2WithRSAEncryption (MD2)"),
        _ => return Err(CertificateError::UnsupportedSignatureAlgorithm { oid }),
    };
    Ok(name.to_owned())
}

/// Describes the public key, refusing weak and unsupported ones.
pub(crate) fn check_public_key(
    spki: &SubjectPublicKeyInfo<'_>,
) -> Result<String, CertificateError> {
    use x509_parser::public_key::PublicKey;
    let parsed = spki
        .parsed()
        .map_err(|e| CertificateError::Malformed(format!("public key: {e}")))?;
    match parsed {
        PublicKey::RSA(rsa) => {
            let bits = rsa.key_size();
            if bits < 2048 {
                Err(CertificateError::WeakKey(format!(
                    "RSA {bits} bits (at least 2048 required)"
                )))
            } else if bits > 8192 {
                Err(CertificateError::UnsupportedKey(format!(
                    "RSA {bits} bits (at most 8192)"
                )))
            } else {
                Ok(format!("RSA {bits}"))
            }
        }
        PublicKey::EC(_) => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|oid| oid.to_id_string())
                .unwrap_or_default();
            match curve.as_str() {
                "1.2.840.10045.3.1.7" => Ok("EC P-256".to_owned()),
                "1.3.132.0.34" => Ok("EC P-384".to_owned()),
                "1.2.840.10045.3.1.1" | "1.3.132.0.33" => Err(CertificateError::WeakKey(format!(
                    "EC curve {curve} is under 256 bits"
                ))),
                other => Err(CertificateError::UnsupportedKey(format!(
                    "EC curve {other} (only P-256 and P-384)"
                ))),
            }
        }
        PublicKey::Unknown(_) if spki.algorithm.algorithm.to_id_string() == "1.3.101.112" => {
            Ok("Ed25519".to_owned())
        }
        PublicKey::DSA(_) => Err(CertificateError::WeakKey(
            "DSA keys are not accepted".into(),
        )),
        _ => Err(CertificateError::UnsupportedKey(format!(
            "algorithm {}",
            spki.algorithm.algorithm.to_id_string()
        ))),
    }
}

/// Reads certificates from PEM (any number of `CERTIFICATE` blocks) or a
/// single DER certificate.
pub fn parse_certificates(input: &[u8]) -> Result<Vec<CertificateDer<'static>>, CertificateError> {
    let looks_pem = input.windows(11).any(|w| w == b"-----BEGIN ");
    if looks_pem {
        let certs = CertificateDer::pem_slice_iter(input)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| CertificateError::Malformed(format!("PEM: {e}")))?;
        if certs.is_empty() {
            return Err(CertificateError::Empty);
        }
        Ok(certs)
    } else if input.first() == Some(&0x30) {
        Ok(vec![CertificateDer::from(input.to_vec())])
    } else {
        Err(CertificateError::Empty)
    }
}

/// Reads one CSR from PEM or DER.
pub fn parse_csr(input: &[u8]) -> Result<CertificateSigningRequestDer<'static>, CertificateError> {
    if input.windows(11).any(|w| w == b"-----BEGIN ") {
        CertificateSigningRequestDer::from_pem_slice(input)
            .map_err(|e| CertificateError::Malformed(format!("CSR PEM: {e}")))
    } else {
        Ok(CertificateSigningRequestDer::from(input.to_vec()))
    }
}

/// PEM text of a DER certificate.
pub fn certificate_pem(der: &[u8]) -> String {
    pem_block("CERTIFICATE", der)
}

/// PEM text of a DER CRL.
pub fn crl_pem(der: &[u8]) -> String {
    pem_block("X509 CRL", der)
}

/// PEM text of a DER CSR.
pub fn csr_pem(der: &[u8]) -> String {
    pem_block("CERTIFICATE REQUEST", der)
}

fn pem_block(label: &str, der: &[u8]) -> String {
    ::pem::encode_config(
        &::pem::Pem::new(label, der),
        ::pem::EncodeConfig::new().set_line_ending(::pem::LineEnding::LF),
    )
}

/// A random positive 128-bit certificate serial.
pub(crate) fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    // A failing system RNG leaves zeros; rcgen still writes a valid serial,
    // and aws-lc aborts on RNG failure anyway.
    let _ = aws_lc_rs::rand::fill(&mut bytes);
    if let Some(first) = bytes.first_mut() {
        *first &= 0x7f;
        *first |= 0x01;
    }
    SerialNumber::from_slice(&bytes)
}

pub(crate) fn validity(params: &mut CertificateParams, now: SystemTime, days: u32) {
    let now = OffsetDateTime::from(now);
    // Five minutes of back-dating absorbs clock skew between terminal and CA.
    params.not_before = now - ::time::Duration::minutes(5);
    params.not_after = now + ::time::Duration::days(i64::from(days));
}

/// The parameters of a terminal's client certificate: no CA flag,
/// digitalSignature, clientAuth, no SANs.
pub fn client_certificate_params(
    subject: &Subject,
    now: SystemTime,
    days: u32,
) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = subject.to_distinguished_name();
    params.serial_number = Some(random_serial());
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    validity(&mut params, now, days);
    params
}

/// A self-signed client certificate for `key`, signed by the key itself
/// (inside its key store when `key` is a key-store signer).
pub fn self_signed_client_certificate(
    key: &impl SigningKey,
    subject: &Subject,
    now: SystemTime,
    days: u32,
) -> Result<CertificateDer<'static>, CertificateError> {
    let params = client_certificate_params(subject, now, days);
    let cert = params
        .self_signed(key)
        .map_err(|e| CertificateError::Build(e.to_string()))?;
    Ok(cert.der().clone())
}

/// A self-signed server certificate for `key`: serverAuth, the given names
/// as SANs. The server identity that terminals pin by its key.
pub fn self_signed_server_certificate(
    key: &impl SigningKey,
    subject: &Subject,
    dns_names: &[String],
    ip_addresses: &[std::net::IpAddr],
    now: SystemTime,
    days: u32,
) -> Result<CertificateDer<'static>, CertificateError> {
    let mut params = client_certificate_params(subject, now, days);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    for name in dns_names {
        let name = name
            .clone()
            .try_into()
            .map_err(|_| CertificateError::Build(format!("{name:?} is not a valid DNS name")))?;
        params.subject_alt_names.push(rcgen::SanType::DnsName(name));
    }
    for ip in ip_addresses {
        params
            .subject_alt_names
            .push(rcgen::SanType::IpAddress(*ip));
    }
    let cert = params
        .self_signed(key)
        .map_err(|e| CertificateError::Build(e.to_string()))?;
    Ok(cert.der().clone())
}

/// A PKCS#10 CSR for `key` with `subject`, signed by the key.
pub fn certificate_request(
    key: &impl SigningKey,
    subject: &Subject,
) -> Result<CertificateSigningRequestDer<'static>, CertificateError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = subject.to_distinguished_name();
    let csr = params
        .serialize_request(key)
        .map_err(|e| CertificateError::Build(e.to_string()))?;
    Ok(csr.der().clone())
}

/// rcgen's distinguished name from a parsed X.509 name, keeping every
/// attribute as a UTF-8 or printable string.
pub(crate) fn distinguished_name(
    name: &X509Name<'_>,
) -> Result<rcgen::DistinguishedName, CertificateError> {
    let mut dn = rcgen::DistinguishedName::new();
    for attr in name.iter_attributes() {
        let oid: Vec<u64> = attr
            .attr_type()
            .iter()
            .ok_or_else(|| CertificateError::Malformed("subject attribute OID too large".into()))?
            .collect();
        let value = attr
            .as_str()
            .map_err(|_| CertificateError::Malformed("subject attribute is not a string".into()))?;
        let ty = DnType::from_oid(&oid);
        let value = if ty == DnType::CountryName {
            DnValue::PrintableString(
                value
                    .try_into()
                    .map_err(|_| CertificateError::Malformed("country is not printable".into()))?,
            )
        } else {
            DnValue::Utf8String(value.to_owned())
        };
        dn.push(ty, value);
    }
    Ok(dn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trip() {
        let key = rcgen::KeyPair::generate().unwrap();
        let subject = Subject::common_name("t").unwrap();
        let der = self_signed_client_certificate(&key, &subject, SystemTime::now(), 1).unwrap();
        let pem = certificate_pem(&der);
        assert_eq!(
            parse_certificates(pem.as_bytes()).unwrap(),
            vec![der.clone()]
        );
        assert_eq!(parse_certificates(&der).unwrap(), vec![der.clone()]);
        let info = CertificateInfo::parse(&der).unwrap();
        assert_eq!(info.public_key, "EC P-256");
        assert_eq!(info.signature_algorithm, "ecdsa-with-SHA256");
        assert!(!info.is_ca);
        assert!(info.check_validity(SystemTime::now()).is_ok());
        let later = SystemTime::now() + std::time::Duration::from_secs(3 * 86400);
        assert!(matches!(
            info.check_validity(later),
            Err(CertificateError::Expired { .. })
        ));
    }

    #[test]
    fn garbage_is_refused() {
        assert_eq!(parse_certificates(b"hello"), Err(CertificateError::Empty));
        assert!(CertificateInfo::parse(&[0x30, 0x03, 1, 2, 3]).is_err());
    }
}
