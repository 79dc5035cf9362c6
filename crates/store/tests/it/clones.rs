//! Suspension and clone suspicion in the store: a suspended terminal
//! keeps its pairing but leaves the paired set (the generation moves);
//! resuming needs a trust change and clears the suspicion; the first
//! suspicion writes and later ones do not; a heartbeat counter must rise.

use std::time::SystemTime;

use pairgate_store::{Changer, CloneAction, Heartbeat, Serial, Store, StoreError, TrustChange};

use crate::pairing::{SERIAL, attempt_and_pair, fp};

async fn suspend_keeps_the_pairing_and_resume_restores_it(store: &Store) {
    attempt_and_pair(store).await;
    let serial = Serial::new(SERIAL).unwrap();
    let by = Changer::local("olga");
    let generation = store.paired_generation().await.unwrap();
    let t = store
        .suspend_terminal(&serial, &by, SystemTime::now())
        .await
        .unwrap();
    assert_eq!(t.paired_fingerprint, Some(fp(1)));
    assert_eq!(
        t.view().state,
        pairgate_proto::cas::TerminalState::Suspended
    );
    assert_eq!(store.paired_generation().await.unwrap(), generation + 1);
    assert!(store.paired_terminal(&fp(1)).await.unwrap().is_none());
    assert!(store.paired_terminals().await.unwrap().terminals.is_empty());
    assert!(matches!(
        store
            .suspend_terminal(&serial, &by, SystemTime::now())
            .await,
        Err(StoreError::Conflict(_))
    ));
    let t = store
        .resume_terminal(&serial, &TrustChange::local("olga"), SystemTime::now())
        .await
        .unwrap();
    assert!(t.suspended_at.is_none());
    assert!(store.paired_terminal(&fp(1)).await.unwrap().is_some());
    assert!(matches!(
        store
            .resume_terminal(&serial, &TrustChange::local("olga"), SystemTime::now())
            .await,
        Err(StoreError::Conflict(_))
    ));
}

async fn the_first_suspicion_writes_and_a_counter_must_rise(store: &Store) {
    attempt_and_pair(store).await;
    let serial = Serial::new(SERIAL).unwrap();
    let key = fp(1);
    let beat = |c| {
        store.record_heartbeat(
            &serial,
            &key,
            ("10.0.0.1:1", None, Some(c)),
            SystemTime::now(),
        )
    };
    assert_eq!(beat(5).await.unwrap(), Heartbeat::Recorded);
    assert_eq!(
        beat(5).await.unwrap(),
        Heartbeat::CounterBack { highest: 5, got: 5 }
    );
    assert_eq!(
        beat(3).await.unwrap(),
        Heartbeat::CounterBack { highest: 5, got: 3 }
    );
    assert_eq!(beat(6).await.unwrap(), Heartbeat::Recorded);

    let evidence = serde_json::json!({ "reason": "test" });
    let marked = store
        .suspect_clone(&fp(1), &evidence, CloneAction::Alert, SystemTime::now())
        .await
        .unwrap()
        .unwrap();
    assert!(marked.suspected_clone && marked.suspended_at.is_none());
    let again = store
        .suspect_clone(&fp(1), &evidence, CloneAction::Suspend, SystemTime::now())
        .await
        .unwrap();
    assert!(again.is_none(), "a second report wrote again");
    let records = store.audit_records(1000).await.unwrap();
    assert_eq!(
        records
            .iter()
            .filter(|r| r.action == "terminal.suspected_clone")
            .count(),
        1
    );
    // Resuming clears the suspicion and the counter.
    store
        .resume_terminal(&serial, &TrustChange::local("olga"), SystemTime::now())
        .await
        .unwrap();
    assert_eq!(beat(1).await.unwrap(), Heartbeat::Recorded);
    let suspended = store
        .suspect_clone(&fp(1), &evidence, CloneAction::Suspend, SystemTime::now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(suspended.suspended_by.as_deref(), Some("rule:clone"));
    assert!(store.paired_terminal(&fp(1)).await.unwrap().is_none());
}

crate::on_both_backends!(
    suspend_keeps_the_pairing_and_resume_restores_it,
    the_first_suspicion_writes_and_a_counter_must_rise,
);
