//! What CAS stands on: the first-run admin, the forced password change,
//! TOTP enrolment with recovery codes, sessions with their timeouts, API
//! tokens, and the search queries.

use std::time::{Duration, SystemTime};

use pairgate_store::{
    Actor, NewTerminal, Role, SessionLimits, SessionStage, Store, StoreError, TerminalState,
};
use pairgate_testkit::{totp_code, totp_step_now};

async fn first_run_and_enrolment(store: &Store) {
    let now = SystemTime::now();
    let (admin, password) = store.first_run_admin(now).await.unwrap().unwrap();
    assert_eq!(admin.role, Role::Admin);
    assert!(admin.must_change_password && !admin.totp_enabled);
    // Only once.
    assert!(store.first_run_admin(now).await.unwrap().is_none());
    assert_eq!(SessionStage::next_for(&admin), SessionStage::PasswordChange);

    // The forced change: the current password must be right, the new one
    // long enough and different.
    let err = store
        .change_password("admin", "wrong", "a brand new passphrase", now)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unauthorized(_)), "{err}");
    let err = store
        .change_password("admin", &password, "short", now)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    store
        .change_password("admin", &password, "a brand new passphrase", now)
        .await
        .unwrap();
    assert!(
        store
            .verify_password("admin", &password)
            .await
            .unwrap()
            .is_none()
    );
    let admin = store
        .verify_password("admin", "a brand new passphrase")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(SessionStage::next_for(&admin), SessionStage::Enrol);

    // Enrolment: the same pending seed until confirmed; a wrong code
    // changes nothing.
    let uri = store.begin_totp_enrolment("admin").await.unwrap();
    assert_eq!(*store.begin_totp_enrolment("admin").await.unwrap(), *uri);
    let err = store
        .confirm_totp_enrolment("admin", "000000", now)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unauthorized(_)), "{err}");
    let step = totp_step_now();
    let codes = store
        .confirm_totp_enrolment("admin", &totp_code(&uri, step), now)
        .await
        .unwrap();
    assert_eq!(codes.len(), pairgate_store::RECOVERY_CODES);
    let admin = store.operator("admin").await.unwrap().unwrap();
    assert!(admin.totp_enabled);
    assert_eq!(SessionStage::next_for(&admin), SessionStage::Totp);
    // The enrolment code was consumed: it is a replay now.
    assert!(
        store
            .verify_second_factor("admin", &totp_code(&uri, step), now)
            .await
            .is_err()
    );
    assert!(store.begin_totp_enrolment("admin").await.is_err());
    // Recovery codes work once each, typed loosely.
    let loose = codes[0].to_uppercase().replace('-', " ");
    assert_eq!(
        store.use_recovery_code("admin", &loose, now).await.unwrap(),
        9
    );
    assert!(
        store
            .use_recovery_code("admin", &codes[0], now)
            .await
            .is_err()
    );
    assert!(
        store
            .use_recovery_code("admin", "abcd-efgh-jkmn", now)
            .await
            .is_err()
    );
    let actions: Vec<String> = store
        .audit_records(10)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.action)
        .collect();
    for action in [
        "operator.create",
        "operator.password",
        "operator.totp_enrol",
        "operator.recovery_code",
    ] {
        assert!(
            actions.contains(&action.to_owned()),
            "{action} in {actions:?}"
        );
    }
    let text = format!("{:?}", store.audit_records(10).await.unwrap());
    assert!(
        !text.contains(&codes[1][..]) && !text.contains("brand new"),
        "a secret in the audit log"
    );
}

async fn sessions_end_on_timeouts_and_advance(store: &Store) {
    let t0 = SystemTime::now();
    let op = store
        .create_operator("olga", Role::Operator, &Actor::new("admin"), t0)
        .await
        .unwrap()
        .operator;
    let limits = SessionLimits {
        idle: Duration::from_secs(600),
        absolute: Duration::from_secs(3600),
    };
    let token = store
        .create_session(&op, SessionStage::Totp, "127.0.0.1", t0)
        .await
        .unwrap();
    let s = store.session(&token, limits, t0).await.unwrap().unwrap();
    assert_eq!(s.stage, SessionStage::Totp);
    assert_eq!(s.csrf.len(), 64);
    assert!(store.session("f00", limits, t0).await.unwrap().is_none());
    // Advancing rotates the secret.
    let full = store
        .advance_session(&token, SessionStage::Full)
        .await
        .unwrap();
    assert!(store.session(&token, limits, t0).await.unwrap().is_none());
    let s = store.session(&full, limits, t0).await.unwrap().unwrap();
    assert_eq!(s.stage, SessionStage::Full);
    // Touched within the idle limit it lives on; past the absolute limit
    // it ends however busy it was.
    let mut at = t0;
    for _ in 0..5 {
        at += Duration::from_secs(500);
        assert!(store.session(&full, limits, at).await.unwrap().is_some());
    }
    at += Duration::from_secs(1200);
    assert!(store.session(&full, limits, at).await.unwrap().is_none());
    // Idle too long.
    let idle = store
        .create_session(&op, SessionStage::Full, "127.0.0.1", t0)
        .await
        .unwrap();
    assert!(
        store
            .session(&idle, limits, t0 + Duration::from_secs(601))
            .await
            .unwrap()
            .is_none()
    );
    // Logout and "end other sessions".
    let a = store
        .create_session(&op, SessionStage::Full, "a", t0)
        .await
        .unwrap();
    let b = store
        .create_session(&op, SessionStage::Full, "b", t0)
        .await
        .unwrap();
    store.end_other_sessions("olga", &a).await.unwrap();
    assert!(store.session(&b, limits, t0).await.unwrap().is_none());
    store.end_session(&a).await.unwrap();
    assert!(store.session(&a, limits, t0).await.unwrap().is_none());
}

async fn api_tokens_are_hashed_and_revocable(store: &Store) {
    let now = SystemTime::now();
    store
        .create_operator("vera", Role::Viewer, &Actor::new("admin"), now)
        .await
        .unwrap();
    let (record, token) = store
        .create_api_token_for(
            "vera",
            "monitoring",
            &pairgate_store::AdminAction::local("admin"),
            now,
        )
        .await
        .unwrap();
    assert!(token.starts_with("pgt_"));
    let op = store
        .authenticate_api_token(&token, now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((op.username.as_str(), op.role), ("vera", Role::Viewer));
    let mut forged = token.to_string();
    forged.pop();
    forged.push('x');
    assert!(
        store
            .authenticate_api_token(&forged, now)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .authenticate_api_token("pgt_zz", now)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .create_api_token_for(
                "nobody",
                "x",
                &pairgate_store::AdminAction::local("admin"),
                now
            )
            .await
            .is_err()
    );
    let listed = store.api_tokens(Some("vera")).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].last_used_at.is_some());
    // Only the owner (or an admin, with no owner given) revokes.
    assert!(
        store
            .revoke_api_token(&record.id, Some("olga"), &Actor::new("olga"), now)
            .await
            .is_err()
    );
    store
        .revoke_api_token(&record.id, Some("vera"), &Actor::new("vera"), now)
        .await
        .unwrap();
    assert!(
        store
            .authenticate_api_token(&token, now)
            .await
            .unwrap()
            .is_none()
    );
    let text = format!("{:?}", store.audit_records(5).await.unwrap());
    assert!(text.contains("api_token.revoke") && !text.contains(token.as_str()));
}

async fn search_pages_and_counts(store: &Store) {
    let admin = Actor::new("admin");
    let now = SystemTime::now();
    for i in 0..25 {
        store
            .register_terminal(
                &NewTerminal {
                    serial: format!("ATM-{i:04}"),
                    name: if i % 5 == 0 {
                        "Lobby 50%".into()
                    } else {
                        format!("Kiosk {i}")
                    },
                    location: "Main Street".into(),
                    contact_name: String::new(),
                    contact_phone: String::new(),
                },
                &pairgate_store::Changer::local(admin.name()),
                now,
            )
            .await
            .unwrap();
    }
    let page = store.search_terminals("", None, 20, 20).await.unwrap();
    assert_eq!((page.total, page.rows.len()), (25, 5));
    assert_eq!(page.rows[0].serial.as_str(), "ATM-0020");
    let page = store
        .search_terminals("lobby 50%", None, 0, 20)
        .await
        .unwrap();
    assert_eq!(page.total, 5);
    // A wildcard is literal.
    assert_eq!(
        store
            .search_terminals("_", None, 0, 20)
            .await
            .unwrap()
            .total,
        0
    );
    let page = store
        .search_terminals("atm", Some(TerminalState::Paired), 0, 20)
        .await
        .unwrap();
    assert_eq!(page.total, 0);
    let counts = store.terminal_counts().await.unwrap();
    assert_eq!(counts[0], (TerminalState::Registered, 25));
    let audit = store.search_audit("ATM-001", 0, 5).await.unwrap();
    assert_eq!((audit.total, audit.rows.len()), (10, 5));
    assert!(audit.rows[0].seq > audit.rows[1].seq);
}

crate::on_both_backends!(
    first_run_and_enrolment,
    sessions_end_on_timeouts_and_advance,
    api_tokens_are_hashed_and_revocable,
    search_pages_and_counts,
);
