//! Server key rotation, pinned all the way (docs/protocol.md, "Server key
//! rotation"). The server announces its next key with a statement signed
//! by its current key: the sequence number, both keys' SubjectPublicKeyInfo
//! and the time from which the next key may be served. The statement
//! carries the signer's whole SPKI, so a terminal that holds only the pin
//! can check it. A terminal follows the chain of statements from a pin it
//! holds, link by link; [`advance`] decides what it pins next.
//!
//! Refused: a statement whose signature does not verify with the key it
//! names, a chain with a gap (the presented key is not reached from a held
//! pin), a statement signed by a key the terminal never pinned (ignored:
//! it reaches nothing), a key no statement announced, and a key older than
//! the one the terminal follows (statements lead forward only, so a thief
//! of a retired key cannot take the terminal back).

use std::collections::HashMap;

use aws_lc_rs::signature::{UnparsedPublicKey, VerificationAlgorithm};
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::{KeyAlgorithm, SignatureScheme, SpkiPin};

/// Domain separation from every other pairgate signature.
const CONTEXT: &[u8] = b"pairgate-rotation-v1\0";

/// Why a rotation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RotationError {
    /// A key in a statement does not parse or is not a server key.
    #[error("rotation statement {seq}: {why}")]
    Key {
        /// The statement's number.
        seq: u64,
        /// What is wrong.
        why: String,
    },
    /// A statement reached from a held pin does not verify.
    #[error("rotation statement {0} does not verify with the key it names as its signer")]
    BadSignature(u64),
    /// The key is not reached from any held pin by verified statements.
    #[error(
        "server key {presented} is not announced by a chain of rotation statements from a \
         pinned key ({held})"
    )]
    UnknownKey {
        /// The key the server presented or named.
        presented: SpkiPin,
        /// The pins held, comma-separated.
        held: String,
    },
}

/// The scheme a server key signs its statements with.
pub const fn statement_scheme(algorithm: KeyAlgorithm) -> SignatureScheme {
    crate::rekey::proof_scheme(algorithm)
}

/// What the current key signs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RotationStatement {
    /// 1 for the first rotation, one more each time.
    pub seq: u64,
    /// The signing (current) key's SubjectPublicKeyInfo, DER.
    pub previous_spki: Vec<u8>,
    /// The next key's SubjectPublicKeyInfo, DER.
    pub next_spki: Vec<u8>,
    /// From when the next key may be served (Unix seconds).
    pub not_before: u64,
}

/// A statement and its signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedRotation {
    /// The statement.
    pub statement: RotationStatement,
    /// The signature by `previous_spki`'s key (ECDSA DER, or RSA-PSS).
    pub signature: Vec<u8>,
}

impl RotationStatement {
    /// The bytes signed.
    pub fn message(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(CONTEXT.len() + 20 + self.previous_spki.len() * 2);
        out.extend_from_slice(CONTEXT);
        out.extend_from_slice(&self.seq.to_be_bytes());
        for spki in [&self.previous_spki, &self.next_spki] {
            let len = u16::try_from(spki.len()).unwrap_or(u16::MAX);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(spki);
        }
        out.extend_from_slice(&self.not_before.to_be_bytes());
        out
    }

    /// The signer's pin.
    pub fn previous_pin(&self) -> SpkiPin {
        SpkiPin::of_spki(&self.previous_spki)
    }

    /// The announced key's pin.
    pub fn next_pin(&self) -> SpkiPin {
        SpkiPin::of_spki(&self.next_spki)
    }
}

fn verification(
    seq: u64,
    spki_der: &[u8],
) -> Result<(&'static dyn VerificationAlgorithm, Vec<u8>), RotationError> {
    let key = |why: String| RotationError::Key { seq, why };
    let (rest, spki) = SubjectPublicKeyInfo::from_der(spki_der).map_err(|e| key(e.to_string()))?;
    if !rest.is_empty() {
        return Err(key("trailing bytes after the key".into()));
    }
    let algorithm = crate::algorithm::statement_verification(&spki).map_err(key)?;
    Ok((algorithm, spki.subject_public_key.data.to_vec()))
}

impl SignedRotation {
    /// Checks the signature with the key the statement names as signer,
    /// and that the next key is one a server may use.
    pub fn verify(&self) -> Result<(), RotationError> {
        let seq = self.statement.seq;
        verification(seq, &self.statement.next_spki)?;
        let (algorithm, raw) = verification(seq, &self.statement.previous_spki)?;
        UnparsedPublicKey::new(algorithm, &raw)
            .verify(&self.statement.message(), &self.signature)
            .map_err(|_| RotationError::BadSignature(seq))
    }
}

/// The server keys a terminal pins, and the rotation its current one came
/// from (0: the key it paired with).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinSet {
    /// The pins, current first.
    pub pins: Vec<SpkiPin>,
    /// The rotation that announced the current pin.
    pub seq: u64,
}

/// What a terminal pins after the server says its key is `current` (and
/// announces `next`) with `rotations`: `current` must be reached from a
/// held pin through verified statements, which only lead forward, so a
/// retired key is never reached again. The result pins `current` and,
/// when announced after it, `next`; the older pins are dropped.
pub fn advance(
    held: &PinSet,
    current: SpkiPin,
    next: Option<SpkiPin>,
    rotations: &[SignedRotation],
) -> Result<PinSet, RotationError> {
    let mut reached: HashMap<SpkiPin, u64> = held.pins.iter().map(|p| (*p, held.seq)).collect();
    let mut ordered: Vec<&SignedRotation> = rotations.iter().collect();
    ordered.sort_by_key(|r| r.statement.seq);
    for rotation in ordered {
        let s = &rotation.statement;
        let Some(&from) = reached.get(&s.previous_pin()) else {
            continue;
        };
        if s.seq <= from {
            continue;
        }
        rotation.verify()?;
        let at = reached.entry(s.next_pin()).or_insert(s.seq);
        *at = (*at).max(s.seq);
    }
    let Some(&seq) = reached.get(&current) else {
        let held_text: Vec<String> = held.pins.iter().map(SpkiPin::to_hex).collect();
        return Err(RotationError::UnknownKey {
            presented: current,
            held: held_text.join(", "),
        });
    };
    let mut pins = vec![current];
    if let Some(next) = next.filter(|n| *n != current && reached.get(n).is_some_and(|&s| s > seq)) {
        pins.push(next);
    }
    Ok(PinSet { pins, seq })
}

#[cfg(test)]
mod tests;
