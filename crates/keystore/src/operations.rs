//! Operations built on the [`KeyStore`] trait that are the same for every
//! backend: CSRs and self-signed certificates signed inside the store,
//! certificate import, trust-store admission, the terminal fingerprint.

use std::time::SystemTime;

use pairgate_pki::{
    CertificateDer, CertificateSigningRequestDer, FirmwareRoots, Subject, TerminalFingerprint,
    TrustedCertificate,
};

use crate::{Alias, KeyStore, KeyStoreError, StoreSigner};

/// A PKCS#10 CSR for the key of `alias`, signed inside the store.
pub fn certificate_request(
    store: &dyn KeyStore,
    alias: &Alias,
    subject: &Subject,
) -> Result<CertificateSigningRequestDer<'static>, KeyStoreError> {
    let signer = StoreSigner::new(store, alias)?;
    Ok(pairgate_pki::certificate::certificate_request(
        &signer, subject,
    )?)
}

/// Makes a self-signed client certificate for the key of `alias`, signed
/// inside the store, and sets it as the alias's certificate.
pub fn self_signed_certificate(
    store: &dyn KeyStore,
    alias: &Alias,
    subject: &Subject,
    now: SystemTime,
    days: u32,
) -> Result<CertificateDer<'static>, KeyStoreError> {
    let signer = StoreSigner::new(store, alias)?;
    let cert =
        pairgate_pki::certificate::self_signed_client_certificate(&signer, subject, now, days)?;
    store.set_certificate_chain(alias, std::slice::from_ref(&cert))?;
    Ok(cert)
}

/// Makes a self-signed server certificate (serverAuth, with the given
/// names) for the key of `alias`, signed inside the store, and sets it as
/// the alias's certificate.
pub fn self_signed_server_certificate(
    store: &dyn KeyStore,
    alias: &Alias,
    subject: &Subject,
    dns_names: &[String],
    ip_addresses: &[std::net::IpAddr],
    now: SystemTime,
    days: u32,
) -> Result<CertificateDer<'static>, KeyStoreError> {
    let signer = StoreSigner::new(store, alias)?;
    let cert = pairgate_pki::certificate::self_signed_server_certificate(
        &signer,
        subject,
        dns_names,
        ip_addresses,
        now,
        days,
    )?;
    store.set_certificate_chain(alias, std::slice::from_ref(&cert))?;
    Ok(cert)
}

/// Imports a certificate chain (PEM or DER bytes, leaf first) for `alias`;
/// refused unless the leaf certifies the alias's key.
pub fn import_certificate_chain(
    store: &dyn KeyStore,
    alias: &Alias,
    input: &[u8],
) -> Result<Vec<CertificateDer<'static>>, KeyStoreError> {
    let chain = pairgate_pki::certificate::parse_certificates(input)?;
    store.set_certificate_chain(alias, &chain)?;
    Ok(chain)
}

/// Applies the firmware-root rule to a certificate (PEM or DER) and adds
/// it to the trust store.
pub fn add_trusted_certificate(
    store: &dyn KeyStore,
    roots: &FirmwareRoots,
    input: &[u8],
    now: SystemTime,
) -> Result<TrustedCertificate, KeyStoreError> {
    let certs = pairgate_pki::certificate::parse_certificates(input)?;
    let [cert] = certs.as_slice() else {
        return Err(KeyStoreError::Certificate(
            pairgate_pki::CertificateError::Malformed(format!(
                "expected one certificate, found {}",
                certs.len()
            )),
        ));
    };
    let trusted = roots.admit(cert, now)?;
    store.add_trusted(&trusted)?;
    Ok(trusted)
}

/// The Terminal Certificate Fingerprint of `alias`: SHA-256 of its leaf
/// certificate.
pub fn terminal_fingerprint(
    store: &dyn KeyStore,
    alias: &Alias,
) -> Result<TerminalFingerprint, KeyStoreError> {
    let chain = store.certificate_chain(alias)?;
    let leaf = chain
        .first()
        .ok_or_else(|| KeyStoreError::NoCertificate(alias.to_string()))?;
    Ok(TerminalFingerprint::of_certificate(leaf))
}
