//! Signed checkpoints of the audit log in the database, and the checks
//! that read them. The server signs a checkpoint over every record since
//! the last one (after N records, and every T seconds while records
//! arrive), having first re-checked those records, so it never signs over
//! a chain that is already broken. Reading is paged: a full check holds
//! one page of records in memory, whatever the log's size; a view checks
//! only the newest signed run and what came after it.

use std::time::SystemTime;

use pairgate_pki::SpkiPin;
use sqlx::Row;

use super::chain::{ChainVerifier, Checkpoint, GENESIS};
use super::{AuditRecord, AuditVerification, record};
use crate::{Store, StoreError, millis};

/// Records read per page.
const PAGE: i64 = 5_000;
/// Most records one checkpoint covers.
const MAX_RUN: i64 = 10_000;

/// What [`Store::walk`] hands over, in order.
pub(crate) enum Item<'a> {
    /// A checkpoint, before the records it covers.
    Checkpoint(Checkpoint),
    /// The next record.
    Record(&'a AuditRecord),
}

/// Signs checkpoints: the server identity key.
pub trait CheckpointSigner: Send + Sync {
    /// The key's DER SubjectPublicKeyInfo (P-256).
    fn spki(&self) -> &[u8];
    /// An ECDSA P-256 SHA-256 signature (DER) over `message`.
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String>;
}

fn checkpoint(row: &sqlx::any::AnyRow) -> Result<Checkpoint, StoreError> {
    Ok(Checkpoint {
        first_seq: row.try_get("first_seq")?,
        last_seq: row.try_get("last_seq")?,
        hashes: row.try_get("hashes")?,
        at: row.try_get("at")?,
        spki: row.try_get("spki")?,
        signature: row.try_get("signature")?,
    })
}

const RECORD_COLUMNS: &str = "seq, at, actor, action, subject, detail, prev_hash, hash";
const CHECKPOINT_COLUMNS: &str = "first_seq, last_seq, hashes, at, spki, signature";

/// A checkpoint ready to store.
struct SignedRun<'a> {
    first: i64,
    last: i64,
    at: i64,
    hashes: String,
    spki: &'a [u8],
    signature: Vec<u8>,
}

/// A verifier for the records after `last` (all records when there is no
/// checkpoint yet), once `last` itself verifies under `pin`.
fn continuing(pins: Vec<SpkiPin>, last: Option<&Checkpoint>) -> Result<ChainVerifier, StoreError> {
    let Some(c) = last else {
        return Ok(ChainVerifier::full(Some(pins)));
    };
    let mut own = ChainVerifier::new(Some(pins.clone()), c.first_seq, "");
    own.checkpoint(c.clone());
    if own.is_broken() {
        let reason = own.finish_file().reason.unwrap_or_default();
        return Err(StoreError::Corrupt(format!(
            "the last audit checkpoint does not verify ({reason}); not signing over it"
        )));
    }
    let prev = c.hash_of(c.last_seq).unwrap_or_default();
    Ok(ChainVerifier::new(Some(pins), c.last_seq + 1, prev))
}

impl Store {
    async fn records_between(&self, from: i64, to: i64) -> Result<Vec<AuditRecord>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {RECORD_COLUMNS} FROM audit_log WHERE seq >= $1 AND seq <= $2 ORDER BY seq"
        )))
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(record).collect()
    }

    /// Checkpoints that cover any of `from..=to`, in order.
    pub(crate) async fn checkpoints_between(
        &self,
        from: i64,
        to: i64,
    ) -> Result<Vec<Checkpoint>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoints WHERE last_seq >= $1 AND first_seq <= $2 ORDER BY first_seq"
        )))
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(checkpoint).collect()
    }

    async fn last_checkpoint(&self) -> Result<Option<Checkpoint>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoints ORDER BY last_seq DESC LIMIT 1"
        )))
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(checkpoint).transpose()
    }

    /// The chain head: (seq, hash).
    pub(crate) async fn audit_head(&self) -> Result<(i64, String), StoreError> {
        let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok((head.try_get("seq")?, head.try_get("hash")?))
    }

    /// Walks records `from..=to` in order, a page at a time, handing each
    /// checkpoint to `each` before the records it covers.
    pub(crate) async fn walk(
        &self,
        from: i64,
        to: i64,
        mut each: impl FnMut(Item<'_>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut given_through = from - 1;
        let mut lo = from;
        while lo <= to {
            let hi = lo.saturating_add(PAGE - 1).min(to);
            let (records, checkpoints) = tokio::try_join!(
                self.records_between(lo, hi),
                self.checkpoints_between(lo, hi)
            )?;
            let before = given_through;
            let mut checkpoints = checkpoints
                .into_iter()
                .filter(move |c| c.last_seq > before)
                .peekable();
            for r in &records {
                while let Some(c) = checkpoints.next_if(|c| c.first_seq <= r.seq) {
                    given_through = c.last_seq;
                    each(Item::Checkpoint(c))?;
                }
                each(Item::Record(r))?;
            }
            if records.is_empty() {
                // The rest is missing: the head check names it.
                break;
            }
            lo = hi + 1;
        }
        Ok(())
    }

    /// Feeds records `from..=to` and their checkpoints to `v`.
    async fn feed(&self, v: &mut ChainVerifier, from: i64, to: i64) -> Result<(), StoreError> {
        self.walk(from, to, |item| {
            match item {
                Item::Checkpoint(c) => v.checkpoint(c),
                Item::Record(r) => v.record(r),
            }
            Ok(())
        })
        .await
    }

    /// Recomputes the whole chain (hashes, links, gapless sequence, head)
    /// without consulting checkpoints: what the database alone can show.
    /// [`Store::verify_audit_anchored`] also holds it against the server's
    /// signatures.
    pub async fn verify_audit(&self) -> Result<AuditVerification, StoreError> {
        self.verify_full(None).await
    }

    /// Checks the whole log against the checkpoints signed by the key
    /// with `pin`: names the first record edited, removed or reordered,
    /// even when the chain after it was recomputed. One page in memory.
    pub async fn verify_audit_anchored(
        &self,
        pin: &SpkiPin,
    ) -> Result<AuditVerification, StoreError> {
        let pins = self.server_key_family(*pin).await?;
        self.verify_full(Some(pins)).await
    }

    /// `pin`, every key that has been the server identity, and every key
    /// a rotation announced: a checkpoint signed by any of them is the
    /// server's (each was recorded by the identity of its time, or by the
    /// operator's recovery key).
    async fn server_key_family(&self, pin: SpkiPin) -> Result<Vec<SpkiPin>, StoreError> {
        let rows = sqlx::query(
            "SELECT pin FROM server_identity_history \
             UNION SELECT next_pin AS pin FROM server_rotations",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut pins = vec![pin];
        for row in &rows {
            let other: SpkiPin = crate::parsed(row, "pin", || "server key pin".into())?;
            if !pins.contains(&other) {
                pins.push(other);
            }
        }
        Ok(pins)
    }

    async fn verify_full(
        &self,
        pins: Option<Vec<SpkiPin>>,
    ) -> Result<AuditVerification, StoreError> {
        let (head_seq, head_hash) = self.audit_head().await?;
        let mut v = ChainVerifier::full(pins);
        self.feed(&mut v, 1, head_seq).await?;
        Ok(v.finish(head_seq, &head_hash))
    }

    /// The check a view makes: the newest signed checkpoint (signature and
    /// pin) and every record from its first on, so the cost stays that of
    /// one run of records however long the log grows. Older records are
    /// checked by [`Store::verify_audit_anchored`].
    pub async fn audit_status(&self, pin: &SpkiPin) -> Result<AuditVerification, StoreError> {
        let (head_seq, head_hash) = self.audit_head().await?;
        let from = match self.last_checkpoint().await? {
            Some(c) => c.first_seq,
            None => 1,
        };
        let prev = if from <= 1 {
            GENESIS.to_owned()
        } else {
            sqlx::query("SELECT hash FROM audit_log WHERE seq = $1")
                .bind(from - 1)
                .fetch_optional(&self.pool)
                .await?
                .map(|r| r.try_get::<String, _>("hash"))
                .transpose()?
                .unwrap_or_default()
        };
        let pins = self.server_key_family(*pin).await?;
        let mut v = ChainVerifier::new(Some(pins), from, &prev);
        self.feed(&mut v, from, head_seq).await?;
        let mut out = v.finish(head_seq, &head_hash);
        if out.anchored_through == 0 && from > 1 {
            out.anchored_through = from - 1;
        }
        Ok(out)
    }

    /// Signs checkpoints over every record not yet covered, each run
    /// re-checked first (against the previous checkpoint, which must carry
    /// `signer`'s key). Returns the last record now covered, or `None` when
    /// there was nothing to sign. Several servers may call this at once:
    /// the first to commit a run wins, the others sign nothing.
    pub async fn audit_checkpoint(
        &self,
        signer: &dyn CheckpointSigner,
        now: SystemTime,
    ) -> Result<Option<i64>, StoreError> {
        let pins = self
            .server_key_family(SpkiPin::of_spki(signer.spki()))
            .await?;
        let mut signed = None;
        loop {
            let (head_seq, _) = self.audit_head().await?;
            let last = self.last_checkpoint().await?;
            let anchored = last.as_ref().map_or(0, |c| c.last_seq);
            if anchored >= head_seq {
                return Ok(signed);
            }
            let to = head_seq.min(anchored + MAX_RUN);
            let hashes = self
                .checked_run(continuing(pins.clone(), last.as_ref())?, anchored, to)
                .await?;
            let at = millis(now);
            let message = Checkpoint::message(anchored + 1, to, at, &hashes);
            let signature = signer.sign(&message).map_err(StoreError::Io)?;
            let run = SignedRun {
                first: anchored + 1,
                last: to,
                at,
                hashes,
                spki: signer.spki(),
                signature,
            };
            if self.write_checkpoint(&run).await? {
                signed = Some(to);
            }
            // Else another server signed this run first: look again.
        }
    }

    /// Re-checks records `anchored + 1 ..= to` and returns their hashes,
    /// concatenated, for the checkpoint's message.
    async fn checked_run(
        &self,
        mut v: ChainVerifier,
        anchored: i64,
        to: i64,
    ) -> Result<String, StoreError> {
        let mut hashes = String::with_capacity(usize::try_from(to - anchored).unwrap_or(0) * 64);
        self.walk(anchored + 1, to, |item| {
            if let Item::Record(r) = item {
                hashes.push_str(&r.hash);
                v.record(r);
            }
            Ok(())
        })
        .await?;
        let checked = v.finish_file();
        if let Some(seq) = checked.first_broken {
            return Err(StoreError::Corrupt(format!(
                "audit record {seq}: {}; not signing over it",
                checked.reason.unwrap_or_default()
            )));
        }
        if checked.records != to - anchored {
            return Err(StoreError::Corrupt(format!(
                "audit records {}..{to} are missing; not signing over them",
                anchored + 1 + checked.records
            )));
        }
        Ok(hashes)
    }

    /// Stores a signed run unless another writer covered it first
    /// (`false`).
    async fn write_checkpoint(&self, run: &SignedRun<'_>) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        // Serialises checkpoint writers with each other (and appends).
        sqlx::query("UPDATE audit_head SET seq = seq WHERE id = 1")
            .execute(&mut *tx)
            .await?;
        let current: Option<i64> = sqlx::query("SELECT MAX(last_seq) AS m FROM audit_checkpoints")
            .fetch_one(&mut *tx)
            .await?
            .try_get("m")?;
        if current.unwrap_or(0) != run.first - 1 {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO audit_checkpoints (last_seq, first_seq, hashes, at, spki, signature) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(run.last)
        .bind(run.first)
        .bind(&run.hashes)
        .bind(run.at)
        .bind(hex::encode(run.spki))
        .bind(hex::encode(&run.signature))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The chain head's sequence number and the last record a checkpoint
    /// covers (0: none): two single-row reads.
    pub async fn audit_progress(&self) -> Result<(i64, i64), StoreError> {
        let (head, _) = self.audit_head().await?;
        let anchored: Option<i64> = sqlx::query("SELECT MAX(last_seq) AS m FROM audit_checkpoints")
            .fetch_one(&self.pool)
            .await?
            .try_get("m")?;
        Ok((head, anchored.unwrap_or(0)))
    }

    /// The newest checkpoint's last record and time (Unix ms), if any.
    pub async fn audit_anchor(&self) -> Result<Option<(i64, i64)>, StoreError> {
        Ok(self.last_checkpoint().await?.map(|c| (c.last_seq, c.at)))
    }
}
