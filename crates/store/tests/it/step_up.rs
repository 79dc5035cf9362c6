//! The step-up lock and the admins' account changes: five wrong codes
//! lock an operator's step-ups (the right code included) for the window,
//! every wrong code is audited, an admin can clear the lock; disabling,
//! a 2FA reset and a password change revoke tokens; tokens expire; the
//! last enabled admin stays.

use std::time::{Duration, SystemTime};

use pairgate_store::{Actor, AdminAction, Role, SessionLimits, SessionStage, Store, StoreError};

use crate::pairing::{Operator, setup};

async fn actions(store: &Store, action: &str) -> usize {
    store
        .audit_records(1000)
        .await
        .unwrap()
        .iter()
        .filter(|r| r.action == action)
        .count()
}

async fn five_wrong(store: &Store, olga: &mut Operator) -> SystemTime {
    let mut last = SystemTime::UNIX_EPOCH;
    for _ in 0..5 {
        let (now, bad) = olga.wrong();
        let r = store.verify_second_factor(olga.name(), &bad, now).await;
        assert!(matches!(r, Err(StoreError::Unauthorized(_))), "{r:?}");
        last = now;
    }
    last
}

async fn five_wrong_codes_lock_step_ups(store: &Store) {
    let mut olga = setup(store).await;
    let first = five_wrong(store, &mut olga).await;
    // The right code is refused while the lock holds.
    let (now, code) = olga.next();
    let r = store.verify_second_factor("olga", &code, now).await;
    assert!(matches!(r, Err(StoreError::RateLimited(_))), "{r:?}");
    // So is a recovery code, and that refusal writes nothing.
    let r = store.use_recovery_code("olga", "abcd-efgh-jkmn", now).await;
    assert!(matches!(r, Err(StoreError::RateLimited(_))), "{r:?}");
    assert_eq!(actions(store, "operator.step_up_failed").await, 5);
    assert_eq!(actions(store, "operator.step_up_locked").await, 1);
    let lock = store.step_up_lock("olga", now).await.unwrap();
    assert!(lock.locked);
    assert_eq!(lock.failures, 5);
    // Another operator is not affected.
    let mut vera = Operator::create(store, "vera", Role::Operator).await;
    let (now, code) = vera.next();
    store
        .verify_second_factor("vera", &code, now)
        .await
        .unwrap();
    // The window passes (the lock counts from the fifth failure's window
    // start: 15 minutes after the earliest of the five).
    olga.wait(30);
    let (now, code) = olga.next();
    assert!(now > first);
    store
        .verify_second_factor("olga", &code, now)
        .await
        .unwrap();
    assert!(!store.step_up_lock("olga", now).await.unwrap().locked);
}

async fn an_admin_clears_a_lock(store: &Store) {
    let mut olga = setup(store).await;
    five_wrong(store, &mut olga).await;
    let (now, code) = olga.next();
    assert!(matches!(
        store.verify_second_factor("olga", &code, now).await,
        Err(StoreError::RateLimited(_))
    ));
    let root = AdminAction::local("cli:root");
    store.clear_step_up_lock("olga", &root, now).await.unwrap();
    assert_eq!(actions(store, "operator.step_up_cleared").await, 1);
    let (now, code) = olga.next();
    store
        .verify_second_factor("olga", &code, now)
        .await
        .unwrap();
    // Wrong recovery codes lock as wrong TOTP codes do.
    for _ in 0..5 {
        let r = store.use_recovery_code("olga", "zzzz-zzzz-zzzz", now).await;
        assert!(matches!(r, Err(StoreError::Unauthorized(_))), "{r:?}");
    }
    let (now, code) = olga.next();
    assert!(matches!(
        store.verify_second_factor("olga", &code, now).await,
        Err(StoreError::RateLimited(_))
    ));
    assert!(matches!(
        store.clear_step_up_lock("nobody", &root, now).await,
        Err(StoreError::NotFound(_))
    ));
}

async fn account_changes_revoke_and_keep_an_admin(store: &Store) {
    let now = SystemTime::now();
    let cli = AdminAction::local("cli:root");
    let mut boss = Operator::create(store, "boss", Role::Admin).await;
    let mut olga = setup(store).await;
    let (_, olga_token) = store
        .create_api_token_for("olga", "ci", &cli, now)
        .await
        .unwrap();
    let olga_op = store.operator("olga").await.unwrap().unwrap();
    let session = store
        .create_session(&olga_op, SessionStage::Full, "10.0.0.1", now)
        .await
        .unwrap();
    assert!(
        store
            .authenticate_api_token(&olga_token, now)
            .await
            .unwrap()
            .is_some()
    );
    // Only an admin's second factor is an admin action.
    let (t, code) = olga.next();
    let factor = store.verify_second_factor("olga", &code, t).await.unwrap();
    assert!(matches!(factor.admin(), Err(StoreError::Forbidden(_))));
    let (t, code) = boss.next();
    let by = store
        .verify_second_factor("boss", &code, t)
        .await
        .unwrap()
        .admin()
        .unwrap();
    // Disabling ends the session and revokes the token, for good.
    store
        .set_operator_disabled("olga", true, &by, now)
        .await
        .unwrap();
    assert!(
        store
            .authenticate_api_token(&olga_token, now)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .session(&session, SessionLimits::default(), now)
            .await
            .unwrap()
            .is_none()
    );
    assert!(matches!(
        store.set_operator_disabled("olga", true, &by, now).await,
        Err(StoreError::Conflict(_))
    ));
    store
        .set_operator_disabled("olga", false, &by, now)
        .await
        .unwrap();
    assert!(
        store
            .authenticate_api_token(&olga_token, now)
            .await
            .unwrap()
            .is_none()
    );
    // Roles.
    store
        .set_operator_role("olga", Role::Viewer, &by, now)
        .await
        .unwrap();
    assert_eq!(
        store.operator("olga").await.unwrap().unwrap().role,
        Role::Viewer
    );
    // The last enabled admin can be neither disabled nor demoted.
    assert!(matches!(
        store.set_operator_disabled("boss", true, &cli, now).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store
            .set_operator_role("boss", Role::Operator, &cli, now)
            .await,
        Err(StoreError::Conflict(_))
    ));
    store
        .set_operator_role("olga", Role::Admin, &cli, now)
        .await
        .unwrap();
    store
        .set_operator_role("boss", Role::Operator, &cli, now)
        .await
        .unwrap();
    // A 2FA reset: no second factor until enrolment, tokens revoked.
    let (_, token) = store
        .create_api_token_for("olga", "ci2", &cli, now)
        .await
        .unwrap();
    store.reset_operator_totp("olga", &cli, now).await.unwrap();
    assert!(!store.operator("olga").await.unwrap().unwrap().totp_enabled);
    assert!(
        store
            .authenticate_api_token(&token, now)
            .await
            .unwrap()
            .is_none()
    );
    let (t, code) = olga.next();
    assert!(matches!(
        store.verify_second_factor("olga", &code, t).await,
        Err(StoreError::Unauthorized(m)) if m.contains("not set up")
    ));
    for action in [
        "operator.disable",
        "operator.enable",
        "operator.role",
        "operator.totp_reset",
    ] {
        assert!(actions(store, action).await >= 1, "{action}");
    }
    assert!(store.verify_audit().await.unwrap().intact());
}

async fn tokens_expire_and_die_with_the_password(store: &Store) {
    let now = SystemTime::now();
    let day = Duration::from_secs(86_400);
    let short = store.clone().with_token_lifetime(day);
    let creds = store
        .create_operator("pia", Role::Operator, &Actor::new("admin"), now)
        .await
        .unwrap();
    let cli = AdminAction::local("cli:root");
    let (record, token) = short
        .create_api_token_for("pia", "ci", &cli, now)
        .await
        .unwrap();
    assert_eq!(record.expires_at - record.created_at, 86_400_000);
    let almost = now + day - Duration::from_secs(1);
    assert!(
        short
            .authenticate_api_token(&token, almost)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        short
            .authenticate_api_token(&token, now + day)
            .await
            .unwrap()
            .is_none()
    );
    // A password change revokes every token of the operator.
    let (_, token) = store
        .create_api_token_for("pia", "ci2", &cli, now)
        .await
        .unwrap();
    store
        .change_password("pia", &creds.password, "a brand new passphrase", now)
        .await
        .unwrap();
    assert!(
        store
            .authenticate_api_token(&token, now)
            .await
            .unwrap()
            .is_none()
    );
    let listed = store.api_tokens(Some("pia")).await.unwrap();
    assert!(listed.iter().all(|t| t.revoked_at.is_some()), "{listed:?}");
}

crate::on_both_backends!(
    five_wrong_codes_lock_step_ups,
    an_admin_clears_a_lock,
    account_changes_revoke_and_keep_an_admin,
    tokens_expire_and_die_with_the_password,
);
