//! Issue 13, finding 8: pairing requests filtered by status in the query,
//! with paging, so that a filtered page is full and the total is right.

use std::time::SystemTime;

use pairgate_pki::Nonce;
use pairgate_store::{Actor, NewTerminal, Opened, PairingLimits, Serial, Store, StoreError};

use crate::pairing::{attempt, fp};

async fn filtered_pages_are_full(store: &Store) {
    let admin = Actor::new("admin");
    let mut ids = Vec::new();
    for i in 0..5u8 {
        let serial = format!("P-{i}");
        let new = NewTerminal {
            serial: serial.clone(),
            ..NewTerminal::default()
        };
        store
            .register_terminal(
                &new,
                &pairgate_store::Changer::local(admin.name()),
                SystemTime::now(),
            )
            .await
            .unwrap();
        let mut a = attempt(fp(i + 1), &Nonce::random());
        a.serial = Serial::new(&serial).unwrap();
        let Opened::Pending(req) = store
            .open_pairing_request(&a, &PairingLimits::default(), SystemTime::now())
            .await
            .unwrap()
        else {
            panic!("paired")
        };
        ids.push(req.id);
    }
    for id in ids.iter().take(3) {
        store
            .reject_pairing(
                id,
                &pairgate_store::Changer::local(admin.name()),
                SystemTime::now(),
            )
            .await
            .unwrap();
    }
    let page = store
        .search_pairing_requests("rejected", 0, 2)
        .await
        .unwrap();
    assert_eq!((page.rows.len(), page.total), (2, 3));
    let next = store
        .search_pairing_requests("rejected", 2, 2)
        .await
        .unwrap();
    assert_eq!((next.rows.len(), next.total), (1, 3));
    assert!(
        next.rows
            .iter()
            .all(|r| !page.rows.iter().any(|p| p.id == r.id))
    );
    let pending = store
        .search_pairing_requests("pending", 0, 1)
        .await
        .unwrap();
    assert_eq!((pending.rows.len(), pending.total), (1, 2));
    assert!(pending.rows[0].state.is_open());
    let all = store.search_pairing_requests("", 0, 100).await.unwrap();
    assert_eq!((all.rows.len(), all.total), (5, 5));
    let r = store.search_pairing_requests("pendng", 0, 10).await;
    assert!(matches!(r, Err(StoreError::Invalid(_))), "{r:?}");
}

crate::on_both_backends!(filtered_pages_are_full);
