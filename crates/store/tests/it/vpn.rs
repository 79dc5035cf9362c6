//! VPN address pools: a thousand terminals get a thousand addresses, a
//! full pool is a clear error, a terminal keeps its address, and
//! allocations made at once on many connections never share one.

use std::collections::BTreeSet;
use std::time::SystemTime;

use pairgate_store::{Actor, AddressPool, Changer, NewTerminal, Serial, Store, StoreError};

async fn register(store: &Store, serials: impl Iterator<Item = String>) -> Vec<Serial> {
    let mut out = Vec::new();
    for serial in serials {
        let new = NewTerminal {
            serial: serial.clone(),
            ..NewTerminal::default()
        };
        store
            .register_terminal(&new, &Changer::local("admin"), SystemTime::now())
            .await
            .unwrap();
        out.push(Serial::new(&serial).unwrap());
    }
    out
}

async fn a_thousand_terminals_get_unique_addresses(store: &Store) {
    let pool: AddressPool = "10.9.0.0/22".parse().unwrap();
    let serials = register(store, (0..1000).map(|i| format!("VPN-{i:04}"))).await;
    let actor = Actor::new("vpn");
    let mut seen = BTreeSet::new();
    for serial in &serials {
        let address = store
            .allocate_vpn_address(&pool, serial, &actor, SystemTime::now())
            .await
            .unwrap();
        assert_ne!(address, pool.server_address());
        assert!(seen.insert(address), "{address} handed out twice");
    }
    assert_eq!(seen.len(), 1000);
    // Asked again, a terminal keeps its address.
    let again = store
        .allocate_vpn_address(&pool, &serials[7], &actor, SystemTime::now())
        .await
        .unwrap();
    assert_eq!(again, pool.address(7).unwrap());
    let audited = store.audit_records(2000).await.unwrap();
    let allocated = audited
        .iter()
        .filter(|r| r.action == "vpn.address_allocated")
        .count();
    assert_eq!(allocated, 1000);
}

async fn a_full_pool_is_a_clear_error(store: &Store) {
    let pool: AddressPool = "10.9.8.0/29".parse().unwrap();
    let serials = register(store, (0..6).map(|i| format!("FULL-{i}"))).await;
    let actor = Actor::new("vpn");
    for serial in &serials[..5] {
        store
            .allocate_vpn_address(&pool, serial, &actor, SystemTime::now())
            .await
            .unwrap();
    }
    let err = store
        .allocate_vpn_address(&pool, &serials[5], &actor, SystemTime::now())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Limit(_)), "{err}");
    assert!(err.to_string().contains("10.9.8.0/29 is full"), "{err}");
}

async fn allocations_at_once_never_share_an_address(store: &Store) {
    let pool: AddressPool = "fd00:9::/112".parse().unwrap();
    let serials = register(store, (0..200).map(|i| format!("RACE-{i:03}"))).await;
    let tasks: Vec<_> = serials
        .chunks(25)
        .map(|chunk| {
            let (store, chunk) = (store.clone(), chunk.to_vec());
            tokio::spawn(async move {
                let mut got = Vec::new();
                for serial in &chunk {
                    let address = store
                        .allocate_vpn_address(&pool, serial, &Actor::new("vpn"), SystemTime::now())
                        .await
                        .unwrap();
                    got.push(address);
                }
                got
            })
        })
        .collect();
    let mut seen = BTreeSet::new();
    for task in tasks {
        for address in task.await.unwrap() {
            assert!(seen.insert(address), "{address} handed out twice");
        }
    }
    assert_eq!(seen.len(), 200);
}

crate::on_both_backends!(
    a_thousand_terminals_get_unique_addresses,
    a_full_pool_is_a_clear_error,
    allocations_at_once_never_share_an_address,
);
