//! What instances share: the recorded server identity and the attempt
//! counters behind cluster-wide rate limits.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use pairgate_pki::SpkiPin;
use pairgate_store::{Actor, AttemptScope, Store, StoreError};

use crate::on_both_backends;

async fn the_identity_is_recorded_once(store: &Store) {
    let now = SystemTime::now();
    let (a, b) = (SpkiPin::from_bytes([1; 32]), SpkiPin::from_bytes([2; 32]));
    assert_eq!(store.recorded_identity().await.unwrap(), None);
    store
        .record_identity(a, &Actor::new("server"), now)
        .await
        .unwrap();
    // The same pin again is no change and no second record.
    store
        .record_identity(a, &Actor::new("server"), now)
        .await
        .unwrap();
    let err = store
        .record_identity(b, &Actor::new("server"), now)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    assert!(err.to_string().contains(&a.to_hex()), "{err}");
    assert_eq!(store.recorded_identity().await.unwrap(), Some(a));
    let records = store.audit_records(100).await.unwrap();
    let recorded: Vec<_> = records
        .iter()
        .filter(|r| r.action == "server.identity_recorded")
        .collect();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].subject, a.to_hex());
    assert_eq!(store.verify_audit().await.unwrap().first_broken, None);
}

/// Two first instances recording their own keys at once: one wins, the
/// other gets a conflict naming the winner, never a database error.
async fn racing_identities_get_a_conflict(store: &Store) {
    let now = SystemTime::now();
    let tasks: Vec<_> = (1..=8u8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .record_identity(SpkiPin::from_bytes([i; 32]), &Actor::new("server"), now)
                    .await
            })
        })
        .collect();
    let mut won = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => won += 1,
            Err(StoreError::Conflict(_)) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(won, 1);
}

async fn attempts_count_in_windows(store: &Store) {
    let minute = Duration::from_secs(60);
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let scope = AttemptScope::UnknownSerialAddress;
    assert_eq!(
        store
            .attempts(scope, "10.0.0.1", minute, t0)
            .await
            .unwrap()
            .count,
        0
    );
    for n in 1..=3 {
        let at = t0 + Duration::from_secs(n);
        let a = store
            .count_attempt(scope, "10.0.0.1", minute, at)
            .await
            .unwrap();
        assert_eq!(a.count, n);
        assert_eq!(a.resets_at, t0 + Duration::from_secs(1) + minute);
    }
    // Other subjects and scopes count apart.
    let other = store
        .count_attempt(AttemptScope::LoginAddress, "10.0.0.1", minute, t0)
        .await
        .unwrap();
    assert_eq!(other.count, 1);
    let later = t0 + Duration::from_secs(30);
    assert_eq!(
        store
            .attempts(scope, "10.0.0.1", minute, later)
            .await
            .unwrap()
            .count,
        3
    );
    assert_eq!(
        store
            .attempts(scope, "10.0.0.2", minute, later)
            .await
            .unwrap()
            .count,
        0
    );
    // The window ends a minute after its first attempt; the next starts over.
    let next = t0 + Duration::from_secs(61);
    assert_eq!(
        store
            .attempts(scope, "10.0.0.1", minute, next)
            .await
            .unwrap()
            .count,
        0
    );
    let a = store
        .count_attempt(scope, "10.0.0.1", minute, next)
        .await
        .unwrap();
    assert_eq!((a.count, a.resets_at), (1, next + minute));
    store.clear_attempts(scope, "10.0.0.1").await.unwrap();
    assert_eq!(
        store
            .attempts(scope, "10.0.0.1", minute, next)
            .await
            .unwrap()
            .count,
        0
    );
    // Purging drops the finished windows only.
    store
        .count_attempt(scope, "10.0.0.3", minute, next)
        .await
        .unwrap();
    let purged = store
        .purge_attempts(minute, next + Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(purged, 1);
    assert_eq!(
        store
            .attempts(scope, "10.0.0.3", minute, next)
            .await
            .unwrap()
            .count,
        1
    );
}

/// Counting is one atomic statement: attempts made at once over several
/// connections (as several instances make them) each get their own count.
async fn attempts_made_at_once_are_all_counted(store: &Store) {
    let minute = Duration::from_secs(60);
    let now = SystemTime::now();
    let tasks: Vec<_> = (0..40)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .count_attempt(
                        AttemptScope::LoginAccountAddress,
                        "admin 10.0.0.1",
                        minute,
                        now,
                    )
                    .await
                    .unwrap()
                    .count
            })
        })
        .collect();
    let mut seen = BTreeSet::new();
    for task in tasks {
        seen.insert(task.await.unwrap());
    }
    assert_eq!(seen, (1..=40).collect());
}

/// Every change of the paired set is logged with its generation and
/// terminal; a follower gets them in order, or `None` when the log
/// cannot account for every generation (a gap, or more than its limit).
async fn the_paired_set_changes_are_logged(store: &Store) {
    use pairgate_store::{Changer, Serial, TrustChange};
    let start = store.paired_generation().await.unwrap();
    assert_eq!(
        store.paired_changes_since(start, 10).await.unwrap(),
        Some(vec![])
    );
    crate::pairing::attempt_and_pair(store).await;
    let serial = Serial::new(crate::pairing::SERIAL).unwrap();
    let now = SystemTime::now();
    store
        .suspend_terminal(&serial, &Changer::local("olga"), now)
        .await
        .unwrap();
    store
        .resume_terminal(&serial, &TrustChange::local("olga"), now)
        .await
        .unwrap();
    let changes = store
        .paired_changes_since(start, 10)
        .await
        .unwrap()
        .unwrap();
    let generations: Vec<i64> = changes.iter().map(|c| c.generation).collect();
    assert_eq!(generations, [start + 1, start + 2, start + 3]);
    assert!(changes.iter().all(|c| c.serial == serial));
    assert_eq!(
        store
            .paired_terminal_by_serial(&serial)
            .await
            .unwrap()
            .unwrap()
            .paired_fingerprint,
        Some(crate::pairing::fp(1))
    );
    // From the middle, only what came after.
    let later = store
        .paired_changes_since(start + 2, 10)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(later.len(), 1);
    // More than the limit: reload.
    assert_eq!(store.paired_changes_since(start, 2).await.unwrap(), None);
    // A purged change leaves a gap: reload.
    assert_eq!(
        store.purge_paired_changes(1).await.unwrap(),
        u64::try_from(start + 2).unwrap()
    );
    assert_eq!(store.paired_changes_since(start, 10).await.unwrap(), None);
    assert_eq!(
        store
            .paired_changes_since(start + 2, 10)
            .await
            .unwrap()
            .unwrap()
            .len(),
        1
    );
    // Suspended or unpaired, the terminal is not in the set.
    store
        .suspend_terminal(&serial, &Changer::local("olga"), now)
        .await
        .unwrap();
    assert_eq!(
        store.paired_terminal_by_serial(&serial).await.unwrap(),
        None
    );
}

on_both_backends!(
    racing_identities_get_a_conflict,
    the_paired_set_changes_are_logged,
    the_identity_is_recorded_once,
    attempts_count_in_windows,
    attempts_made_at_once_are_all_counted,
);
