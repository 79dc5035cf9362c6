//! Accounts against a stolen token and a guessing neighbour (issue 13):
//! the step-up lock through the API and through the CAS form, tokens made
//! only behind a fresh TOTP, admins changing operators over the API, and
//! login limits per (account, address). Each test runs on SQLite and on
//! PostgreSQL.

use std::time::SystemTime;

use pairgate_server::Clock;
use pairgate_store::{Actor, AdminAction, Role};

use crate::cas::operator;
use crate::support::{Db, Fixture, TestTerminal};
use crate::web::{Authenticator, Web, sign_in};

/// A code that is not the one the app shows now (nor either neighbour).
fn wrong_code(app: &Authenticator) -> String {
    let step = app.step_now();
    let near: Vec<String> = (step - 1..=step + 1)
        .map(|s| pairgate_testkit::totp_code(&app.uri, s))
        .collect();
    (0..)
        .map(|n: u32| format!("{:06}", 123_457 + n))
        .find(|c| !near.contains(c))
        .unwrap()
}

async fn count(f: &Fixture, action: &str, subject: &str) -> usize {
    f.store
        .audit_records(100_000)
        .await
        .unwrap()
        .iter()
        .filter(|r| r.action == action && r.subject == subject)
        .count()
}

/// An operator with the TOTP seed at once and an API token, on the
/// server's clock.
pub(crate) async fn with_token(f: &Fixture, name: &str, role: Role) -> (Authenticator, String) {
    let now = f.server.clock.now();
    let creds = f
        .store
        .create_operator(name, role, &Actor::new("admin"), now)
        .await
        .unwrap();
    let (_, token) = f
        .store
        .create_api_token_for(name, "ci", &AdminAction::local("admin"), now)
        .await
        .unwrap();
    (
        Authenticator::on(&creds.totp_uri, f.server.clock.clone()),
        token.to_string(),
    )
}

/// A server on a manual clock standing at the real time: TOTP steps are
/// taken by moving it, not by waiting.
pub(crate) async fn on_manual_clock(
    db: Db,
    tweak: impl FnOnce(&mut pairgate_server::Settings),
) -> Fixture {
    Fixture::start_with_clock(db, Clock::manual(SystemTime::now()), tweak).await
}

async fn a_stolen_token_cannot_guess_the_step_up(db: Db) {
    let f = on_manual_clock(db, |_| {}).await;
    f.register("ATM-1").await;
    let p = TestTerminal::new("ATM-1")
        .start_pairing(&f.gate(""), "ATM-1")
        .await;
    let (mut app, token) = with_token(&f, "olga", Role::Operator).await;
    let web = Web::new(f.server.cas_addr);
    let approve = format!("/pairing-requests/{}/approve", p.id);
    let guess = |totp: String| serde_json::json!({ "code": p.code.to_string(), "totp": totp });
    // The attacker's guesses: five are checked, then every one is refused.
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let r = web
            .api(
                "POST",
                &approve,
                Some(&token),
                Some(guess(wrong_code(&app))),
            )
            .await;
        statuses.push((
            r.status,
            r.json()["error"]["code"].as_str().unwrap().to_owned(),
        ));
    }
    let unauthorized = (401, "PG-UNAUTHORIZED".to_owned());
    let limited = (429, "PG-RATE-LIMITED".to_owned());
    assert_eq!(statuses[..5], vec![unauthorized; 5][..]);
    assert_eq!(statuses[5..], vec![limited.clone(); 7][..]);
    // During the lock the right code is refused too: no rogue pairing.
    let r = web
        .api(
            "POST",
            &approve,
            Some(&token),
            Some(guess(app.fresh().await)),
        )
        .await;
    assert_eq!(
        (r.status, r.json()["error"]["code"].as_str().unwrap()),
        (429, "PG-RATE-LIMITED")
    );
    let unpair = web
        .api(
            "POST",
            "/terminals/ATM-1/unpair",
            Some(&token),
            Some(serde_json::json!({ "totp": app.fresh().await })),
        )
        .await;
    assert_eq!(unpair.status, 429, "{}", unpair.body);
    let req = f.store.pairing_request(&p.id).await.unwrap().unwrap();
    assert_eq!(req.state.wire_status(), "pending");
    // Every wrong code is an audit record; the lock is one more.
    assert_eq!(count(&f, "operator.step_up_failed", "olga").await, 5);
    assert_eq!(count(&f, "operator.step_up_locked", "olga").await, 1);
    // An admin (fresh TOTP) clears it over the API; then the code works.
    let (mut boss, boss_token) = with_token(&f, "boss", Role::Admin).await;
    let r = web
        .api(
            "POST",
            "/operators/olga/clear-step-up-lock",
            Some(&token),
            Some(serde_json::json!({ "totp": app.fresh().await })),
        )
        .await;
    assert_eq!(r.status, 403, "an operator cannot clear their own lock");
    let r = web
        .api(
            "POST",
            "/operators/olga/clear-step-up-lock",
            Some(&boss_token),
            Some(serde_json::json!({ "totp": boss.fresh().await })),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = web
        .api(
            "POST",
            &approve,
            Some(&token),
            Some(guess(app.fresh().await)),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(count(&f, "operator.step_up_cleared", "olga").await, 1);
    f.server.shutdown().await;
}

async fn the_cas_form_locks_as_well(db: Db) {
    let f = Fixture::start(db, |_| {}).await;
    f.register("ATM-1").await;
    let p = TestTerminal::new("ATM-1")
        .start_pairing(&f.gate(""), "ATM-1")
        .await;
    let (mut web, mut app) = operator(&f, "olga", Role::Operator).await;
    let path = format!("/requests/{}", p.id);
    let page = web.get(&path).await;
    let mut statuses = Vec::new();
    for _ in 0..7 {
        let r = web
            .post(
                &format!("{path}/approve"),
                &[
                    ("csrf", &page.csrf()),
                    ("code", &p.code.to_string()),
                    ("totp", &wrong_code(&app)),
                ],
            )
            .await;
        statuses.push(r.status);
    }
    assert_eq!(statuses, [400, 400, 400, 400, 400, 429, 429]);
    let r = web
        .post(
            &format!("{path}/approve"),
            &[
                ("csrf", &page.csrf()),
                ("code", &p.code.to_string()),
                ("totp", &app.fresh().await),
            ],
        )
        .await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.body.contains("step-ups are refused"), "{}", r.body);
    assert_eq!(count(&f, "operator.step_up_failed", "olga").await, 5);
    let req = f.store.pairing_request(&p.id).await.unwrap().unwrap();
    assert_eq!(req.state.wire_status(), "pending");
    f.server.shutdown().await;
}

async fn tokens_need_a_fresh_totp_and_admins_change_operators(db: Db) {
    let f = on_manual_clock(db, |s| s.api_token_days = 7).await;
    let (mut app, token) = with_token(&f, "olga", Role::Operator).await;
    let (mut boss, boss_token) = with_token(&f, "boss", Role::Admin).await;
    let web = Web::new(f.server.cas_addr);
    // No TOTP, no token.
    let r = web
        .api(
            "POST",
            "/tokens",
            Some(&token),
            Some(serde_json::json!({ "name": "more" })),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = web
        .api(
            "POST",
            "/tokens",
            Some(&token),
            Some(serde_json::json!({ "name": "more", "totp": wrong_code(&app) })),
        )
        .await;
    assert_eq!(r.status, 401, "{}", r.body);
    let r = web
        .api(
            "POST",
            "/tokens",
            Some(&token),
            Some(serde_json::json!({ "name": "more", "totp": app.fresh().await })),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let made = r.json();
    let second = made["token"].as_str().unwrap().to_owned();
    let record = f.store.api_tokens(Some("olga")).await.unwrap();
    let newest = record.iter().find(|t| t.name == "more").unwrap();
    assert_eq!(newest.expires_at - newest.created_at, 7 * 86_400_000);
    assert_eq!(
        web.api("GET", "/terminals", Some(&second), None)
            .await
            .status,
        200
    );
    // An operator may not change operators, even with their own TOTP.
    let r = web
        .api(
            "POST",
            "/operators/boss/disable",
            Some(&token),
            Some(serde_json::json!({ "totp": app.fresh().await })),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    // An admin disables olga: both her tokens stop working.
    let r = web
        .api(
            "POST",
            "/operators/olga/disable",
            Some(&boss_token),
            Some(serde_json::json!({ "totp": boss.fresh().await })),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["disabled"], true);
    for t in [&token, &second] {
        assert_eq!(
            web.api("GET", "/terminals", Some(t), None).await.status,
            401
        );
    }
    // Role change and 2FA reset, each audited.
    let r = web
        .api(
            "POST",
            "/operators/olga/role",
            Some(&boss_token),
            Some(serde_json::json!({ "role": "viewer", "totp": boss.fresh().await })),
        )
        .await;
    assert_eq!(r.json()["role"], "viewer", "{}", r.body);
    let r = web
        .api(
            "POST",
            "/operators/olga/reset-2fa",
            Some(&boss_token),
            Some(serde_json::json!({ "totp": boss.fresh().await })),
        )
        .await;
    assert_eq!(r.json()["totp_enabled"], false, "{}", r.body);
    // The last enabled admin stays one (the first-run admin is disabled
    // first, so boss is the last).
    f.store
        .set_operator_disabled(
            "admin",
            true,
            &AdminAction::local("test"),
            SystemTime::now(),
        )
        .await
        .unwrap();
    let r = web
        .api(
            "POST",
            "/operators/boss/role",
            Some(&boss_token),
            Some(serde_json::json!({ "role": "operator", "totp": boss.fresh().await })),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.body);
    let listed = web.api("GET", "/operators", Some(&boss_token), None).await;
    assert_eq!(listed.status, 200);
    assert!(listed.json()["operators"].as_array().unwrap().len() >= 2);
    for action in ["operator.disable", "operator.role", "operator.totp_reset"] {
        assert_eq!(count(&f, action, "olga").await, 1, "{action}");
    }
    f.server.shutdown().await;
}

async fn a_guessing_neighbour_cannot_lock_the_admin_out(db: Db) {
    let f = Fixture::start(db, |s| s.login_failures_per_account = 3).await;
    let password = f
        .server
        .first_run_password
        .as_ref()
        .unwrap()
        .reveal()
        .to_owned();
    let attempt = async |web: &mut Web, pw: &str| {
        let page = web.get("/login").await;
        web.post(
            "/login",
            &[
                ("csrf", &page.csrf()),
                ("username", "admin"),
                ("password", pw),
            ],
        )
        .await
    };
    let mut attacker = Web::from_source(f.server.cas_addr, [127, 0, 0, 66].into());
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(attempt(&mut attacker, "guess").await.status);
    }
    assert_eq!(statuses, [401, 401, 401, 429]);
    // The admin at their own address signs in all the same.
    let mut admin = Web::new(f.server.cas_addr);
    sign_in(
        &mut admin,
        "admin",
        &password,
        "the admin's passphrase",
        None,
    )
    .await;
    f.server.shutdown().await;
}

crate::on_both_databases!(
    a_stolen_token_cannot_guess_the_step_up,
    the_cas_form_locks_as_well,
    tokens_need_a_fresh_totp_and_admins_change_operators,
    a_guessing_neighbour_cannot_lock_the_admin_out,
);
