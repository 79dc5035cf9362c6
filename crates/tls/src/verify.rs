//! Certificate verifiers. Every one of them still checks the handshake
//! signature through the provider, so a peer proves it holds the key of
//! the certificate it shows; they differ in which certificates they accept.
//!
//! - [`ServerVerifier`]: the terminal's view of a server, by SPKI pin, by
//!   chain to the trust store, or both.
//! - [`ClientVerifier`]: the server's view of a terminal: any certificate
//!   with sound algorithms (the gate), or only those a
//!   [`ClientCertAcceptor`] accepts (the master: paired fingerprints). It
//!   builds no CA chain: for pinned self-signed terminals the fingerprint
//!   lookup replaces it, and that is most of a full handshake's cost saved.

use std::sync::Arc;

use pairgate_pki::{CertificateInfo, SpkiPin, TerminalFingerprint};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, Error, OtherError, SignatureScheme,
};

use crate::PinMismatch;

/// Decides whether a client certificate may connect, by its fingerprint.
/// The master service implements it with the paired-terminal set.
pub trait ClientCertAcceptor: Send + Sync + std::fmt::Debug {
    /// `Ok` to let the handshake go on; `Err` with the reason to refuse it.
    fn accept(
        &self,
        fingerprint: &TerminalFingerprint,
        certificate: &CertificateDer<'_>,
    ) -> Result<(), String>;
}

/// A refusal with a reason a person can act on.
#[derive(Debug)]
pub(crate) struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

fn other(e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(e))))
}

/// Parses and checks the algorithms of a peer certificate (no SHA-1/MD5
/// signatures, no weak keys).
fn checked_info(cert: &CertificateDer<'_>) -> Result<CertificateInfo, Error> {
    CertificateInfo::parse(cert).map_err(|e| match e {
        pairgate_pki::CertificateError::Malformed(_) => {
            Error::InvalidCertificate(CertificateError::BadEncoding)
        }
        other_error => other(Refused(other_error.to_string())),
    })
}

/// The terminal's verifier of a server.
#[derive(Debug)]
pub(crate) struct ServerVerifier {
    pub pins: Vec<SpkiPin>,
    /// Fingerprints of the trust-store certificates, for error messages.
    pub trust_store: Vec<pairgate_pki::CertificateFingerprint>,
    pub chain: Option<Arc<WebPkiServerVerifier>>,
    pub provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let info = checked_info(end_entity)?;
        if !self.pins.is_empty() {
            let presented = SpkiPin::of_spki(&info.spki_der);
            if !self.pins.contains(&presented) {
                return Err(other(PinMismatch {
                    expected: self.pins.clone(),
                    presented,
                }));
            }
        }
        match &self.chain {
            Some(chain) => chain
                .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
                .map_err(|e| {
                    let expected: Vec<String> =
                        self.trust_store.iter().map(|f| f.to_hex()).collect();
                    other(Refused(format!(
                        "server certificate {} ({}) is not trusted: {e}; the trust store holds {}",
                        info.fingerprint,
                        info.subject,
                        expected.join(", ")
                    )))
                }),
            None => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The server's verifier of a terminal.
#[derive(Debug)]
pub(crate) struct ClientVerifier {
    pub acceptor: Option<Arc<dyn ClientCertAcceptor>>,
    pub provider: Arc<CryptoProvider>,
    /// The largest chain (leaf and intermediates) accepted, in DER bytes.
    pub max_chain_bytes: usize,
    /// Accept a certificate that expired at most this long ago.
    pub expired_grace: Option<std::time::Duration>,
    /// What time it is (the server's clock, so validity in the handshake
    /// and per request agree).
    pub clock: pairgate_clock::Clock,
}

impl ClientCertVerifier for ClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        // Before anything is parsed or kept: a session stores the chain.
        let chain_bytes = intermediates
            .iter()
            .fold(end_entity.len(), |sum, c| sum.saturating_add(c.len()));
        if chain_bytes > self.max_chain_bytes {
            return Err(other(Refused(format!(
                "the client certificate chain is {chain_bytes} bytes; at most {} are accepted",
                self.max_chain_bytes
            ))));
        }
        let info = checked_info(end_entity)?;
        if info.is_ca {
            return Err(other(Refused(format!(
                "certificate {} ({}) is a CA certificate (CA:TRUE) and cannot identify a terminal",
                info.fingerprint, info.subject
            ))));
        }
        let now = self.clock.now();
        let expired_within_grace = || {
            self.expired_grace
                .is_some_and(|grace| now <= info.validity().1 + grace)
        };
        info.check_validity(now)
            .or_else(|e| match e {
                pairgate_pki::CertificateError::Expired { .. } if expired_within_grace() => Ok(()),
                other_error => Err(other_error),
            })
            .map_err(|e| match e {
                pairgate_pki::CertificateError::Expired { .. } => {
                    Error::InvalidCertificate(CertificateError::Expired)
                }
                pairgate_pki::CertificateError::NotYetValid { .. } => {
                    Error::InvalidCertificate(CertificateError::NotValidYet)
                }
                other_error => other(Refused(other_error.to_string())),
            })?;
        if let Some(acceptor) = &self.acceptor {
            let fingerprint = TerminalFingerprint::of_certificate(end_entity);
            acceptor
                .accept(&fingerprint, end_entity)
                .map_err(|reason| other(Refused(reason)))?;
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
