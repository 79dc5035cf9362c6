//! Anchoring the audit log with the server's identity key: a task signs a
//! checkpoint once `records` new records are waiting, or `every` has
//! passed since the last one while any are waiting, and checks the whole
//! log against the signatures at start and hourly. The last full check is
//! kept for the CAS views, which themselves only check the newest run.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use pairgate_clock::Clock;
use pairgate_pki::{CertificateInfo, SpkiPin};
use pairgate_store::{AuditVerification, CheckpointSigner, Store};
use rustls::sign::{CertifiedKey, SigningKey};
use tokio::sync::watch;

use crate::ServerError;

/// How often the whole log is checked against the checkpoints.
const FULL_CHECK_EVERY: Duration = Duration::from_secs(3600);
/// How often the task looks at the chain head.
const LOOK_EVERY: Duration = Duration::from_secs(1);

/// The server identity key as a checkpoint signer.
pub struct IdentitySigner {
    key: Arc<dyn SigningKey>,
    spki: Vec<u8>,
}

impl std::fmt::Debug for IdentitySigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentitySigner")
            .field("pin", &SpkiPin::of_spki(&self.spki))
            .finish()
    }
}

impl IdentitySigner {
    /// The signer of a loaded identity (its leaf certificate names the key).
    pub fn new(identity: &CertifiedKey) -> Result<Self, ServerError> {
        let leaf = identity
            .cert
            .first()
            .ok_or_else(|| ServerError::Identity("the identity has no certificate".into()))?;
        let info =
            CertificateInfo::parse(leaf).map_err(|e| ServerError::Identity(e.to_string()))?;
        Ok(Self {
            key: identity.key.clone(),
            spki: info.spki_der,
        })
    }
}

impl CheckpointSigner for IdentitySigner {
    fn spki(&self) -> &[u8] {
        &self.spki
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String> {
        let signer = self
            .key
            .choose_scheme(&[rustls::SignatureScheme::ECDSA_NISTP256_SHA256])
            .ok_or("the server key cannot sign ECDSA P-256 SHA-256")?;
        signer.sign(message).map_err(|e| e.to_string())
    }
}

/// The last full check of the log, for the views.
#[derive(Clone, Debug, Default)]
pub struct LastFullCheck(Arc<Mutex<Option<(SystemTime, AuditVerification)>>>);

impl LastFullCheck {
    /// When it ran and what it found, if it has run.
    pub fn get(&self) -> Option<(SystemTime, AuditVerification)> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set(&self, at: SystemTime, result: AuditVerification) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some((at, result));
    }
}

/// When to sign.
#[derive(Clone, Copy, Debug)]
pub struct AnchorPolicy {
    /// Sign once this many records wait.
    pub records: i64,
    /// Sign at least this often while any wait.
    pub every: Duration,
}

async fn full_check(store: &Store, pin: &SpkiPin, last: &LastFullCheck, clock: &Clock) {
    match store.verify_audit_anchored(pin).await {
        Ok(result) => {
            if let Some(seq) = result.first_broken {
                tracing::error!(
                    record = seq,
                    reason = result.reason.as_deref().unwrap_or_default(),
                    "the audit log does not match the server's signed checkpoints"
                );
            }
            last.set(clock.now(), result);
        }
        Err(e) => tracing::error!(error = %e, "checking the audit log"),
    }
}

/// Signs checkpoints by `policy` and checks the whole log hourly, until
/// shutdown.
pub async fn run(
    store: Store,
    signer: Arc<IdentitySigner>,
    policy: AnchorPolicy,
    last: LastFullCheck,
    clock: Clock,
    mut shutdown: watch::Receiver<bool>,
) {
    let pin = SpkiPin::of_spki(signer.spki());
    let mut signed_at: Option<tokio::time::Instant> = None;
    let mut checked_at: Option<tokio::time::Instant> = None;
    let mut failing = false;
    loop {
        let due = match store.audit_progress().await {
            Ok((head, anchored)) => {
                let waiting = head - anchored;
                waiting >= policy.records
                    || (waiting > 0 && signed_at.is_none_or(|t| t.elapsed() >= policy.every))
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading the audit head");
                false
            }
        };
        if due {
            match store.audit_checkpoint(signer.as_ref(), clock.now()).await {
                Ok(_) => {
                    signed_at = Some(tokio::time::Instant::now());
                    failing = false;
                }
                Err(e) => {
                    // Logged once per failure streak; retried each look.
                    if !failing {
                        tracing::error!(error = %e, "signing an audit checkpoint");
                    }
                    failing = true;
                }
            }
        }
        if checked_at.is_none_or(|t| t.elapsed() >= FULL_CHECK_EVERY) {
            full_check(&store, &pin, &last, &clock).await;
            checked_at = Some(tokio::time::Instant::now());
        }
        tokio::select! {
            _ = tokio::time::sleep(LOOK_EVERY) => {}
            _ = shutdown.changed() => return,
        }
    }
}
