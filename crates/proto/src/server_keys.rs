//! `GET /v1/server-keys`, at the gate and the master: the key the server
//! presents now, the next one it announced, and every rotation statement
//! (docs/protocol.md, "Server key rotation"). Keys and signatures travel
//! as hex; [`Rotation::signed`] turns one back into the statement the PKI
//! crate verifies.

use pairgate_pki::SpkiPin;
use pairgate_pki::rotation::{RotationStatement, SignedRotation};

/// The server's keys.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ServerKeys {
    /// The pin of the key served now.
    pub current: SpkiPin,
    /// The pin of the key announced next, if any.
    #[serde(default)]
    pub next: Option<SpkiPin>,
    /// Every rotation statement, oldest first.
    #[serde(default)]
    pub rotations: Vec<Rotation>,
    /// The pins of the operator's offline recovery keys: a rotation one of
    /// them signs is followed like one the server key signs.
    #[serde(default)]
    pub recovery: Vec<SpkiPin>,
}

/// One rotation statement on the wire.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Rotation {
    /// 1 for the first rotation, one more each time.
    pub seq: u64,
    /// The signing key's SubjectPublicKeyInfo (DER, hex).
    pub previous_spki: String,
    /// The announced key's SubjectPublicKeyInfo (DER, hex).
    pub next_spki: String,
    /// From when the next key may be served (Unix seconds).
    pub not_before: u64,
    /// The signature by the previous key (hex).
    pub signature: String,
}

impl Rotation {
    /// The wire form of a signed statement.
    pub fn from_signed(signed: &SignedRotation) -> Self {
        let s = &signed.statement;
        Self {
            seq: s.seq,
            previous_spki: hex::encode(&s.previous_spki),
            next_spki: hex::encode(&s.next_spki),
            not_before: s.not_before,
            signature: hex::encode(&signed.signature),
        }
    }

    /// The statement, or what field is not hex.
    pub fn signed(&self) -> Result<SignedRotation, String> {
        let bytes = |field: &str, text: &str| {
            hex::decode(text).map_err(|_| format!("rotation {}: {field} is not hex", self.seq))
        };
        Ok(SignedRotation {
            statement: RotationStatement {
                seq: self.seq,
                previous_spki: bytes("previous_spki", &self.previous_spki)?,
                next_spki: bytes("next_spki", &self.next_spki)?,
                not_before: self.not_before,
            },
            signature: bytes("signature", &self.signature)?,
        })
    }
}
