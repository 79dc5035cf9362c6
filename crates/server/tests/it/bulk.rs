//! Bulk operations over the CAS API: pending requests filtered by serial
//! prefix, age and flag; a set approved by their codes under one TOTP
//! (a wrong code refused for its request alone) and a set rejected; the
//! terminals exported as CSV and JSON.

use pairgate_store::Role;

use crate::accounts::{on_manual_clock, with_token};
use crate::support::{Db, TestTerminal};
use crate::web::Web;

async fn bulk_operations(db: Db) {
    let f = on_manual_clock(db, |_| {}).await;
    let (mut olga, token) = with_token(&f, "olga", Role::Operator).await;
    let web = Web::new(f.server.cas_addr);
    let gate = f.gate("");
    let mut pairings = Vec::new();
    for serial in ["ATM-B1", "ATM-B2", "ATM-B3", "KIOSK-1"] {
        f.register(serial).await;
        let t = TestTerminal::new(serial);
        pairings.push((serial, t.start_pairing(&gate, serial).await));
    }
    // Another key for KIOSK-1 supersedes its request: flagged.
    let other = TestTerminal::new("KIOSK-1");
    let kiosk = other.start_pairing(&gate, "KIOSK-1").await;

    let list = |query: &str| {
        let path = format!("/pairing-requests?state=pending&{query}");
        let web = &web;
        let token = &token;
        async move {
            let r = web.api("GET", &path, Some(token), None).await;
            assert_eq!(r.status, 200, "{}", r.body);
            r.json()
        }
    };
    assert_eq!(list("serial_prefix=ATM-B").await["total"], 3);
    assert_eq!(list("serial_prefix=KIOSK").await["total"], 1);
    assert_eq!(
        list("flagged=true").await["pairing_requests"][0]["id"],
        kiosk.id
    );
    assert_eq!(list("older_than_secs=3600").await["total"], 0);
    assert_eq!(list("older_than_secs=0").await["total"], 4);
    let r = web
        .api(
            "GET",
            "/pairing-requests?older_than_secs=soon",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);

    let code = |i: usize| pairings[i].1.code.to_string();
    let wrong = if code(2) == "0000-0001" {
        "0000-0002"
    } else {
        "0000-0001"
    };
    let body = serde_json::json!({
        "approvals": [
            { "id": pairings[0].1.id, "code": code(0) },
            { "id": pairings[1].1.id, "code": code(1) },
            { "id": pairings[2].1.id, "code": wrong },
        ],
        "totp": olga.fresh().await,
    });
    let r = web
        .api(
            "POST",
            "/pairing-requests/bulk-approve",
            Some(&token),
            Some(body),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let results = r.json()["results"].clone();
    assert_eq!(results[0]["status"], "approved");
    assert_eq!(results[1]["status"], "approved");
    assert_eq!(results[2]["status"], "refused");
    assert_eq!(results[2]["error"]["code"], "PG-WRONG-CODE");
    // No TOTP, no approvals.
    let r = web
        .api(
            "POST",
            "/pairing-requests/bulk-approve",
            Some(&token),
            Some(serde_json::json!({ "approvals": [{ "id": pairings[2].1.id, "code": code(2) }], "totp": "000000" })),
        )
        .await;
    assert_eq!(r.status, 401, "{}", r.body);

    let body = serde_json::json!({ "ids": [kiosk.id, "0".repeat(32)] });
    let r = web
        .api(
            "POST",
            "/pairing-requests/bulk-reject",
            Some(&token),
            Some(body),
        )
        .await;
    let results = r.json()["results"].clone();
    assert_eq!(results[0]["status"], "rejected");
    assert_eq!(results[1]["error"]["code"], "PG-NOT-FOUND");
    let r = web
        .api(
            "POST",
            "/pairing-requests/bulk-reject",
            Some(&token),
            Some(serde_json::json!({ "ids": [] })),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);

    let r = web
        .api("GET", "/export/terminals?format=csv", Some(&token), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("text/csv; charset=utf-8"));
    let mut lines = r.body.lines();
    assert!(lines.next().unwrap().starts_with("serial,name,location"));
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 4, "{}", r.body);
    assert!(
        rows.iter()
            .any(|l| l.starts_with("ATM-B1,") && l.contains(",paired,")),
        "{}",
        r.body
    );
    let r = web
        .api(
            "GET",
            "/export/terminals?format=json&state=paired",
            Some(&token),
            None,
        )
        .await;
    let all = r.json();
    assert_eq!(all.as_array().unwrap().len(), 2, "{all}");
    let r = web
        .api("GET", "/export/terminals?format=xml", Some(&token), None)
        .await;
    assert_eq!(r.status, 400);
}

/// The same in CAS: the bulk page filters pending requests; selected
/// requests are approved by their codes under one TOTP (a wrong code
/// refused for its request alone), or rejected.
async fn bulk_decisions_in_cas(db: Db) {
    let f = crate::support::Fixture::start(db, |_| {}).await;
    let (mut web, mut app) = crate::cas::operator(&f, "olga", Role::Operator).await;
    let gate = f.gate("");
    let mut p = Vec::new();
    for serial in ["ATM-C1", "ATM-C2", "ATM-C3", "KIOSK-9"] {
        f.register(serial).await;
        p.push(TestTerminal::new(serial).start_pairing(&gate, serial).await);
    }
    let page = web.get("/requests/bulk?serial_prefix=ATM-C").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains("3 pending request(s) match"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("KIOSK-9"));
    let csrf = page.csrf();
    let totp = app.fresh().await;
    let (code0, code1) = (p[0].code.to_string(), p[1].code.to_string());
    let wrong = if code1 == "0000-0001" {
        "0000-0002"
    } else {
        "0000-0001"
    };
    let (c0, c1) = (format!("code_{}", p[0].id), format!("code_{}", p[1].id));
    let r = web
        .post(
            "/requests/bulk",
            &[
                ("csrf", &csrf),
                ("action", "approve"),
                ("totp", &totp),
                ("pick", &p[0].id),
                (&c0, &code0),
                ("pick", &p[1].id),
                (&c1, wrong),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let results = crate::web::between(&r.body, "id=\"bulk-results\"", "</table>").unwrap();
    assert!(results.contains(">approved<"), "{results}");
    assert!(
        results.contains("refused") && results.contains("wrong pairing code"),
        "{results}"
    );
    let r = web
        .post(
            "/requests/bulk",
            &[("csrf", &csrf), ("action", "reject"), ("pick", &p[2].id)],
        )
        .await;
    assert!(r.body.contains(">rejected<"), "{}", r.body);
    // Nothing selected: refused, nothing changed.
    let r = web
        .post("/requests/bulk", &[("csrf", &csrf), ("action", "reject")])
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let left = web.get("/requests/bulk").await;
    assert!(
        left.body.contains("2 pending request(s) match"),
        "{}",
        left.body
    );
    // The terminals page's download.
    let csv = web.get("/export/terminals?format=csv").await;
    assert_eq!(csv.status, 200);
    assert!(csv.body.starts_with("serial,name"), "{}", csv.body);
    assert!(csv.body.contains("ATM-C1,"), "{}", csv.body);
}

crate::on_both_databases!(bulk_operations, bulk_decisions_in_cas);
