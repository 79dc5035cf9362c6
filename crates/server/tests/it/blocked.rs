//! The block list of terminal keys through the CAS API and pages: block
//! a pairing request's key, list, unblock; viewers read only; bad input
//! changes nothing; each change is audited.

use std::time::SystemTime;

use pairgate_store::{Actor, PairingState, Role};

use crate::cas::operator;
use crate::support::{Db, Fixture, TestTerminal};
use crate::web::Web;

async fn the_block_list_through_the_api_and_the_pages(db: Db) {
    let f = Fixture::start(db, |_| {}).await;
    f.register("ATM-7").await;
    let (mut web, _) = operator(&f, "olga", Role::Operator).await;
    f.store
        .create_operator(
            "vera",
            Role::Viewer,
            &Actor::new("admin"),
            SystemTime::now(),
        )
        .await
        .unwrap();
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
    let (_, viewer) = f
        .store
        .create_api_token_for(
            "vera",
            "ro",
            &pairgate_store::AdminAction::local("admin"),
            SystemTime::now(),
        )
        .await
        .unwrap();
    let api = Web::new(f.server.cas_addr);
    let t = TestTerminal::new("intruder");
    let p = t.start_pairing(&f.gate(""), "ATM-7").await;
    let fp = t.fingerprint.to_hex();
    let audit = f.store.audit_records(100_000).await.unwrap().len();

    let body = |fp: &str| Some(serde_json::json!({ "fingerprint": fp, "reason": "not ours" }));
    let r = api
        .api("POST", "/blocked-keys", Some(&token), body("abc"))
        .await;
    assert_eq!(
        (r.status, r.json()["error"]["code"].clone()),
        (400, "PG-BAD-FINGERPRINT".into())
    );
    let r = api
        .api("POST", "/blocked-keys", Some(&viewer), body(&fp))
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(f.store.audit_records(100_000).await.unwrap().len(), audit);

    let r = api
        .api("POST", "/blocked-keys", Some(&token), body(&fp))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["blocked_by"], "olga");
    let req = f.store.pairing_request(&p.id).await.unwrap().unwrap();
    assert_eq!(req.state, PairingState::Rejected);
    let r = api
        .api("POST", "/blocked-keys", Some(&token), body(&fp))
        .await;
    assert_eq!(r.status, 409, "{}", r.body);
    let listed = api
        .api("GET", "/blocked-keys", Some(&viewer), None)
        .await
        .json();
    assert_eq!(listed["blocked_keys"][0]["fingerprint"], fp);
    let r = api
        .api("DELETE", &format!("/blocked-keys/{fp}"), Some(&token), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = api
        .api("DELETE", &format!("/blocked-keys/{fp}"), Some(&token), None)
        .await;
    assert_eq!(r.status, 404, "{}", r.body);

    // The same from the request's page.
    let page = web.get(&format!("/requests/{}", p.id)).await;
    assert!(page.body.contains("Block this key"), "{}", page.body);
    let r = web
        .post(
            &format!("/requests/{}/block", p.id),
            &[("csrf", &page.csrf()), ("reason", "")],
        )
        .await;
    assert_eq!(r.status, 400);
    let r = web
        .post(
            &format!("/requests/{}/block", p.id),
            &[("csrf", &page.csrf()), ("reason", "seen twice")],
        )
        .await;
    assert!(r.body.contains("Key blocked"), "{}", r.body);
    let list = web.get("/blocked-keys").await;
    assert!(list.body.contains("seen twice"), "{}", list.body);
    let r = web
        .post(
            &format!("/blocked-keys/{fp}/unblock"),
            &[("csrf", &list.csrf())],
        )
        .await;
    assert!(r.body.contains("unblocked"), "{}", r.body);
    let actions: Vec<String> = f
        .store
        .audit_records(4)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.action)
        .collect();
    assert_eq!(
        actions,
        ["key.unblock", "key.block", "key.unblock", "key.block"]
    );
    f.server.shutdown().await;
}

crate::on_both_databases!(the_block_list_through_the_api_and_the_pages);
