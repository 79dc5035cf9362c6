//! Issuing rules of a certificate authority: the development CA that
//! `pairgate ca` runs in the acquirer's role, and any operator CA built on
//! the same code. A CSR's requested extensions are never copied: the CA
//! writes every extension itself, so a terminal cannot ask to become a CA
//! or a server.

use std::net::IpAddr;
use std::time::SystemTime;

use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyUsagePurpose,
    PublicKeyData, SanType, SigningKey,
};
use rustls_pki_types::CertificateDer;
use x509_parser::prelude::*;

use crate::certificate::{
    CertificateError, CertificateInfo, check_public_key, check_signature_algorithm,
    distinguished_name, random_serial, validity,
};
use crate::subject::Subject;

/// Why the CA refused to issue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CaError {
    /// The CSR could not be parsed.
    #[error("not a valid certificate signing request: {0}")]
    MalformedCsr(String),
    /// The CSR's self-signature does not verify: the requester does not
    /// hold the key.
    #[error("the CSR's signature does not verify (proof of key possession failed)")]
    BadCsrSignature,
    /// The CSR or key breaks the algorithm rules.
    #[error("CSR refused: {0}")]
    Refused(#[from] CertificateError),
    /// The CA certificate's key is not the CA key given.
    #[error("the CA key does not match the CA certificate")]
    KeyMismatch,
    /// A server certificate needs at least one DNS name or IP address.
    #[error("a server certificate needs at least one DNS name or IP address")]
    NoServerNames,
    /// rcgen failed to build or sign.
    #[error("could not issue the certificate: {0}")]
    Build(String),
}

/// The subject public key of a request, checked and ready to certify.
pub struct RequestedKey {
    key: rcgen::SubjectPublicKeyInfo,
    subject: rcgen::DistinguishedName,
}

impl RequestedKey {
    /// Parses and checks a DER CSR: its signature must verify (proof of
    /// possession), its signature algorithm must not be SHA-1/MD5 and its
    /// key must be strong. Only the subject and the key are kept.
    pub fn from_csr(csr_der: &[u8]) -> Result<Self, CaError> {
        let (rest, csr) = X509CertificationRequest::from_der(csr_der)
            .map_err(|e| CaError::MalformedCsr(e.to_string()))?;
        if !rest.is_empty() {
            return Err(CaError::MalformedCsr("trailing bytes after the CSR".into()));
        }
        check_signature_algorithm(&csr.signature_algorithm)?;
        let spki = &csr.certification_request_info.subject_pki;
        check_public_key(spki)?;
        csr.verify_signature()
            .map_err(|_| CaError::BadCsrSignature)?;
        let subject = distinguished_name(&csr.certification_request_info.subject)?;
        Self::from_spki_with_subject(spki.raw, subject)
    }

    /// The DER SubjectPublicKeyInfo of a CSR that passes [`Self::from_csr`]'s
    /// checks (its signature proves the requester holds the key).
    pub fn proven_spki(csr_der: &[u8]) -> Result<Vec<u8>, CaError> {
        Self::from_csr(csr_der)?;
        let (_, csr) = X509CertificationRequest::from_der(csr_der)
            .map_err(|e| CaError::MalformedCsr(e.to_string()))?;
        Ok(csr.certification_request_info.subject_pki.raw.to_vec())
    }

    /// A key given as a DER SubjectPublicKeyInfo (no proof of possession:
    /// for keys whose holder the CA operator already trusts).
    pub fn from_spki(spki_der: &[u8], subject: &Subject) -> Result<Self, CaError> {
        let (_, spki) = SubjectPublicKeyInfo::from_der(spki_der)
            .map_err(|e| CaError::MalformedCsr(format!("public key: {e}")))?;
        check_public_key(&spki)?;
        Self::from_spki_with_subject(spki_der, subject.to_distinguished_name())
    }

    fn from_spki_with_subject(
        spki_der: &[u8],
        subject: rcgen::DistinguishedName,
    ) -> Result<Self, CaError> {
        let key = rcgen::SubjectPublicKeyInfo::from_der(spki_der)
            .map_err(|e| CaError::MalformedCsr(format!("public key: {e}")))?;
        Ok(Self { key, subject })
    }
}

/// A CA: its certificate and a key that signs for it (in a key store, in
/// memory, or anywhere else that implements rcgen's `SigningKey`).
pub struct CertificateAuthority<S: SigningKey> {
    certificate: CertificateDer<'static>,
    issuer: Issuer<'static, S>,
}

impl<S: SigningKey> CertificateAuthority<S> {
    /// Creates a new self-signed root CA certificate for `key`.
    pub fn new_root(
        key: S,
        subject: &Subject,
        now: SystemTime,
        days: u32,
    ) -> Result<Self, CaError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = subject.to_distinguished_name();
        params.serial_number = Some(random_serial());
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        validity(&mut params, now, days);
        let cert = params
            .self_signed(&key)
            .map_err(|e| CaError::Build(e.to_string()))?;
        let certificate = cert.der().clone();
        Self::from_parts(certificate, key)
    }

    /// A CA from its certificate and key; refused when they do not match.
    pub fn from_parts(certificate: CertificateDer<'static>, key: S) -> Result<Self, CaError> {
        let info = CertificateInfo::parse(&certificate)?;
        if info.spki_der != key.subject_public_key_info() {
            return Err(CaError::KeyMismatch);
        }
        let issuer = Issuer::from_ca_cert_der(&certificate, key)
            .map_err(|e| CaError::Build(e.to_string()))?;
        Ok(Self {
            certificate,
            issuer,
        })
    }

    /// The CA certificate.
    pub fn certificate(&self) -> &CertificateDer<'static> {
        &self.certificate
    }

    /// Issues a terminal client certificate for a checked request: subject
    /// from the request, and nothing else from it.
    pub fn issue_client_certificate(
        &self,
        request: &RequestedKey,
        now: SystemTime,
        days: u32,
    ) -> Result<CertificateDer<'static>, CaError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = request.subject.clone();
        params.serial_number = Some(random_serial());
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        validity(&mut params, now, days);
        self.sign(&params, &request.key)
    }

    /// Issues a server certificate with the given names.
    pub fn issue_server_certificate(
        &self,
        request: &RequestedKey,
        dns_names: &[String],
        ip_addresses: &[IpAddr],
        now: SystemTime,
        days: u32,
    ) -> Result<CertificateDer<'static>, CaError> {
        if dns_names.is_empty() && ip_addresses.is_empty() {
            return Err(CaError::NoServerNames);
        }
        let mut params = CertificateParams::default();
        params.distinguished_name = request.subject.clone();
        params.serial_number = Some(random_serial());
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        for name in dns_names {
            let name = name
                .clone()
                .try_into()
                .map_err(|_| CaError::Build(format!("{name:?} is not a valid DNS name")))?;
            params.subject_alt_names.push(SanType::DnsName(name));
        }
        for ip in ip_addresses {
            params.subject_alt_names.push(SanType::IpAddress(*ip));
        }
        validity(&mut params, now, days);
        self.sign(&params, &request.key)
    }

    /// A CRL listing `revoked` (certificate serials in hex, with when
    /// each was revoked), numbered `number`, valid from `now` for
    /// `valid_for`: DER. A serial that is not hex is refused.
    pub fn revocation_list(
        &self,
        revoked: &[(String, SystemTime)],
        number: u64,
        now: SystemTime,
        valid_for: std::time::Duration,
    ) -> Result<Vec<u8>, CaError> {
        let revoked_certs = revoked
            .iter()
            .map(|(serial, at)| {
                let bytes = hex::decode(serial)
                    .map_err(|_| CaError::Build(format!("serial {serial:?} is not hex")))?;
                Ok(rcgen::RevokedCertParams {
                    serial_number: rcgen::SerialNumber::from(bytes),
                    revocation_time: ::time::OffsetDateTime::from(*at),
                    reason_code: Some(rcgen::RevocationReason::CessationOfOperation),
                    invalidity_date: None,
                })
            })
            .collect::<Result<Vec<_>, CaError>>()?;
        let this_update = ::time::OffsetDateTime::from(now) - ::time::Duration::minutes(5);
        let params = rcgen::CertificateRevocationListParams {
            this_update,
            next_update: ::time::OffsetDateTime::from(now + valid_for),
            crl_number: rcgen::SerialNumber::from(number.to_be_bytes().to_vec()),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        let crl = params
            .signed_by(&self.issuer)
            .map_err(|e| CaError::Build(e.to_string()))?;
        Ok(crl.der().to_vec())
    }

    fn sign(
        &self,
        params: &CertificateParams,
        key: &impl PublicKeyData,
    ) -> Result<CertificateDer<'static>, CaError> {
        let cert = params
            .signed_by(key, &self.issuer)
            .map_err(|e| CaError::Build(e.to_string()))?;
        Ok(cert.der().clone())
    }
}
