//! The audit chain detects edited, deleted and reordered rows, and
//! concurrent appends do not fork it.

use std::time::SystemTime;

use pairgate_store::{Actor, NewTerminal, Store};

async fn register(store: &Store, serial: &str) {
    let new = NewTerminal {
        serial: serial.into(),
        ..NewTerminal::default()
    };
    store
        .register_terminal(&new, &Actor::new("admin"), SystemTime::now())
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
    edited_row_is_detected,
    deleted_rows_are_detected,
    concurrent_appends_keep_one_chain
);
