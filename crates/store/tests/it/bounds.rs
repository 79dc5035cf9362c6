//! The bounds that keep one unauthenticated client from using up the
//! pairing queue or a serial (issue 12): open-request quotas per key, per
//! address and in all; unrevealed requests that expire within minutes;
//! supersede limits per key, address and serial; the block list; the
//! purge of closed requests. Every refusal writes nothing.

use std::time::{Duration, SystemTime};

use pairgate_pki::{Nonce, TerminalFingerprint};
use pairgate_store::{
    Actor, NewTerminal, Opened, PairingAttempt, PairingLimits, PairingRequest, PairingState,
    Serial, Store, StoreError,
};

use crate::pairing::{SERIAL, attempt, fp, setup};

/// Rows of pairing requests and audit records.
async fn written(store: &Store) -> (usize, usize) {
    (
        store.pairing_requests(false, 10_000).await.unwrap().len(),
        store.audit_records(100_000).await.unwrap().len(),
    )
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

fn from(fingerprint: TerminalFingerprint, serial: &str, address: &str) -> PairingAttempt {
    let mut a = attempt(fingerprint, &Nonce::random());
    a.serial = Serial::new(serial).unwrap();
    a.remote_address = address.into();
    a
}

async fn try_open(
    store: &Store,
    a: &PairingAttempt,
    limits: &PairingLimits,
) -> Result<PairingRequest, StoreError> {
    match store
        .open_pairing_request(a, limits, SystemTime::now())
        .await?
    {
        Opened::Pending(req) => Ok(req),
        Opened::Paired(t) => panic!("paired: {t:?}"),
    }
}

async fn one_client_cannot_fill_the_queue(store: &Store) {
    for i in 0..6 {
        register(store, &format!("Q-{i}")).await;
    }
    let limits = PairingLimits {
        max_open_per_key: 2,
        max_open_per_address: 3,
        ..PairingLimits::default()
    };
    let a = "203.0.113.7:4000";
    try_open(store, &from(fp(1), "Q-0", a), &limits)
        .await
        .unwrap();
    try_open(store, &from(fp(1), "Q-1", a), &limits)
        .await
        .unwrap();
    let before = written(store).await;
    let r = try_open(store, &from(fp(1), "Q-2", a), &limits).await;
    assert!(
        matches!(r, Err(StoreError::Limit(ref m)) if m.contains("certificate")),
        "{r:?}"
    );
    // Another key from the same address: the address's quota.
    try_open(store, &from(fp(2), "Q-2", "203.0.113.7:4001"), &limits)
        .await
        .unwrap();
    let before_address = written(store).await;
    let r = try_open(store, &from(fp(3), "Q-3", "203.0.113.7:4002"), &limits).await;
    assert!(
        matches!(r, Err(StoreError::Limit(ref m)) if m.contains("address")),
        "{r:?}"
    );
    assert_eq!(
        written(store).await,
        before_address,
        "a refusal writes nothing"
    );
    assert_eq!(before.0 + 1, before_address.0);
    // A genuine terminal elsewhere still gets its request.
    try_open(store, &from(fp(3), "Q-3", "198.51.100.1:4000"), &limits)
        .await
        .unwrap();
}

async fn unrevealed_requests_expire_within_minutes(store: &Store) {
    setup(store).await;
    let limits = PairingLimits::default();
    let nonce = Nonce::random();
    let req = try_open(store, &attempt(fp(1), &nonce), &limits)
        .await
        .unwrap();
    assert_eq!(req.expires_at - req.created_at, 300_000);
    // Revealed: up to the full lifetime.
    let revealed = store
        .reveal_pairing_nonce(&req.id, &fp(1), &nonce, SystemTime::now())
        .await
        .unwrap();
    assert_eq!(revealed.expires_at - revealed.created_at, 86_400_000);
    // Another serial, never revealed, is gone after the reveal window.
    register(store, "ATM-U").await;
    let idle = try_open(store, &from(fp(2), "ATM-U", "127.0.0.1:1"), &limits)
        .await
        .unwrap();
    let later = SystemTime::now() + Duration::from_secs(301);
    assert_eq!(store.expire_pairing_requests(later).await.unwrap(), 1);
    let idle = store.pairing_request(&idle.id).await.unwrap().unwrap();
    assert_eq!(idle.state, PairingState::Expired);
    let kept = store.pairing_request(&req.id).await.unwrap().unwrap();
    assert_eq!(kept.state, PairingState::Pending);
}

/// A key looping on renewals (same key, new commitment) stops writing
/// after a few.
async fn renewals_are_capped(store: &Store) {
    setup(store).await;
    let limits = PairingLimits::default();
    let first = try_open(store, &attempt(fp(1), &Nonce::random()), &limits)
        .await
        .unwrap();
    for _ in 0..limits.max_renewals {
        let again = try_open(store, &attempt(fp(1), &Nonce::random()), &limits)
            .await
            .unwrap();
        assert_eq!(again.id, first.id);
    }
    let before = written(store).await;
    let r = try_open(store, &attempt(fp(1), &Nonce::random()), &limits).await;
    assert!(matches!(r, Err(StoreError::RateLimited(_))), "{r:?}");
    assert_eq!(written(store).await, before);
}

async fn superseding_is_limited(store: &Store) {
    setup(store).await;
    let limits = PairingLimits {
        supersedes_per_key: 1,
        supersedes_per_address: 2,
        supersedes_per_serial: 3,
        ..PairingLimits::default()
    };
    try_open(store, &from(fp(1), SERIAL, "198.51.100.1:1"), &limits)
        .await
        .unwrap();
    // The attacker supersedes once...
    try_open(store, &from(fp(2), SERIAL, "203.0.113.9:1"), &limits)
        .await
        .unwrap();
    // ...the genuine terminal takes its serial back...
    let genuine = try_open(store, &from(fp(1), SERIAL, "198.51.100.1:2"), &limits)
        .await
        .unwrap();
    // ...and the attacker's key is refused from then on.
    let before = written(store).await;
    let r = try_open(store, &from(fp(2), SERIAL, "203.0.113.9:2"), &limits).await;
    assert!(
        matches!(r, Err(StoreError::RateLimited(ref m)) if m.contains("certificate")),
        "{r:?}"
    );
    // Fresh keys from the same address: the address's limit.
    try_open(store, &from(fp(3), SERIAL, "203.0.113.9:3"), &limits)
        .await
        .unwrap();
    let r = try_open(store, &from(fp(4), SERIAL, "203.0.113.9:4"), &limits).await;
    assert!(
        matches!(r, Err(StoreError::RateLimited(ref m)) if m.contains("address")),
        "{r:?}"
    );
    // Fresh keys and addresses: the serial's limit.
    let r = try_open(store, &from(fp(5), SERIAL, "192.0.2.5:1"), &limits).await;
    assert!(
        matches!(r, Err(StoreError::RateLimited(ref m)) if m.contains("serial")),
        "{r:?}"
    );
    assert_eq!(written(store).await.0, before.0 + 1);
    let genuine = store.pairing_request(&genuine.id).await.unwrap().unwrap();
    assert_eq!(genuine.state, PairingState::Superseded);
}

async fn blocked_keys_cannot_ask_and_lose_their_requests(store: &Store) {
    setup(store).await;
    let limits = PairingLimits::default();
    let admin = Actor::new("admin");
    let req = try_open(store, &attempt(fp(2), &Nonce::random()), &limits)
        .await
        .unwrap();
    let blocked = store
        .block_key(&fp(2), "supersede loop on ATM-7", &admin, SystemTime::now())
        .await
        .unwrap();
    assert_eq!(blocked.blocked_by, "admin");
    let req = store.pairing_request(&req.id).await.unwrap().unwrap();
    assert_eq!(req.state, PairingState::Rejected);
    let audit = store.audit_records(2).await.unwrap();
    assert_eq!(audit[0].action, "key.block");
    assert_eq!(audit[0].subject, fp(2).to_hex());
    assert_eq!(audit[1].action, "pairing.reject");

    let before = written(store).await;
    let r = try_open(store, &attempt(fp(2), &Nonce::random()), &limits).await;
    assert!(matches!(r, Err(StoreError::Blocked(_))), "{r:?}");
    let r = store
        .block_key(&fp(2), "again", &admin, SystemTime::now())
        .await;
    assert!(matches!(r, Err(StoreError::AlreadyExists(_))), "{r:?}");
    let r = store
        .block_key(&fp(3), "bad\u{7}reason", &admin, SystemTime::now())
        .await;
    assert!(matches!(r, Err(StoreError::Invalid(_))), "{r:?}");
    assert_eq!(written(store).await, before, "refusals write nothing");
    assert_eq!(store.blocked_keys().await.unwrap(), vec![blocked]);

    store
        .unblock_key(&fp(2), &admin, SystemTime::now())
        .await
        .unwrap();
    assert_eq!(
        store.audit_records(1).await.unwrap()[0].action,
        "key.unblock"
    );
    let r = store.unblock_key(&fp(2), &admin, SystemTime::now()).await;
    assert!(matches!(r, Err(StoreError::NotFound(_))), "{r:?}");
    try_open(store, &attempt(fp(2), &Nonce::random()), &limits)
        .await
        .unwrap();
}

async fn closed_requests_are_purged_after_retention(store: &Store) {
    setup(store).await;
    let limits = PairingLimits::default();
    let first = try_open(store, &attempt(fp(1), &Nonce::random()), &limits)
        .await
        .unwrap();
    let second = try_open(store, &from(fp(2), SERIAL, "127.0.0.2:1"), &limits)
        .await
        .unwrap();
    let audit = store.audit_records(100_000).await.unwrap().len();
    let retention = Duration::from_secs(3600);
    assert_eq!(
        store
            .purge_closed_pairing_requests(SystemTime::now(), retention)
            .await
            .unwrap(),
        0,
        "inside the retention"
    );
    let later = SystemTime::now() + Duration::from_secs(3601);
    assert_eq!(
        store
            .purge_closed_pairing_requests(later, retention)
            .await
            .unwrap(),
        1
    );
    assert!(store.pairing_request(&first.id).await.unwrap().is_none());
    assert!(
        store.pairing_request(&second.id).await.unwrap().is_some(),
        "open stays"
    );
    assert_eq!(store.audit_records(100_000).await.unwrap().len(), audit);
}

crate::on_both_backends!(
    one_client_cannot_fill_the_queue,
    unrevealed_requests_expire_within_minutes,
    superseding_is_limited,
    renewals_are_capped,
    blocked_keys_cannot_ask_and_lose_their_requests,
    closed_requests_are_purged_after_retention,
);
