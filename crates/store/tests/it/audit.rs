//! The audit chain detects edited, deleted and reordered rows, and
//! concurrent appends do not fork it. Signed checkpoints catch what the
//! chain cannot: a record edited and every hash after it recomputed by
//! someone who can write to the database, online and in an export.

use std::time::SystemTime;

use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair};
use pairgate_pki::SpkiPin;
use pairgate_store::{CheckpointSigner, NewTerminal, Store, verify_export};

/// A P-256 key in memory standing in for the server identity.
pub(crate) struct TestSigner {
    key: EcdsaKeyPair,
    spki: Vec<u8>,
}

impl TestSigner {
    pub(crate) fn new() -> Self {
        let key = EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_ASN1_SIGNING).unwrap();
        let spki = pairgate_pki::der::p256_spki(key.public_key().as_ref());
        Self { key, spki }
    }

    pub(crate) fn pin(&self) -> SpkiPin {
        SpkiPin::of_spki(&self.spki)
    }
}

impl CheckpointSigner for TestSigner {
    fn spki(&self) -> &[u8] {
        &self.spki
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        self.key
            .sign(&rng, message)
            .map(|s| s.as_ref().to_vec())
            .map_err(|e| e.to_string())
    }
}

/// A rogue writer edits record `seq` and recomputes the chain after it.
pub(crate) async fn forge(store: &Store, seq: i64) {
    pairgate_testkit::forge_audit_record(store.pool(), seq, |f, prev| {
        pairgate_store::record_hash(
            f.seq, f.at, &f.actor, &f.action, &f.subject, &f.detail, prev,
        )
    })
    .await;
}

async fn a_recomputed_chain_is_caught_by_the_checkpoints(store: &Store) {
    let signer = TestSigner::new();
    let now = SystemTime::now();
    for i in 0..12 {
        register(store, &format!("A{i}")).await;
    }
    assert_eq!(
        store.audit_checkpoint(&signer, now).await.unwrap(),
        Some(12)
    );
    assert_eq!(store.audit_checkpoint(&signer, now).await.unwrap(), None);
    for i in 0..6 {
        register(store, &format!("B{i}")).await;
    }
    assert_eq!(
        store.audit_checkpoint(&signer, now).await.unwrap(),
        Some(18)
    );
    register(store, "C").await;
    let clean = store.verify_audit_anchored(&signer.pin()).await.unwrap();
    assert!(clean.intact(), "{clean:?}");
    assert_eq!((clean.anchored_through, clean.unanchored), (18, 1));
    forge(store, 5).await;
    // The chain alone cannot tell.
    assert!(store.verify_audit().await.unwrap().intact());
    // The checkpoints name the record, online ...
    let online = store.verify_audit_anchored(&signer.pin()).await.unwrap();
    assert_eq!(online.first_broken, Some(5), "{online:?}");
    assert!(online.reason.unwrap().contains("signed checkpoint"));
    // ... and in an export, offline.
    let mut file = Vec::new();
    let written = store.export_audit(&mut file, 0).await.unwrap();
    assert_eq!(written, 19);
    let offline = verify_export(file.as_slice(), &signer.pin()).unwrap();
    assert_eq!(offline.first_broken, Some(5), "{offline:?}");
    // Another key's pin does not accept the server's checkpoints.
    let other = TestSigner::new();
    let wrong = verify_export(file.as_slice(), &other.pin()).unwrap();
    assert_eq!(wrong.first_broken, Some(1));
    assert!(wrong.reason.unwrap().contains("other than the server's"));
    // The server will not sign over the forgery.
    register(store, "D").await;
    assert!(store.audit_checkpoint(&signer, now).await.is_err());
    // Garbage is refused with its line number.
    let err = verify_export(&b"{\"header\":{}}\n"[..], &signer.pin()).unwrap_err();
    assert!(err.to_string().contains("line 1"), "{err}");
}

async fn views_check_from_the_newest_checkpoint(store: &Store) {
    let signer = TestSigner::new();
    let now = SystemTime::now();
    for i in 0..8 {
        register(store, &format!("A{i}")).await;
    }
    store.audit_checkpoint(&signer, now).await.unwrap();
    for i in 0..4 {
        register(store, &format!("B{i}")).await;
    }
    store.audit_checkpoint(&signer, now).await.unwrap();
    register(store, "C").await;
    let status = store.audit_status(&signer.pin()).await.unwrap();
    assert!(status.intact(), "{status:?}");
    // Only the newest run (9..=12) and the record after it were read.
    assert_eq!((status.checked_from, status.records), (9, 5));
    assert_eq!((status.anchored_through, status.unanchored), (12, 1));
    forge(store, 10).await;
    let status = store.audit_status(&signer.pin()).await.unwrap();
    assert_eq!(status.first_broken, Some(10), "{status:?}");
    // A writer holding another key cannot extend the server's
    // checkpoints: the signer first checks the last one is its own.
    let rogue = TestSigner::new();
    register(store, "D").await;
    store.audit_checkpoint(&rogue, now).await.unwrap_err();
}

async fn register(store: &Store, serial: &str) {
    let new = NewTerminal {
        serial: serial.into(),
        ..NewTerminal::default()
    };
    store
        .register_terminal(
            &new,
            &pairgate_store::Changer::local("admin"),
            SystemTime::now(),
        )
        .await
        .unwrap();
}

async fn edited_row_is_detected(store: &Store) {
    for s in ["A", "B", "C"] {
        register(store, s).await;
    }
    let ok = store.verify_audit().await.unwrap();
    assert!(ok.intact());
    assert_eq!(ok.records, 3);
    sqlx::query("UPDATE audit_log SET actor = 'mallory' WHERE seq = 2")
        .execute(store.pool())
        .await
        .unwrap();
    assert_eq!(store.verify_audit().await.unwrap().first_broken, Some(2));
}

async fn deleted_rows_are_detected(store: &Store) {
    for s in ["A", "B", "C", "D"] {
        register(store, s).await;
    }
    sqlx::query("DELETE FROM audit_log WHERE seq = 4")
        .execute(store.pool())
        .await
        .unwrap();
    assert_eq!(
        store.verify_audit().await.unwrap().first_broken,
        Some(4),
        "deleted last row"
    );
    sqlx::query("DELETE FROM audit_log WHERE seq = 2")
        .execute(store.pool())
        .await
        .unwrap();
    assert_eq!(
        store.verify_audit().await.unwrap().first_broken,
        Some(2),
        "deleted middle row"
    );
}

async fn concurrent_appends_keep_one_chain(store: &Store) {
    let mut tasks = Vec::new();
    for i in 0..24 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            register(&store, &format!("T{i:02}")).await
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let v = store.verify_audit().await.unwrap();
    assert!(v.intact(), "{v:?}");
    assert_eq!(v.records, 24);
}

crate::on_both_backends!(
    a_recomputed_chain_is_caught_by_the_checkpoints,
    views_check_from_the_newest_checkpoint,
    edited_row_is_detected,
    deleted_rows_are_detected,
    concurrent_appends_keep_one_chain
);
