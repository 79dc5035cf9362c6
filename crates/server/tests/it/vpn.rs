//! VPN enrolment (issue 19) at the gate and the master: bad input is
//! refused and changes nothing; a WireGuard public key gets a profile
//! with the next free address and no private key; the same key again
//! changes nothing, another replaces it; suspension, re-pairing and
//! unpair revoke it (unpair gives the address back); a full pool is a
//! clear 503; two instances on one database allocating at once never
//! hand out one address twice.

use std::time::{Duration, SystemTime};

use base64::Engine;
use pairgate_server::{Clock, Instance, ServiceSet};
use pairgate_store::{Actor, Changer, Serial};
use pairgate_tls::client::ServerTrust;
use pairgate_tls::https::HttpsClient;

use crate::master::paired_as;
use crate::support::{Db, Fixture, TestTerminal, assert_error, eventually, get, json, post};

/// A WireGuard public key (base64) made the way the agent makes one.
fn wireguard_key() -> (String, String) {
    let dir = pairgate_testkit::temp_dir();
    let key =
        pairgate_keystore::wireguard::WireGuardKey::generate(&dir.path().join("wg.key")).unwrap();
    (key.public_base64(), key.private_base64().to_string())
}

const SERVER_KEY: &str = "rkmlZuKnY3yMtb/G5Kz85Q2+ad70xAaovhH8vwu3PHg=";

async fn start(db: Db, pool: &str) -> Fixture {
    let pool = pool.to_owned();
    Fixture::start_prepared(
        db,
        Clock::system(),
        |s| {
            s.vpn_type = "wireguard".into();
            s.vpn_endpoint = "vpn.example.net:51820".into();
            s.vpn_pool_v4 = pool;
            s.vpn_dns = vec!["10.9.0.1".into()];
            s.vpn_pool_v6 = "fd00:9::/112".into();
        },
        async |store| {
            store
                .record_vpn_server_key(
                    "wireguard",
                    SERVER_KEY,
                    &Actor::new("test"),
                    SystemTime::now(),
                )
                .await
                .unwrap();
        },
    )
    .await
}

async fn enrol(client: &HttpsClient, url: &str, key: &str) -> pairgate_tls::https::HttpsResponse {
    post(
        client,
        url,
        &serde_json::json!({ "wireguard_public_key": key }),
    )
    .await
}

async fn audit_len(f: &Fixture) -> usize {
    f.store.audit_records(10_000).await.unwrap().len()
}

async fn actions(f: &Fixture, action: &str) -> Vec<serde_json::Value> {
    f.store
        .audit_records(10_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.action == action)
        .map(|r| serde_json::from_str(&r.detail).unwrap())
        .collect()
}

async fn bad_input_is_refused_and_changes_nothing(f: &Fixture, t: &HttpsClient) {
    let url = f.gate("/v1/vpn");
    let before = audit_len(f).await;
    let (good, _) = wireguard_key();
    for (body, status, code) in [
        (serde_json::json!({}), 400, "PG-INVALID"),
        (
            serde_json::json!({ "wireguard_public_key": good, "csr": "x" }),
            400,
            "PG-INVALID",
        ),
        (
            serde_json::json!({ "csr": "-----BEGIN CERTIFICATE REQUEST-----" }),
            400,
            "PG-INVALID",
        ),
        (
            serde_json::json!({ "wireguard_public_key": "not base64!" }),
            400,
            "PG-INVALID",
        ),
        (
            serde_json::json!({ "wireguard_public_key": "AAAA" }),
            400,
            "PG-INVALID",
        ),
        (
            serde_json::json!({ "wireguard_public_key": base64::engine::general_purpose::STANDARD.encode([0u8; 32]) }),
            400,
            "PG-INVALID",
        ),
        (
            serde_json::json!({ "wireguard_public_key": SERVER_KEY }),
            400,
            "PG-INVALID",
        ),
        (
            serde_json::json!({ "wireguard_public_key": good, "key": 1 }),
            400,
            "PG-BAD-JSON",
        ),
    ] {
        let r = post(t, &url, &body).await;
        assert_error(&r, status, code);
    }
    assert_eq!(audit_len(f).await, before, "refusals write nothing");
    let r = get(t, &url).await;
    assert_eq!(r.status, 200);
    let status = json(&r);
    assert_eq!(status["type"], "wireguard");
    assert_eq!(status["enrolled"], false, "{status}");
}

async fn enrolment_revocation_and_the_pool(db: Db) {
    let f = start(db, "10.9.0.0/29").await;
    let trust = || ServerTrust::Pins(vec![f.server.pin]);
    // Not paired: refused at the gate.
    let stranger = TestTerminal::new("stranger");
    let (key, _) = wireguard_key();
    assert_error(
        &enrol(&stranger.https(trust()), &f.gate("/v1/vpn"), &key).await,
        403,
        "PG-NOT-PAIRED",
    );

    let one = TestTerminal::new("ATM-W1");
    paired_as(&f, "ATM-W1", &one).await;
    let t = one.https(trust());
    bad_input_is_refused_and_changes_nothing(&f, &t).await;

    enrol_replace_and_refuse(&f, &t).await;
    let others = fill_the_pool(&f).await;
    revocations(&f, &others).await;
}

/// ATM-W1 enrols at the gate, is served the same by the master, enrols
/// the same key again (nothing changes) and another (it replaces the
/// first, which never comes back).
async fn enrol_replace_and_refuse(f: &Fixture, t: &HttpsClient) {
    // Enrolled at the gate: the first terminal address, a profile that
    // names the server's key and holds no private key.
    let (key, private) = wireguard_key();
    let r = enrol(t, &f.gate("/v1/vpn"), &key).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let status = json(&r);
    assert_eq!(status["address"], "10.9.0.2/29");
    assert_eq!(status["address_v6"], "fd00:9::2/112");
    assert_eq!(status["server_address"], "10.9.0.1/29");
    let profile = status["profile"].as_str().unwrap().to_owned();
    assert!(
        profile.contains(&format!("PublicKey = {SERVER_KEY}\n")),
        "{profile}"
    );
    assert!(
        profile.contains("DNS = 10.9.0.1\n")
            && profile.contains("Address = 10.9.0.2/29, fd00:9::2/112\n")
    );
    assert!(!profile.contains(&private) && !profile.contains("PrivateKey ="));
    // The master serves the same, and its paired set carries the profile.
    let r = get(t, &f.master("/v1/vpn")).await;
    assert_eq!(
        json(&r)["profile"],
        profile.as_str(),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert!(
        eventually(Duration::from_secs(3), async || {
            json(&get(t, &f.master("/v1/me")).await)["vpn_profile"] == profile.as_str()
        })
        .await
    );
    // The same key again changes nothing; another replaces it.
    let issued = actions(f, "vpn.credential_issued").await.len();
    assert_eq!(
        json(&enrol(t, &f.master("/v1/vpn"), &key).await)["address"],
        "10.9.0.2/29"
    );
    assert_eq!(actions(f, "vpn.credential_issued").await.len(), issued);
    let (second, _) = wireguard_key();
    let r = enrol(t, &f.master("/v1/vpn"), &second).await;
    assert_eq!(
        json(&r)["address"],
        "10.9.0.2/29",
        "a terminal keeps its address"
    );
    let revoked = actions(f, "vpn.revoked").await;
    assert_eq!(revoked[0]["reason"], "replaced");
    assert_eq!(revoked[0]["public_key"], key.as_str());
    // A key once replaced never comes back, and the refusal writes
    // nothing.
    let before = audit_len(f).await;
    assert_error(
        &enrol(t, &f.master("/v1/vpn"), &key).await,
        409,
        "PG-CONFLICT",
    );
    assert_eq!(audit_len(f).await, before);
}

/// Four more fill the /29 and a fifth gets a clear 503; the six
/// terminals, ATM-W2 to ATM-W6.
async fn fill_the_pool(f: &Fixture) -> Vec<(String, TestTerminal)> {
    let trust = || ServerTrust::Pins(vec![f.server.pin]);
    // Four more fill the /29; the fifth gets a clear 503.
    let mut others = Vec::new();
    for n in 2..=6 {
        let serial = format!("ATM-W{n}");
        let other = TestTerminal::new(&serial);
        paired_as(f, &serial, &other).await;
        let before = audit_len(f).await;
        let r = enrol(
            &other.https(trust()),
            &f.gate("/v1/vpn"),
            &wireguard_key().0,
        )
        .await;
        if n < 6 {
            assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        } else {
            assert_error(&r, 503, "PG-LIMIT");
            assert_eq!(audit_len(f).await, before, "a full pool writes nothing");
            assert!(
                json(&r)["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("full")
            );
        }
        others.push((serial, other));
    }
    let addresses: std::collections::BTreeSet<String> = f
        .store
        .vpn_credentials("wireguard")
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.revoked_at.is_none())
        .map(|c| c.address)
        .collect();
    assert_eq!(addresses.len(), 5, "{addresses:?}");

    others
}

/// Suspension, unpair and re-pairing revoke; unpair frees the address.
async fn revocations(f: &Fixture, others: &[(String, TestTerminal)]) {
    let trust = || ServerTrust::Pins(vec![f.server.pin]);
    let waiting = others[4].1.clone();
    // Suspension revokes; unpair revokes and gives the address back,
    // which the waiting terminal then gets.
    let w1 = Serial::new("ATM-W1").unwrap();
    f.store
        .suspend_terminal(&w1, &Changer::local("olga"), SystemTime::now())
        .await
        .unwrap();
    assert!(f.store.vpn_credential(&w1).await.unwrap().is_none());
    assert_eq!(actions(f, "vpn.revoked").await[0]["reason"], "suspend");
    assert_eq!(
        f.store.terminal(&w1).await.unwrap().unwrap().vpn_profile,
        ""
    );
    let w2 = others[0].0.clone();
    let freed = f
        .store
        .vpn_credential(&Serial::new(&w2).unwrap())
        .await
        .unwrap()
        .unwrap()
        .address;
    f.unpair(&w2).await;
    let last = actions(f, "vpn.revoked").await;
    assert_eq!(
        (
            last[0]["reason"].as_str(),
            last[0]["address_released"].as_bool()
        ),
        (Some("unpair"), Some(true))
    );
    // ATM-W6 was refused above.
    let r = enrol(
        &waiting.https(trust()),
        &f.gate("/v1/vpn"),
        &wireguard_key().0,
    )
    .await;
    assert_eq!(
        json(&r)["address"],
        freed.as_str(),
        "the released address is used again"
    );

    // Re-pairing with a new key revokes the credential of the old one.
    let (w3, _) = &others[1];
    let again = TestTerminal::new(w3);
    let mut op = crate::support::Operator::create(&f.store, "rita").await;
    let p = again.start_pairing(&f.gate(""), w3).await;
    op.approve(&f.store, &p.id, p.code).await.unwrap();
    assert_eq!(actions(f, "vpn.revoked").await[0]["reason"], "repair");
    let r = get(&again.https(trust()), &f.gate("/v1/vpn")).await;
    assert_eq!(json(&r)["enrolled"], false);
}

/// Two instances on one database enrol 30 terminals at once: no address
/// is handed out twice.
async fn two_instances_never_share_an_address(db: Db) {
    let f = start(db, "10.9.0.0/24").await;
    let mut settings = crate::cluster::another(&f, "second");
    settings = crate::cluster::sharing_identity(&f, settings);
    let second = Instance::start(
        &settings,
        ServiceSet::parse(&["gate"]).unwrap(),
        Clock::system(),
    )
    .await
    .unwrap();
    let gates = [
        f.gate("/v1/vpn"),
        format!("https://{}/v1/vpn", second.gate_addr.unwrap()),
    ];
    let mut terminals = Vec::new();
    for n in 0..30 {
        let serial = format!("ATM-C{n}");
        let t = TestTerminal::new(&serial);
        paired_as(&f, &serial, &t).await;
        terminals.push(t);
    }
    let pin = f.server.pin;
    let tasks: Vec<_> = terminals
        .into_iter()
        .enumerate()
        .map(|(n, t)| {
            let url = gates[n % 2].clone();
            tokio::spawn(async move {
                let r = enrol(
                    &t.https(ServerTrust::Pins(vec![pin])),
                    &url,
                    &wireguard_key().0,
                )
                .await;
                assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
                json(&r)["address"].as_str().unwrap().to_owned()
            })
        })
        .collect();
    let mut addresses = std::collections::BTreeSet::new();
    for task in tasks {
        assert!(
            addresses.insert(task.await.unwrap()),
            "an address was handed out twice"
        );
    }
    assert_eq!(addresses.len(), 30);
}

/// The CAS API shows a terminal's credential and regenerates it with a
/// fresh TOTP: revoked (audited), and the terminal enrols again with a
/// new key and keeps its address. A wrong code changes nothing.
async fn operators_regenerate_a_credential(db: Db) {
    let f = start(db, "10.9.0.0/24").await;
    let t = TestTerminal::new("ATM-G1");
    paired_as(&f, "ATM-G1", &t).await;
    let client = t.https(ServerTrust::Pins(vec![f.server.pin]));
    let (key, _) = wireguard_key();
    assert_eq!(enrol(&client, &f.gate("/v1/vpn"), &key).await.status, 200);
    let creds = f
        .store
        .create_operator(
            "vera",
            pairgate_store::Role::Operator,
            &Actor::new("admin"),
            SystemTime::now(),
        )
        .await
        .unwrap();
    let mut app = crate::web::Authenticator::new(&creds.totp_uri);
    let (_, token) = f
        .store
        .create_api_token_for(
            "vera",
            "ci",
            &pairgate_store::AdminAction::local("admin"),
            SystemTime::now(),
        )
        .await
        .unwrap();
    let web = crate::web::Web::new(f.server.cas_addr);
    let r = web
        .api("GET", "/terminals/ATM-G1/vpn", Some(&token), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let shown = r.json();
    assert_eq!(shown["credentials"][0]["public_key"], key.as_str());
    assert_eq!(shown["credentials"][0]["address"], "10.9.0.2/24");
    assert!(shown["credentials"][0]["revoked_at"].is_null());
    let regenerate = "/terminals/ATM-G1/vpn/regenerate";
    let before = audit_len(&f).await;
    let r = web
        .api(
            "POST",
            regenerate,
            Some(&token),
            Some(serde_json::json!({ "totp": "000000" })),
        )
        .await;
    assert!(r.status == 401 || r.status == 403, "{}", r.body);
    assert!(
        f.store
            .vpn_credential(&Serial::new("ATM-G1").unwrap())
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        audit_len(&f).await,
        before + 1,
        "only the failed step-up is recorded"
    );
    let body = serde_json::json!({ "totp": app.fresh().await });
    let r = web.api("POST", regenerate, Some(&token), Some(body)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["credentials"][0]["revoked_reason"], "regenerate");
    let revoked = actions(&f, "vpn.revoked").await;
    assert_eq!(revoked[0]["reason"], "regenerate");
    assert_eq!(
        json(&get(&client, &f.master("/v1/vpn")).await)["enrolled"],
        false
    );
    assert_error(
        &enrol(&client, &f.master("/v1/vpn"), &key).await,
        409,
        "PG-CONFLICT",
    );
    let (again, _) = wireguard_key();
    let r = enrol(&client, &f.master("/v1/vpn"), &again).await;
    assert_eq!(json(&r)["address"], "10.9.0.2/24");
    the_page_regenerates_too(&f, &again).await;
    // Nothing to regenerate for a terminal without a credential.
    let other = TestTerminal::new("ATM-G2");
    paired_as(&f, "ATM-G2", &other).await;
    let body = serde_json::json!({ "totp": app.fresh().await });
    let r = web
        .api(
            "POST",
            "/terminals/ATM-G2/vpn/regenerate",
            Some(&token),
            Some(body),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.body);

    // An address given back waits while the pool has fresh ones: ATM-G1's
    // goes, and the next terminal gets a new one.
    let g2 = other.https(ServerTrust::Pins(vec![f.server.pin]));
    let r = enrol(&g2, &f.gate("/v1/vpn"), &wireguard_key().0).await;
    assert_eq!(json(&r)["address"], "10.9.0.3/24");
    f.unpair("ATM-G1").await;
    let third = TestTerminal::new("ATM-G3");
    paired_as(&f, "ATM-G3", &third).await;
    let g3 = third.https(ServerTrust::Pins(vec![f.server.pin]));
    let r = enrol(&g3, &f.gate("/v1/vpn"), &wireguard_key().0).await;
    assert_eq!(json(&r)["address"], "10.9.0.4/24");
}
/// The terminal's page shows ATM-G1's credential (key `key`) and
/// regenerates it; the VPN page shows the settings.
async fn the_page_regenerates_too(f: &Fixture, key: &str) {
    let (mut page_web, mut page_app) =
        crate::cas::operator(f, "walt", pairgate_store::Role::Operator).await;
    let page = page_web.get("/terminals/ATM-G1").await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("10.9.0.2/24") && page.body.contains(key),
        "{}",
        page.body
    );
    let code = page_app.fresh().await;
    let r = page_web
        .post(
            "/terminals/ATM-G1/vpn/regenerate",
            &[("csrf", &page.csrf()), ("totp", &code)],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("revoked (regenerate)"), "{}", r.body);
    assert!(
        f.store
            .vpn_credential(&Serial::new("ATM-G1").unwrap())
            .await
            .unwrap()
            .is_none()
    );
    let overview = page_web.get("/vpn").await;
    assert!(
        overview.body.contains("vpn.example.net:51820")
            && overview.body.contains("Admitted terminals (0)"),
        "{}",
        overview.body
    );
}

/// A terminal enrols at most ten keys a day; the eleventh is 429 and
/// writes nothing.
async fn ten_keys_a_day(db: Db) {
    let f = start(db, "10.9.0.0/24").await;
    let t = TestTerminal::new("ATM-L1");
    paired_as(&f, "ATM-L1", &t).await;
    let client = t.https(ServerTrust::Pins(vec![f.server.pin]));
    for _ in 0..pairgate_store::MAX_VPN_CREDENTIALS_PER_DAY {
        let r = enrol(&client, &f.master("/v1/vpn"), &wireguard_key().0).await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    }
    let before = audit_len(&f).await;
    let r = enrol(&client, &f.master("/v1/vpn"), &wireguard_key().0).await;
    assert_error(&r, 429, "PG-RATE-LIMITED");
    assert_eq!(audit_len(&f).await, before);
}

/// No VPN configured: 404 at both services, and the pairing config names
/// none.
async fn no_vpn_no_profile(db: Db) {
    let f = Fixture::start(db, |_| {}).await;
    let t = TestTerminal::new("ATM-N1");
    paired_as(&f, "ATM-N1", &t).await;
    let client = t.https(ServerTrust::Pins(vec![f.server.pin]));
    assert_error(&get(&client, &f.gate("/v1/vpn")).await, 404, "PG-NOT-FOUND");
    assert_error(
        &get(&client, &f.master("/v1/vpn")).await,
        404,
        "PG-NOT-FOUND",
    );
}

crate::on_both_databases!(
    enrolment_revocation_and_the_pool,
    two_instances_never_share_an_address,
    operators_regenerate_a_credential,
    ten_keys_a_day,
    no_vpn_no_profile,
);
