//! The proof of possession a terminal sends when it changes its key over
//! the master (docs/protocol.md, "Re-key"). The new key signs a statement
//! binding the terminal's serial, its current (old) fingerprint, the new
//! certificate's fingerprint and a fresh challenge from the server, so a
//! proof cannot be replayed for another challenge, moved to another
//! terminal, or made by anyone who lacks the new key. The old key's part
//! is the mutual-TLS session the request arrives on.
//!
//! The terminal signs with [`proof_scheme`] of its key; the server checks
//! with [`RekeyStatement::verify`], which returns the [`ProvenSuccessor`]
//! that the store requires to record the new key.

use aws_lc_rs::signature::{UnparsedPublicKey, VerificationAlgorithm};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::{KeyAlgorithm, SignatureScheme, TerminalFingerprint};

/// Domain separation: no other pairgate signature starts with these bytes.
const CONTEXT: &[u8] = b"pairgate-rekey-v1\0";

/// Length of a server challenge in bytes.
pub const CHALLENGE_LEN: usize = 32;

/// Why a re-key proof was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RekeyProofError {
    /// The new certificate does not parse.
    #[error("the new certificate does not parse: {0}")]
    Certificate(String),
    /// The new key is of a kind the proof cannot use.
    #[error("the new key is unusable: {0}")]
    UnsupportedKey(String),
    /// The signature does not verify with the new certificate's key.
    #[error("the proof of possession does not verify with the new certificate's key")]
    BadSignature,
}

/// The scheme a terminal key signs its proof with.
pub const fn proof_scheme(algorithm: KeyAlgorithm) -> SignatureScheme {
    match algorithm {
        KeyAlgorithm::P256 => SignatureScheme::EcdsaP256Sha256,
        KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 => SignatureScheme::RsaPssSha256,
    }
}

/// What the new key signs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RekeyStatement<'a> {
    /// The terminal's serial.
    pub serial: &'a str,
    /// The fingerprint of the certificate it is paired with now.
    pub old: &'a TerminalFingerprint,
    /// The fingerprint of the new certificate (in CA mode: the SHA-256
    /// of the CSR's DER, since the certificate does not exist yet).
    pub new: &'a TerminalFingerprint,
    /// The server's challenge.
    pub challenge: &'a [u8; CHALLENGE_LEN],
}

/// A new certificate whose key signed the statement: the proof the store
/// asks for before it records a successor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProvenSuccessor {
    /// The new certificate's fingerprint.
    pub fingerprint: TerminalFingerprint,
    /// The predecessor it was proven against.
    pub predecessor: TerminalFingerprint,
    /// The serial it was proven for.
    pub serial: String,
}

/// A CSR whose key signed the statement (CA mode): the server issues its
/// certificate, then [`ProvenCsr::issued`] makes the successor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProvenCsr {
    spki_der: Vec<u8>,
    predecessor: TerminalFingerprint,
    serial: String,
}

impl ProvenCsr {
    /// The CSR's public key (DER SubjectPublicKeyInfo), to certify.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// The successor: `certificate` (DER), which must certify the CSR's key.
    pub fn issued(self, certificate: &[u8]) -> Result<ProvenSuccessor, RekeyProofError> {
        let (_, cert) = X509Certificate::from_der(certificate)
            .map_err(|e| RekeyProofError::Certificate(e.to_string()))?;
        if cert.public_key().raw != self.spki_der.as_slice() {
            return Err(RekeyProofError::Certificate(
                "the issued certificate is not for the requested key".into(),
            ));
        }
        Ok(ProvenSuccessor {
            fingerprint: TerminalFingerprint::of_certificate(certificate),
            predecessor: self.predecessor,
            serial: self.serial,
        })
    }
}

fn terminal_key_verification(
    spki: &x509_parser::x509::SubjectPublicKeyInfo<'_>,
) -> Result<&'static dyn VerificationAlgorithm, RekeyProofError> {
    crate::algorithm::statement_verification(spki).map_err(RekeyProofError::UnsupportedKey)
}

impl RekeyStatement<'_> {
    /// CA mode: checks `signature` over this statement, whose `new` is the
    /// SHA-256 of `csr` (DER), with the CSR's key; the CSR's own
    /// signature must verify too.
    pub fn verify_csr(&self, csr: &[u8], signature: &[u8]) -> Result<ProvenCsr, RekeyProofError> {
        use x509_parser::certification_request::X509CertificationRequest;
        if TerminalFingerprint::of_certificate(csr) != *self.new {
            return Err(RekeyProofError::Certificate(
                "the CSR's digest is not the one the statement names".into(),
            ));
        }
        let (_, request) = X509CertificationRequest::from_der(csr)
            .map_err(|e| RekeyProofError::Certificate(format!("CSR: {e}")))?;
        request.verify_signature().map_err(|_| {
            RekeyProofError::Certificate("the CSR's signature does not verify".into())
        })?;
        let spki = &request.certification_request_info.subject_pki;
        let algorithm = terminal_key_verification(spki)?;
        UnparsedPublicKey::new(algorithm, &spki.subject_public_key.data)
            .verify(&self.message(), signature)
            .map_err(|_| RekeyProofError::BadSignature)?;
        Ok(ProvenCsr {
            spki_der: spki.raw.to_vec(),
            predecessor: *self.old,
            serial: self.serial.to_owned(),
        })
    }

    /// The bytes signed: the context, then each field length-prefixed.
    pub fn message(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(CONTEXT.len() + 4 * 2 + self.serial.len() + 96);
        out.extend_from_slice(CONTEXT);
        for part in [
            self.serial.as_bytes(),
            self.old.as_bytes(),
            self.new.as_bytes(),
            self.challenge,
        ] {
            let len = u16::try_from(part.len()).unwrap_or(u16::MAX);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(part);
        }
        out
    }

    /// Checks `signature` over this statement with the key of
    /// `certificate` (DER), whose fingerprint must be `new`.
    pub fn verify(
        &self,
        certificate: &[u8],
        signature: &[u8],
    ) -> Result<ProvenSuccessor, RekeyProofError> {
        if TerminalFingerprint::of_certificate(certificate) != *self.new {
            return Err(RekeyProofError::Certificate(
                "its fingerprint is not the one the statement names".into(),
            ));
        }
        let (_, cert) = X509Certificate::from_der(certificate)
            .map_err(|e| RekeyProofError::Certificate(e.to_string()))?;
        let spki = cert.public_key();
        let algorithm = terminal_key_verification(spki)?;
        UnparsedPublicKey::new(algorithm, &spki.subject_public_key.data)
            .verify(&self.message(), signature)
            .map_err(|_| RekeyProofError::BadSignature)?;
        Ok(ProvenSuccessor {
            fingerprint: *self.new,
            predecessor: *self.old,
            serial: self.serial.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};

    use super::*;

    fn key_and_certificate() -> (EcdsaKeyPair, Vec<u8>) {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref()).unwrap();
        let key = rcgen::KeyPair::try_from(pkcs8.as_ref()).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["t".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (pair, cert.der().to_vec())
    }

    #[test]
    fn a_proof_verifies_only_for_its_own_statement() {
        let (pair, cert) = key_and_certificate();
        let old = TerminalFingerprint::from_bytes([1; 32]);
        let new = TerminalFingerprint::of_certificate(&cert);
        let challenge = [7u8; CHALLENGE_LEN];
        let statement = RekeyStatement {
            serial: "ATM-1",
            old: &old,
            new: &new,
            challenge: &challenge,
        };
        let rng = SystemRandom::new();
        let signature = pair.sign(&rng, &statement.message()).unwrap();
        let proven = statement.verify(&cert, signature.as_ref()).unwrap();
        assert_eq!(proven.fingerprint, new);
        assert_eq!(proven.predecessor, old);

        let other_challenge = [8u8; CHALLENGE_LEN];
        let replayed = RekeyStatement {
            challenge: &other_challenge,
            ..statement
        };
        assert_eq!(
            replayed.verify(&cert, signature.as_ref()),
            Err(RekeyProofError::BadSignature)
        );
        let moved = RekeyStatement {
            serial: "ATM-2",
            ..statement
        };
        assert_eq!(
            moved.verify(&cert, signature.as_ref()),
            Err(RekeyProofError::BadSignature)
        );
        let (_, stranger) = key_and_certificate();
        assert!(matches!(
            statement.verify(&stranger, signature.as_ref()),
            Err(RekeyProofError::Certificate(_))
        ));
    }

    #[test]
    fn fields_cannot_slide_into_each_other() {
        let (old, new) = (
            TerminalFingerprint::from_bytes([1; 32]),
            TerminalFingerprint::from_bytes([2; 32]),
        );
        let c = [0u8; CHALLENGE_LEN];
        let a = RekeyStatement {
            serial: "AB",
            old: &old,
            new: &new,
            challenge: &c,
        };
        let b = RekeyStatement { serial: "A", ..a };
        assert_ne!(a.message(), b.message());
        assert!(a.message().starts_with(CONTEXT));
    }
}
