//! CAS over HTTP: the first-run admin's way in, cookie flags (plain and
//! TLS), CSRF, roles, TOTP replay, the login rate limit, and the JSON API
//! round trip. Each test runs on SQLite and on PostgreSQL.

use std::time::SystemTime;

use pairgate_store::{Actor, Role};
use pairgate_tls::TlsPolicy;
use pairgate_tls::client::{ServerTrust, TlsClient};
use pairgate_tls::https::HttpsClient;

use crate::support::{Db, Fixture, TestTerminal, eventually, get};
use crate::web::{Authenticator, Web, sign_in};

const NEW_PASSWORD: &str = "a long and new passphrase";

/// An operator made the CLI way (TOTP seed at once), signed in.
pub(crate) async fn operator(f: &Fixture, name: &str, role: Role) -> (Web, Authenticator) {
    let creds = f
        .store
        .create_operator(name, role, &Actor::new("admin"), SystemTime::now())
        .await
        .unwrap();
    let mut web = Web::new(f.server.cas_addr);
    let app = sign_in(
        &mut web,
        name,
        &creds.password,
        NEW_PASSWORD,
        Some(Authenticator::new(&creds.totp_uri)),
    )
    .await;
    (web, app)
}

async fn audit_count(f: &Fixture) -> usize {
    f.store.audit_records(100_000).await.unwrap().len()
}

async fn first_run_admin_signs_in_with_cookie_flags(db: Db) {
    let f = Fixture::start(db, |_| {}).await;
    let password = f
        .server
        .first_run_password
        .as_ref()
        .unwrap()
        .reveal()
        .to_owned();
    let file = f
        .settings
        .data_dir
        .join(pairgate_server::cas::FIRST_RUN_FILE);
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), password);

    let mut web = Web::new(f.server.cas_addr);
    // Not signed in: every page sends to the login.
    let r = web.get("/terminals").await;
    assert_eq!((r.status, r.header("location")), (303, Some("/login")));
    let page = web.get("/login").await;
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    assert_eq!(
        page.header("strict-transport-security"),
        None,
        "no HSTS over plain HTTP"
    );
    // Issue 13, finding 10: a page on another host name (DNS rebinding)
    // gets nothing.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tcp = tokio::net::TcpStream::connect(f.server.cas_addr)
            .await
            .unwrap();
        tcp.write_all(b"GET /login HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        tcp.read_to_end(&mut answer).await.unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 421"), "{answer}");
        assert!(!answer.contains("csrf"), "{answer}");
    }
    assert!(
        page.header("content-security-policy")
            .unwrap()
            .contains("default-src 'none'")
    );
    let r = web
        .post(
            "/login",
            &[
                ("csrf", &page.csrf()),
                ("username", "admin"),
                ("password", &password),
            ],
        )
        .await;
    assert_eq!(r.header("location"), Some("/account/password"));
    let cookie = r
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("pg_session="))
        .unwrap()
        .to_owned();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(flag), "{cookie}");
    }
    assert!(
        !cookie.contains("Secure"),
        "plain HTTP cannot keep a Secure cookie: {cookie}"
    );
    // Half-signed-in sessions reach nothing else.
    let r = web.get("/terminals").await;
    assert_eq!(r.header("location"), Some("/account/password"));
    let first_session = web.cookies["pg_session"].clone();

    // The forced change, then enrolment; the file goes with the password.
    let mut web2 = Web::new(f.server.cas_addr);
    let app = sign_in(&mut web2, "admin", &password, NEW_PASSWORD, None).await;
    assert!(
        !file.exists(),
        "the first-run password file outlived the password"
    );
    // The change ended the other half-open session.
    let mut stale = Web::new(f.server.cas_addr);
    stale.cookies.insert("pg_session".into(), first_session);
    assert_eq!(stale.get("/").await.header("location"), Some("/login"));
    let admin = f.store.operator("admin").await.unwrap().unwrap();
    assert!(admin.totp_enabled && !admin.must_change_password);
    // A wrong enrolment code was never needed; a replay of the enrolment
    // code is refused at the next login.
    let mut again = Web::new(f.server.cas_addr);
    let page = again.get("/login").await;
    let r = again
        .post(
            "/login",
            &[
                ("csrf", &page.csrf()),
                ("username", "admin"),
                ("password", NEW_PASSWORD),
            ],
        )
        .await;
    assert_eq!(r.header("location"), Some("/login/second-factor"));
    let page = again.get("/login/second-factor").await;
    let r = again
        .post(
            "/login/second-factor",
            &[("csrf", &page.csrf()), ("code", &app.last_code())],
        )
        .await;
    assert_eq!(r.status, 401);
    assert!(r.body.contains("already used"), "{}", r.body);

    // Logout needs the CSRF token; afterwards the cookie is dead.
    let home = web2.get("/").await;
    let cookie = web2.cookies["pg_session"].clone();
    assert_eq!(web2.post("/logout", &[]).await.status, 403);
    let r = web2.post("/logout", &[("csrf", &home.csrf())]).await;
    assert_eq!(r.header("location"), Some("/login"));
    let mut old = Web::new(f.server.cas_addr);
    old.cookies.insert("pg_session".into(), cookie);
    assert_eq!(old.get("/").await.header("location"), Some("/login"));
    let actions: Vec<String> = f
        .store
        .audit_records(50)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.action)
        .collect();
    for a in ["operator.password", "operator.totp_enrol", "operator.login"] {
        assert!(actions.contains(&a.to_owned()), "{a}: {actions:?}");
    }
    f.server.shutdown().await;
}

async fn cookies_are_secure_under_tls(db: Db) {
    let f = Fixture::start(db, |s| s.cas_tls = true).await;
    assert!(f.server.cas_url.starts_with("https://"));
    let client = HttpsClient::new(
        TlsClient::new(
            None,
            ServerTrust::Pins(vec![f.server.pin]),
            &TlsPolicy::default(),
        )
        .unwrap(),
    );
    let r = get(&client, &format!("{}/login", f.server.cas_url)).await;
    assert_eq!(r.status, 200);
    let cookie = r
        .headers
        .iter()
        .find(|(n, _)| n == "set-cookie")
        .map(|(_, v)| v.clone())
        .unwrap();
    assert!(cookie.starts_with("__Host-pg_login="), "{cookie}");
    for flag in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(flag), "{cookie}");
    }
    // Issue 13, finding 10: HSTS under TLS.
    let hsts = r
        .headers
        .iter()
        .find(|(n, _)| n == "strict-transport-security")
        .map(|(_, v)| v.as_str());
    assert_eq!(hsts, Some("max-age=31536000"));
    f.server.shutdown().await;
}

async fn csrf_missing_or_wrong_changes_nothing(db: Db) {
    let f = Fixture::start(db, |_| {}).await;
    let (mut web, _) = operator(&f, "olga", Role::Operator).await;
    let before = audit_count(&f).await;
    let fields = [("serial", "ATM-9"), ("name", "Lobby")];
    let r = web.post("/terminals", &fields).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("CSRF"));
    let r = web
        .post(
            "/terminals",
            &[("csrf", "0".repeat(64).as_str()), ("serial", "ATM-9")],
        )
        .await;
    assert_eq!(r.status, 403);
    // The login form's token is bound to its cookie.
    let mut stranger = Web::new(f.server.cas_addr);
    let r = stranger
        .post(
            "/login",
            &[
                ("csrf", "x"),
                ("username", "olga"),
                ("password", NEW_PASSWORD),
            ],
        )
        .await;
    assert_eq!(r.status, 403);
    assert!(f.store.terminals().await.unwrap().is_empty());
    assert_eq!(audit_count(&f).await, before);
    // With the token it works.
    let page = web.get("/terminals/new").await;
    let r = web
        .post(
            "/terminals",
            &[
                ("csrf", &page.csrf()),
                ("serial", "ATM-9"),
                ("name", "Lobby"),
            ],
        )
        .await;
    assert_eq!(
        (r.status, r.header("location")),
        (303, Some("/terminals/ATM-9"))
    );
    f.server.shutdown().await;
}

async fn a_viewer_cannot_approve_or_change(db: Db) {
    let f = Fixture::start(db, |_| {}).await;
    f.register("ATM-1").await;
    let t = TestTerminal::new("ATM-1");
    let p = t.start_pairing(&f.gate(""), "ATM-1").await;
    let (mut web, mut app) = operator(&f, "vera", Role::Viewer).await;
    let page = web.get(&format!("/requests/{}", p.id)).await;
    assert_eq!(page.status, 200);
    assert!(
        !page.body.contains("/approve"),
        "a viewer is offered the approve form"
    );
    let totp = app.fresh().await;
    let r = web
        .post(
            &format!("/requests/{}/approve", p.id),
            &[
                ("csrf", &page.csrf()),
                ("code", &p.code.to_string()),
                ("totp", &totp),
            ],
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = web
        .post("/terminals", &[("csrf", &page.csrf()), ("serial", "ATM-2")])
        .await;
    assert_eq!(r.status, 403);
    let (_, token) = f
        .store
        .create_api_token_for(
            "vera",
            "ro",
            &pairgate_store::AdminAction::local("admin"),
            SystemTime::now(),
        )
        .await
        .unwrap();
    let r = web
        .api(
            "POST",
            &format!("/pairing-requests/{}/approve", p.id),
            Some(&token),
            Some(serde_json::json!({ "code": p.code.to_string(), "totp": app.fresh().await })),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.json()["error"]["code"], "PG-FORBIDDEN");
    // Reading is fine.
    assert_eq!(
        web.api("GET", "/pairing-requests?state=pending", Some(&token), None)
            .await
            .status,
        200
    );
    let req = f.store.pairing_request(&p.id).await.unwrap().unwrap();
    assert_eq!(
        (req.state.wire_status(), req.failed_attempts),
        ("pending", 0)
    );
    f.server.shutdown().await;
}

async fn approve_needs_a_fresh_totp_and_the_right_code(db: Db) {
    let f = Fixture::start(db, |_| {}).await;
    f.register("ATM-1").await;
    let t = TestTerminal::new("ATM-1");
    let p = t.start_pairing(&f.gate(""), "ATM-1").await;
    let (mut web, mut app) = operator(&f, "olga", Role::Operator).await;
    let path = format!("/requests/{}", p.id);
    let page = web.get(&path).await;
    assert!(
        page.body
            .contains(&crate::web::grouped(&t.fingerprint.to_hex()))
    );
    // The code used to sign in is a replay now.
    let r = web
        .post(
            &format!("{path}/approve"),
            &[
                ("csrf", &page.csrf()),
                ("code", &p.code.to_string()),
                ("totp", &app.last_code()),
            ],
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("already used"), "{}", r.body);
    // A wrong code counts.
    let wrong = if p.code.to_string() == "0000-0000" {
        "1111-1111"
    } else {
        "0000-0000"
    };
    let r = web
        .post(
            &format!("{path}/approve"),
            &[
                ("csrf", &page.csrf()),
                ("code", wrong),
                ("totp", &app.fresh().await),
            ],
        )
        .await;
    assert!(r.body.contains("wrong pairing code"), "{}", r.body);
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
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("Approved"));
    let req = f.store.pairing_request(&p.id).await.unwrap().unwrap();
    assert_eq!(
        (req.state.wire_status(), req.failed_attempts),
        ("approved", 1)
    );
    f.server.shutdown().await;
}

async fn logins_are_rate_limited(db: Db) {
    let f = Fixture::start(db, |s| {
        s.login_failures_per_account = 3;
        s.login_failures_per_address = 5;
    })
    .await;
    let password = f
        .server
        .first_run_password
        .as_ref()
        .unwrap()
        .reveal()
        .to_owned();
    let mut web = Web::new(f.server.cas_addr);
    let attempt = async |web: &mut Web, user: &str, pw: &str| {
        let page = web.get("/login").await;
        web.post(
            "/login",
            &[("csrf", &page.csrf()), ("username", user), ("password", pw)],
        )
        .await
    };
    for _ in 0..3 {
        assert_eq!(attempt(&mut web, "admin", "guess").await.status, 401);
    }
    // Over the account's limit even the right password is refused.
    let r = attempt(&mut web, "admin", &password).await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.body.contains("Too many failed attempts"));
    // The address limit covers made-up accounts too.
    assert_eq!(attempt(&mut web, "nobody", "x").await.status, 401);
    assert_eq!(attempt(&mut web, "noone", "x").await.status, 401);
    assert_eq!(attempt(&mut web, "someone", "x").await.status, 429);
    // Only real accounts leave audit records (written off the answer's
    // path, so they may land a moment later).
    let logins = async || {
        f.store
            .search_audit("operator.login", 0, 100)
            .await
            .unwrap()
            .total
    };
    assert!(
        eventually(std::time::Duration::from_secs(5), async || logins().await
            == 3)
        .await
    );
    f.server.shutdown().await;
}

async fn the_api_round_trip(db: Db) {
    let f = Fixture::start(db, |_| {}).await;
    let creds = f
        .store
        .create_operator(
            "olga",
            Role::Operator,
            &Actor::new("admin"),
            SystemTime::now(),
        )
        .await
        .unwrap();
    let mut app = Authenticator::new(&creds.totp_uri);
    let (_, token) = f
        .store
        .create_api_token_for(
            "olga",
            "ci",
            &pairgate_store::AdminAction::local("admin"),
            SystemTime::now(),
        )
        .await
        .unwrap();
    let web = Web::new(f.server.cas_addr);
    // The document is public; everything else needs the token.
    let spec = web.api("GET", "/openapi.json", None, None).await;
    assert_eq!(spec.status, 200);
    assert!(spec.json()["paths"]["/pairing-requests/{id}/approve"]["post"].is_object());
    let r = web.api("GET", "/terminals", None, None).await;
    assert_eq!(r.status, 401);
    assert!(r.header("www-authenticate").unwrap().starts_with("Bearer"));
    assert_eq!(
        web.api("GET", "/terminals", Some("pgt_0123456789abcdef_00"), None)
            .await
            .status,
        401
    );

    let r = web
        .api("POST", "/terminals", Some(&token), Some(serde_json::json!({ "serial": "ATM-7", "name": "Lobby", "location": "Main St", "contact_name": "Jana", "contact_phone": "+420 1" })))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["state"], "registered");
    let r = web
        .api(
            "POST",
            "/terminals",
            Some(&token),
            Some(serde_json::json!({ "serial": "bad serial!" })),
        )
        .await;
    assert_eq!(r.status, 400);
    let t = TestTerminal::new("ATM-7");
    let p = t.start_pairing(&f.gate(""), "ATM-7").await;
    let r = web
        .api("GET", "/pairing-requests?state=pendng", Some(&token), None)
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["code"], "PG-BAD-QUERY");
    let pending = web
        .api("GET", "/pairing-requests?state=pending", Some(&token), None)
        .await
        .json();
    let listed = &pending["pairing_requests"][0];
    assert_eq!(
        (
            listed["id"].as_str().unwrap(),
            listed["serial"].as_str().unwrap()
        ),
        (p.id.as_str(), "ATM-7")
    );
    assert_eq!(listed["fingerprint"], t.fingerprint.to_hex());
    let r = web
        .api(
            "POST",
            &format!("/pairing-requests/{}/approve", p.id),
            Some(&token),
            Some(serde_json::json!({ "code": p.code.to_string() })),
        )
        .await;
    assert_eq!(r.status, 400, "a missing TOTP is refused: {}", r.body);
    let r = web
        .api(
            "POST",
            &format!("/pairing-requests/{}/approve", p.id),
            Some(&token),
            Some(serde_json::json!({ "code": p.code.to_string(), "totp": app.fresh().await })),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["terminal"]["state"], "paired");
    let master = t.https(ServerTrust::Pins(vec![f.server.pin]));
    assert!(
        eventually(std::time::Duration::from_secs(2), async || get(
            &master,
            &f.master("/v1/me")
        )
        .await
        .status
            == 200)
        .await
    );

    let r = web
        .api(
            "POST",
            "/terminals/ATM-7/unpair",
            Some(&token),
            Some(serde_json::json!({ "totp": app.fresh().await })),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["state"], "unpaired");
    let fresh = t.https(ServerTrust::Pins(vec![f.server.pin]));
    assert!(
        eventually(std::time::Duration::from_secs(2), async || get(
            &fresh,
            &f.master("/v1/me")
        )
        .await
        .status
            == 403)
        .await
    );
    let audit = web
        .api("GET", "/audit?q=ATM-7", Some(&token), None)
        .await
        .json();
    assert_eq!(audit["chain"]["intact"], true);
    let actions: Vec<&str> = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    for a in ["terminal.register", "pairing.approve", "terminal.unpair"] {
        assert!(actions.contains(&a), "{a}: {actions:?}");
    }
    assert!(
        audit["records"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["actor"] == "olga")
    );
    f.server.shutdown().await;
}

crate::on_both_databases!(
    first_run_admin_signs_in_with_cookie_flags,
    cookies_are_secure_under_tls,
    csrf_missing_or_wrong_changes_nothing,
    a_viewer_cannot_approve_or_change,
    approve_needs_a_fresh_totp_and_the_right_code,
    logins_are_rate_limited,
    the_api_round_trip,
);
