//! Terminal re-key at the master (docs/protocol.md, "Re-key"): a paired
//! terminal asks for a challenge with its current key, then sends a new
//! self-signed certificate and the new key's signature over the re-key
//! statement. The master checks the certificate and the proof before the
//! store uses up the challenge and records the successor, so a replayed
//! request, a request without a valid proof, and one for a key any
//! terminal ever held are refused and change nothing.
//!
//! The switch happens on the successor's first request (see
//! [`crate::master`]): the store makes it the paired key and retires the
//! old one, which every master then refuses.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use pairgate_pki::rekey::CHALLENGE_LEN;
use pairgate_pki::{CertificateInfo, ProvenSuccessor, RekeyStatement, TerminalFingerprint};
use pairgate_proto::{ErrorCode, RekeyAnswer, RekeyChallenge, RekeyRequest};
use pairgate_store::{RekeyRefusal, SuccessorRequest};

use crate::ApiError;
use crate::http::{JsonBody, Peer, rfc3339, unix_millis};
use crate::master::{Master, PairedPeer};
use crate::terminal_ca::TerminalCa;

/// How long a challenge is accepted.
const CHALLENGE_TTL: Duration = Duration::from_secs(300);

/// Largest certificate accepted in a re-key request, PEM.
const MAX_CERTIFICATE_PEM: usize = 12 * 1024;

fn refused(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> ApiError {
    ApiError::new(status, code, message)
}

/// The re-key requests come from the terminal's paired key, not from a
/// successor it has not switched to yet; with an expired certificate
/// (which the request layer lets through within `expired_grace_secs`),
/// only from the newest key of the terminal's lineage.
fn current_key(peer: &Peer, paired: &PairedPeer, now: SystemTime) -> Result<(), ApiError> {
    let terminal = &paired.terminal;
    if terminal.paired_fingerprint != Some(peer.fingerprint) {
        return Err(refused(
            StatusCode::CONFLICT,
            ErrorCode::Conflict,
            "a re-key is asked for with the terminal's paired key",
        ));
    }
    if now > peer.valid.1 && terminal.successor_fingerprint.is_some() {
        return Err(refused(
            StatusCode::FORBIDDEN,
            ErrorCode::CertExpired,
            "this expired certificate is not the terminal's newest key; re-key with that one",
        )
        .closing());
    }
    Ok(())
}

/// `POST /v1/rekey/challenge`.
pub(crate) async fn challenge(
    State(master): State<Master>,
    Extension(peer): Extension<Peer>,
    Extension(paired): Extension<PairedPeer>,
) -> Result<Response, ApiError> {
    current_key(&peer, &paired, master.clock.now())?;
    let mut bytes = [0u8; CHALLENGE_LEN];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| {
        tracing::error!("the system random generator failed");
        refused(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            "internal error; the server log has details",
        )
    })?;
    let challenge = hex::encode(bytes);
    let expires = master.clock.now() + CHALLENGE_TTL;
    master
        .store
        .issue_rekey_challenge(
            &paired.terminal.serial,
            &peer.fingerprint,
            &challenge,
            expires,
        )
        .await?;
    Ok(Json(RekeyChallenge {
        challenge,
        expires_at: rfc3339(unix_millis(expires)),
        issues_certificates: master.terminal_ca.is_some(),
    })
    .into_response())
}

/// `POST /v1/rekey`.
pub(crate) async fn rekey(
    State(master): State<Master>,
    Extension(peer): Extension<Peer>,
    Extension(paired): Extension<PairedPeer>,
    JsonBody(body): JsonBody<RekeyRequest>,
) -> Result<Response, ApiError> {
    let now = master.clock.now();
    current_key(&peer, &paired, now)?;
    let challenge = parse_challenge(&body.challenge)?;
    let proof = base64::engine::general_purpose::STANDARD
        .decode(body.proof.trim())
        .map_err(|_| {
            refused(
                StatusCode::BAD_REQUEST,
                ErrorCode::BadProof,
                "proof is not base64",
            )
        })?;
    let serial = paired.terminal.serial.as_str();
    let proof = Proof {
        serial,
        old: &peer.fingerprint,
        challenge: &challenge,
        signature: &proof,
        now,
    };
    let (proven, certificate, chain) = match (&body.certificate, &body.csr) {
        (Some(pem), None) => {
            let (proven, certificate) = proof.self_signed(pem)?;
            (proven, certificate, None)
        }
        (None, Some(pem)) => proof.certified(master.terminal_ca.clone(), pem).await?,
        _ => {
            return Err(refused(
                StatusCode::BAD_REQUEST,
                ErrorCode::Invalid,
                "send the new key's certificate or a CSR, one of them",
            ));
        }
    };
    let expired = now > peer.valid.1;
    let request = SuccessorRequest {
        proven: &proven,
        challenge: &body.challenge,
        certificate: &certificate,
        overlap: master.rekey_overlap,
        predecessor_expired: expired,
    };
    let recorded = master.store.record_successor(request, now).await?;
    let recorded = recorded.map_err(|refusal| match refusal {
        RekeyRefusal::BadChallenge => refused(
            StatusCode::FORBIDDEN,
            ErrorCode::BadChallenge,
            "the challenge is unknown, used, expired or another key's; ask for a new one",
        ),
        RekeyRefusal::NotCurrent => refused(
            StatusCode::CONFLICT,
            ErrorCode::Conflict,
            "this key is no longer the terminal's paired key",
        ),
        RekeyRefusal::KeyInUse => refused(
            StatusCode::CONFLICT,
            ErrorCode::Conflict,
            format!(
                "key {} is or was a terminal's key; make a new one",
                proven.fingerprint
            ),
        ),
    })?;
    tracing::info!(serial, fingerprint = %recorded.fingerprint, previous = %peer.fingerprint, "terminal re-keyed");
    master
        .paired
        .refresh_serial(&master.store, &paired.terminal.serial)
        .await?;
    Ok(Json(RekeyAnswer {
        fingerprint: recorded.fingerprint.to_hex(),
        previous_fingerprint: recorded.previous.to_hex(),
        old_key_refused_after: rfc3339(recorded.old_key_until),
        certificate_chain: chain,
    })
    .into_response())
}

fn parse_challenge(text: &str) -> Result<[u8; CHALLENGE_LEN], ApiError> {
    let mut out = [0u8; CHALLENGE_LEN];
    hex::decode_to_slice(text, &mut out).map_err(|_| {
        refused(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadChallenge,
            "challenge is not 64 hex digits",
        )
    })?;
    Ok(out)
}

/// The new certificate: one PEM certificate with sound algorithms, no CA,
/// valid now.
fn parse_certificate(pem: &str, now: SystemTime) -> Result<Vec<u8>, ApiError> {
    let bad = |why: String| refused(StatusCode::BAD_REQUEST, ErrorCode::Invalid, why);
    if pem.len() > MAX_CERTIFICATE_PEM {
        return Err(bad(format!(
            "the certificate is over {MAX_CERTIFICATE_PEM} bytes"
        )));
    }
    let mut certificates = pairgate_pki::certificate::parse_certificates(pem.as_bytes())
        .map_err(|e| bad(format!("certificate: {e}")))?;
    let (Some(der), true) = (certificates.pop(), certificates.is_empty()) else {
        return Err(bad("send exactly one certificate, the new one".into()));
    };
    let der = der.to_vec();
    let info = CertificateInfo::parse(&der).map_err(|e| bad(format!("certificate: {e}")))?;
    if info.is_ca {
        return Err(bad("a CA certificate cannot identify a terminal".into()));
    }
    info.check_validity(now)
        .map_err(|e| bad(format!("the new certificate: {e}")))?;
    Ok(der)
}

/// What a re-key request proves with, before its new key's form is read.
struct Proof<'a> {
    serial: &'a str,
    old: &'a TerminalFingerprint,
    challenge: &'a [u8; CHALLENGE_LEN],
    signature: &'a [u8],
    now: SystemTime,
}

fn bad_proof(e: pairgate_pki::RekeyProofError) -> ApiError {
    refused(StatusCode::FORBIDDEN, ErrorCode::BadProof, e.to_string())
}

impl Proof<'_> {
    fn statement<'s>(&'s self, new: &'s TerminalFingerprint) -> RekeyStatement<'s> {
        RekeyStatement {
            serial: self.serial,
            old: self.old,
            new,
            challenge: self.challenge,
        }
    }

    /// A self-signed new certificate (PEM) and the proof its key made.
    fn self_signed(&self, pem: &str) -> Result<(ProvenSuccessor, Vec<u8>), ApiError> {
        let certificate = parse_certificate(pem, self.now)?;
        let new = TerminalFingerprint::of_certificate(&certificate);
        let proven = self
            .statement(&new)
            .verify(&certificate, self.signature)
            .map_err(bad_proof)?;
        Ok((proven, certificate))
    }

    /// CA mode: the CSR's key proven, then certified by the terminal CA;
    /// the successor, its certificate and the chain (PEM) for the terminal.
    async fn certified(
        &self,
        ca: Option<Arc<TerminalCa>>,
        pem: &str,
    ) -> Result<(ProvenSuccessor, Vec<u8>, Option<String>), ApiError> {
        let Some(ca) = ca else {
            return Err(refused(
                StatusCode::BAD_REQUEST,
                ErrorCode::Invalid,
                "this server has no terminal CA: send a self-signed certificate",
            ));
        };
        let csr = pairgate_pki::certificate::parse_csr(pem.as_bytes())
            .map_err(|e| refused(StatusCode::BAD_REQUEST, ErrorCode::Invalid, e.to_string()))?;
        let new = TerminalFingerprint::of_certificate(&csr);
        let proven_csr = self
            .statement(&new)
            .verify_csr(&csr, self.signature)
            .map_err(bad_proof)?;
        // The CA key may be in an HSM: signed off the async workers.
        let (spki, owner, now) = (
            proven_csr.spki_der().to_vec(),
            self.serial.to_owned(),
            self.now,
        );
        let [leaf, ca_cert] = tokio::task::spawn_blocking(move || ca.issue(&spki, &owner, now))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r)
            .map_err(|why| {
                tracing::error!(error = %why, "the terminal CA could not issue");
                refused(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    ErrorCode::Internal,
                    "internal error; the server log has details",
                )
            })?;
        let proven = proven_csr.issued(&leaf).map_err(bad_proof)?;
        let chain = [&leaf, &ca_cert]
            .map(|c| pairgate_pki::certificate::certificate_pem(c))
            .concat();
        Ok((proven, leaf.to_vec(), Some(chain)))
    }
}
