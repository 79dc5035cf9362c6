//! Pure verification of the audit log: record hashes, chain links and the
//! signed checkpoints, fed in order by the database reader and by the
//! offline export reader alike. A checkpoint is handed in before the
//! records it covers; the verifier then compares each record's hash with
//! the signed one, so a record that was edited (and the chain recomputed
//! after it) is named exactly, not merely "somewhere before checkpoint N".

use aws_lc_rs::{digest, signature};
use pairgate_pki::SpkiPin;

use super::AuditRecord;

/// Domain separation for the v1 record hash.
const RECORD_LABEL: &[u8] = b"pairgate audit v1";
/// Domain separation for the v1 checkpoint signature.
const CHECKPOINT_LABEL: &[u8] = b"pairgate audit checkpoint v1";
/// The hash before the first record.
pub(crate) const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

fn field(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// The v1 hash of a record: SHA-256 over the label and every field,
/// length-prefixed so no two records encode alike.
pub fn record_hash(
    seq: i64,
    at: i64,
    actor: &str,
    action: &str,
    subject: &str,
    detail: &str,
    prev: &str,
) -> String {
    let mut input = Vec::with_capacity(256);
    field(&mut input, RECORD_LABEL);
    field(&mut input, &seq.to_be_bytes());
    field(&mut input, &at.to_be_bytes());
    field(&mut input, actor.as_bytes());
    field(&mut input, action.as_bytes());
    field(&mut input, subject.as_bytes());
    field(&mut input, detail.as_bytes());
    field(&mut input, prev.as_bytes());
    hex::encode(digest::digest(&digest::SHA256, &input))
}

/// A signed checkpoint: the hashes of records `first_seq..=last_seq`, in
/// order, signed by the server identity key (ECDSA P-256, SHA-256).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Checkpoint {
    /// First record covered.
    pub first_seq: i64,
    /// Last record covered.
    pub last_seq: i64,
    /// Their hashes, 64 hex digits each, concatenated.
    pub hashes: String,
    /// When it was signed (Unix ms).
    pub at: i64,
    /// The signing key's DER SubjectPublicKeyInfo, hex.
    pub spki: String,
    /// The signature (DER ECDSA), hex.
    pub signature: String,
}

impl Checkpoint {
    /// What is signed: the label, the range, the time and SHA-256 over
    /// the hashes.
    pub(crate) fn message(first_seq: i64, last_seq: i64, at: i64, hashes: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(96);
        field(&mut out, CHECKPOINT_LABEL);
        field(&mut out, &first_seq.to_be_bytes());
        field(&mut out, &last_seq.to_be_bytes());
        field(&mut out, &at.to_be_bytes());
        field(
            &mut out,
            digest::digest(&digest::SHA256, hashes.as_bytes()).as_ref(),
        );
        out
    }

    /// The signed hash of record `seq`, if this checkpoint covers it.
    pub fn hash_of(&self, seq: i64) -> Option<&str> {
        let index = usize::try_from(seq.checked_sub(self.first_seq)?).ok()?;
        self.hashes.get(index * 64..index * 64 + 64)
    }

    /// Checks the signature, that the key is one of the server's (`pins`:
    /// its identity, and every key a rotation announced), and that the
    /// hash list fits the range; the reason when not.
    pub fn verify(&self, pins: &[SpkiPin]) -> Result<(), String> {
        let count = self.last_seq - self.first_seq + 1;
        if self.first_seq < 1
            || count < 1
            || i64::try_from(self.hashes.len()) != Ok(count.saturating_mul(64))
            || !self.hashes.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(format!(
                "checkpoint {}..{} is malformed",
                self.first_seq, self.last_seq
            ));
        }
        let spki = hex::decode(&self.spki).map_err(|_| "checkpoint key is not hex".to_owned())?;
        if !pins.contains(&SpkiPin::of_spki(&spki)) {
            return Err(format!(
                "checkpoint {}..{} is signed by a key other than the server's",
                self.first_seq, self.last_seq
            ));
        }
        // A P-256 SubjectPublicKeyInfo is a fixed 26-byte header and the
        // 65-byte point; rebuilding it from the point proves the shape.
        let point = spki.get(26..).unwrap_or_default();
        if spki.len() != 91 || pairgate_pki::der::p256_spki(point) != spki {
            return Err("checkpoint key is not a P-256 key".to_owned());
        }
        let sig = hex::decode(&self.signature).map_err(|_| "checkpoint signature is not hex")?;
        let message = Self::message(self.first_seq, self.last_seq, self.at, &self.hashes);
        signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_ASN1, point)
            .verify(&message, &sig)
            .map_err(|_| {
                format!(
                    "checkpoint {}..{}: the signature does not verify",
                    self.first_seq, self.last_seq
                )
            })
    }
}

/// The outcome of checking the log.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct AuditVerification {
    /// Records checked.
    pub records: i64,
    /// The first record that does not match, if any.
    pub first_broken: Option<i64>,
    /// Why it does not match.
    pub reason: Option<String>,
    /// The last record covered by a valid signed checkpoint (0: none).
    pub anchored_through: i64,
    /// Records checked that no signed checkpoint covers.
    pub unanchored: i64,
    /// The first record checked (1 for a full check).
    pub checked_from: i64,
}

impl AuditVerification {
    /// Whether everything checked is intact.
    pub fn intact(&self) -> bool {
        self.first_broken.is_none()
    }
}

/// Checks records and checkpoints fed in order (each checkpoint before
/// the records it covers). Stops at the first problem.
#[derive(Debug)]
pub struct ChainVerifier {
    pins: Option<Vec<SpkiPin>>,
    prev: String,
    next_seq: i64,
    current: Option<Checkpoint>,
    out: AuditVerification,
}

impl ChainVerifier {
    /// A verifier starting at record `from_seq` whose predecessor has hash
    /// `prev` (1 and [`GENESIS`] for a full check). With `pins`,
    /// checkpoints must be signed by one of those keys (the server's, before
    /// and after its rotations); without, they are not consulted.
    pub fn new(pins: Option<Vec<SpkiPin>>, from_seq: i64, prev: &str) -> Self {
        Self {
            pins,
            prev: prev.to_owned(),
            next_seq: from_seq,
            current: None,
            out: AuditVerification {
                checked_from: from_seq,
                ..AuditVerification::default()
            },
        }
    }

    /// A verifier for the whole log.
    pub fn full(pins: Option<Vec<SpkiPin>>) -> Self {
        Self::new(pins, 1, GENESIS)
    }

    fn broken(&mut self, seq: i64, reason: String) {
        if self.out.first_broken.is_none() {
            self.out.first_broken = Some(seq);
            self.out.reason = Some(reason);
        }
    }

    /// Whether a problem was found (feeding more changes nothing).
    pub fn is_broken(&self) -> bool {
        self.out.first_broken.is_some()
    }

    /// Takes a checkpoint, which must come before the records it covers.
    pub fn checkpoint(&mut self, checkpoint: Checkpoint) {
        let Some(pins) = &self.pins else {
            return;
        };
        if self.is_broken() {
            return;
        }
        if let Err(reason) = checkpoint.verify(pins) {
            self.broken(checkpoint.first_seq.max(self.next_seq), reason);
            return;
        }
        self.current = Some(checkpoint);
    }

    /// Takes the next record.
    pub fn record(&mut self, r: &AuditRecord) {
        if self.is_broken() {
            return;
        }
        self.out.records += 1;
        if r.seq != self.next_seq {
            let seq = self.next_seq;
            self.broken(
                seq.min(r.seq),
                format!("record {seq} is missing or out of order"),
            );
            return;
        }
        if r.prev_hash != self.prev {
            self.broken(
                r.seq,
                format!("record {} does not link to the one before", r.seq),
            );
            return;
        }
        let recomputed = record_hash(
            r.seq,
            r.at,
            &r.actor,
            &r.action,
            &r.subject,
            &r.detail,
            &r.prev_hash,
        );
        if recomputed != r.hash {
            self.broken(
                r.seq,
                format!("record {} was edited: its hash does not match", r.seq),
            );
            return;
        }
        match self.current.as_ref().and_then(|c| c.hash_of(r.seq)) {
            Some(signed) if signed == r.hash => self.out.anchored_through = r.seq,
            Some(_) => {
                self.broken(
                    r.seq,
                    format!(
                        "record {} differs from the server's signed checkpoint: it was edited and the chain recomputed",
                        r.seq
                    ),
                );
                return;
            }
            None => self.out.unanchored += 1,
        }
        self.prev = r.hash.clone();
        self.next_seq += 1;
    }

    /// The outcome, given the chain head as stored (records deleted from
    /// the end show as a head beyond the last record).
    pub fn finish(mut self, head_seq: i64, head_hash: &str) -> AuditVerification {
        if !self.is_broken() && (head_seq != self.next_seq - 1 || head_hash != self.prev) {
            let seq = self.next_seq;
            self.broken(seq, format!("records from {seq} on were removed"));
        }
        self.out
    }

    /// The outcome of a file, which has no separate head.
    pub fn finish_file(self) -> AuditVerification {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_binds_every_field() {
        let base = record_hash(1, 2, "a", "b", "c", "{}", GENESIS);
        assert_eq!(base.len(), 64);
        assert_ne!(base, record_hash(2, 2, "a", "b", "c", "{}", GENESIS));
        assert_ne!(base, record_hash(1, 2, "ab", "", "c", "{}", GENESIS));
        assert_ne!(base, record_hash(1, 2, "a", "b", "c", "{ }", GENESIS));
    }

    fn chain(n: i64) -> Vec<AuditRecord> {
        let mut prev = GENESIS.to_owned();
        (1..=n)
            .map(|seq| {
                let hash = record_hash(seq, seq, "a", "x", "s", "{}", &prev);
                let r = AuditRecord {
                    seq,
                    at: seq,
                    actor: "a".into(),
                    action: "x".into(),
                    subject: "s".into(),
                    detail: "{}".into(),
                    prev_hash: prev.clone(),
                    hash: hash.clone(),
                };
                prev = hash;
                r
            })
            .collect()
    }

    #[test]
    fn a_recomputed_chain_passes_without_checkpoints_only() {
        let mut records = chain(5);
        records[2].detail = "{\"forged\":true}".into();
        let mut prev = records[1].hash.clone();
        for r in records.iter_mut().skip(2) {
            r.prev_hash = prev.clone();
            r.hash = record_hash(
                r.seq, r.at, &r.actor, &r.action, &r.subject, &r.detail, &prev,
            );
            prev = r.hash.clone();
        }
        let mut v = ChainVerifier::full(None);
        for r in &records {
            v.record(r);
        }
        assert!(v.finish(5, &prev).intact());
        // Delete the last record: the head gives it away.
        let mut v = ChainVerifier::full(None);
        for r in &records[..4] {
            v.record(r);
        }
        assert_eq!(v.finish(5, &prev).first_broken, Some(5));
    }
}
