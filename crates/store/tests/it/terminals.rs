//! Registering and reading terminals.

use std::time::SystemTime;

use pairgate_store::{Actor, NewTerminal, Serial, Store, StoreError, TerminalState};

fn new(serial: &str) -> NewTerminal {
    NewTerminal {
        serial: serial.into(),
        name: format!("ATM {serial}"),
        location: "Main Street 1".into(),
        contact_name: "Jana".into(),
        contact_phone: "+420 123 456 789".into(),
    }
}

async fn register_and_read(store: &Store) {
    let admin = Actor::new("admin");
    let t = store
        .register_terminal(
            &new("ATM-0002"),
            &pairgate_store::Changer::local(admin.name()),
            SystemTime::now(),
        )
        .await
        .unwrap();
    assert_eq!(t.state, TerminalState::Registered);
    assert_eq!(t.contact_phone, "+420 123 456 789");
    assert!(t.paired_fingerprint.is_none());
    store
        .register_terminal(
            &new("ATM-0001"),
            &pairgate_store::Changer::local(admin.name()),
            SystemTime::now(),
        )
        .await
        .unwrap();
    let all: Vec<String> = store
        .terminals()
        .await
        .unwrap()
        .iter()
        .map(|t| t.serial.to_string())
        .collect();
    assert_eq!(all, ["ATM-0001", "ATM-0002"]);
    let one = store
        .terminal(&Serial::new("ATM-0002").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(one, t);
    assert!(
        store
            .terminal(&Serial::new("nope").unwrap())
            .await
            .unwrap()
            .is_none()
    );
    let audit = store.audit_records(10).await.unwrap();
    assert_eq!(audit.len(), 2);
    assert_eq!(audit[0].action, "terminal.register");
    assert_eq!(audit[0].subject, "ATM-0001");
    assert_eq!(audit[0].actor, "admin");
}

async fn bad_input_changes_nothing(store: &Store) {
    let admin = Actor::new("admin");
    store
        .register_terminal(
            &new("ATM-1"),
            &pairgate_store::Changer::local(admin.name()),
            SystemTime::now(),
        )
        .await
        .unwrap();
    let err = store
        .register_terminal(
            &new("ATM-1"),
            &pairgate_store::Changer::local(admin.name()),
            SystemTime::now(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists(_)), "{err}");
    for bad in ["", "has space", "semi;colon", &"x".repeat(65)] {
        let err = store
            .register_terminal(
                &new(bad),
                &pairgate_store::Changer::local(admin.name()),
                SystemTime::now(),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{bad}: {err}");
    }
    let mut long_name = new("ATM-2");
    long_name.name = "n".repeat(201);
    assert!(matches!(
        store
            .register_terminal(
                &long_name,
                &pairgate_store::Changer::local(admin.name()),
                SystemTime::now()
            )
            .await,
        Err(StoreError::Invalid(_))
    ));
    let mut control = new("ATM-3");
    control.location = "line\nbreak".into();
    assert!(matches!(
        store
            .register_terminal(
                &control,
                &pairgate_store::Changer::local(admin.name()),
                SystemTime::now()
            )
            .await,
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(store.terminals().await.unwrap().len(), 1);
    assert_eq!(store.audit_records(100).await.unwrap().len(), 1);
    assert!(store.verify_audit().await.unwrap().intact());
}

/// Issue 13, finding 10: text that shows other than it reads (bidi
/// overrides, zero-width characters) is refused, and nothing is written.
async fn deceptive_text_is_refused(store: &Store) {
    let admin = Actor::new("admin");
    let before = store.audit_records(100).await.unwrap().len();
    for name in [
        "ATM \u{202E}1000",
        "Lobby\u{200B}",
        "\u{2066}x\u{2069}",
        "a\u{FEFF}b",
        "tab\there",
    ] {
        let mut t = new("ATM-0009");
        t.name = name.into();
        let r = store
            .register_terminal(
                &t,
                &pairgate_store::Changer::local(admin.name()),
                SystemTime::now(),
            )
            .await;
        assert!(matches!(r, Err(StoreError::Invalid(_))), "{name:?}: {r:?}");
    }
    assert_eq!(store.audit_records(100).await.unwrap().len(), before);
    let mut t = new("ATM-0009");
    t.name = "Café Praha – vchod".into();
    store
        .register_terminal(
            &t,
            &pairgate_store::Changer::local(admin.name()),
            SystemTime::now(),
        )
        .await
        .unwrap();
}

crate::on_both_backends!(
    deceptive_text_is_refused,
    register_and_read,
    bad_input_changes_nothing
);

#[tokio::test]
async fn sqlite_store_survives_reopen() {
    let dir = pairgate_testkit::temp_dir();
    let store = Store::open_data_dir(dir.path()).await.unwrap();
    store
        .register_terminal(
            &new("ATM-9"),
            &pairgate_store::Changer::local("cli"),
            SystemTime::now(),
        )
        .await
        .unwrap();
    store.pool().close().await;
    let again = Store::open_data_dir(dir.path()).await.unwrap();
    assert_eq!(again.terminals().await.unwrap().len(), 1);
    assert!(again.verify_audit().await.unwrap().intact());
    assert!(dir.path().join("pairgate.db").exists());
}
