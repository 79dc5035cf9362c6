//! Bad input at the gate gets a clear JSON error and writes nothing
//! (unknown serials and other refusals: `hostile.rs`).

use std::time::Duration;

use pairgate_pki::Nonce;
use pairgate_tls::client::ServerTrust;

use crate::support::{Db, Fixture, TestTerminal, assert_error, get, post};

async fn counts(f: &Fixture) -> (usize, usize) {
    (
        f.store.pairing_requests(false, 1000).await.unwrap().len(),
        f.store.audit_records(1000).await.unwrap().len(),
    )
}

async fn malformed_and_oversized_bodies(db: Db) {
    let f = Fixture::start(db, |s| s.max_body_bytes = 1024).await;
    f.register("ATM-1").await;
    let before = counts(&f).await;
    let t = TestTerminal::new("ATM-1");
    let client = t.https(ServerTrust::Pins(vec![f.server.pin]));
    let url = f.gate("/v1/pairing");
    let send = |body: Vec<u8>, kind: &'static str| {
        let client = client.clone();
        let url = url.clone();
        async move {
            client
                .request("POST", &url, &[("content-type", kind)], Some(body))
                .await
                .unwrap()
        }
    };
    assert_error(
        &send(b"{not json".to_vec(), "application/json").await,
        400,
        "PG-BAD-JSON",
    );
    assert_error(
        &send(b"[]".to_vec(), "application/json").await,
        400,
        "PG-BAD-JSON",
    );
    // Unknown fields and missing ones.
    let extra = serde_json::json!({"serial": "ATM-1", "commitment": "00", "admin": true});
    assert_error(
        &send(extra.to_string().into_bytes(), "application/json").await,
        400,
        "PG-BAD-JSON",
    );
    assert_error(
        &send(b"{}".to_vec(), "application/json").await,
        400,
        "PG-BAD-JSON",
    );
    let big = serde_json::json!({"serial": "ATM-1", "commitment": "a".repeat(4096)});
    assert_error(
        &send(big.to_string().into_bytes(), "application/json").await,
        413,
        "PG-TOO-LARGE",
    );
    assert_error(
        &send(b"serial=x".to_vec(), "text/plain").await,
        415,
        "PG-CONTENT-TYPE",
    );
    let bad = serde_json::json!({"serial": "ATM 1; DROP", "commitment": Nonce::random().commitment().to_hex()});
    assert_error(&post(&client, &url, &bad).await, 400, "PG-BAD-SERIAL");
    let bad = serde_json::json!({"serial": "ATM-1", "commitment": "zz"});
    assert_error(&post(&client, &url, &bad).await, 400, "PG-BAD-COMMITMENT");
    let bad = serde_json::json!({"serial": "ATM-1", "model": "m".repeat(101), "commitment": Nonce::random().commitment().to_hex()});
    assert_error(&post(&client, &url, &bad).await, 400, "PG-INVALID");
    // Requests that are not ours, malformed ids, unknown paths.
    assert_error(
        &get(&client, &f.gate("/v1/pairing/0123")).await,
        404,
        "PG-NOT-FOUND",
    );
    assert_error(
        &get(&client, &f.gate("/v1/pairing/../../etc")).await,
        404,
        "PG-NO-ROUTE",
    );
    let r = client
        .request(
            "POST",
            &f.gate("/v1/pairing/abc/reveal"),
            &[],
            Some(b"{\"terminal_nonce\":\"00\"}".to_vec()),
        )
        .await
        .unwrap();
    assert_error(&r, 400, "PG-BAD-NONCE");
    // The wrong method and a malformed query answer in JSON too.
    assert_error(&get(&client, &url).await, 405, "PG-METHOD");
    let r = get(
        &client,
        &f.gate(&format!("/v1/pairing/{}?wait=soon", "0".repeat(32))),
    )
    .await;
    assert_error(&r, 400, "PG-BAD-QUERY");
    assert_eq!(counts(&f).await, before, "bad input must write nothing");
    f.server.shutdown().await;
}

async fn wrong_reveal_and_expired_request(db: Db) {
    let clock = pairgate_server::Clock::manual(std::time::SystemTime::now());
    let f = Fixture::start_with_clock(db, clock.clone(), |s| s.pairing_ttl_secs = 1).await;
    f.register("ATM-1").await;
    let t = TestTerminal::new("ATM-1");
    let client = t.https(ServerTrust::Pins(vec![f.server.pin]));
    let open = |nonce: Nonce| {
        let client = client.clone();
        let url = f.gate("/v1/pairing");
        async move {
            let r = post(
                &client,
                &url,
                &serde_json::json!({"serial": "ATM-1", "commitment": nonce.commitment().to_hex()}),
            )
            .await;
            assert_eq!(r.status, 202);
            crate::support::json(&r)["request_id"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let id = open(Nonce::random()).await;
    let reveal_url = f.gate(&format!("/v1/pairing/{id}/reveal"));
    let r = post(
        &client,
        &reveal_url,
        &serde_json::json!({"terminal_nonce": Nonce::random().to_hex()}),
    )
    .await;
    assert_error(&r, 403, "PG-REVEAL-MISMATCH");
    // The request has ended.
    let r = get(&client, &f.gate(&format!("/v1/pairing/{id}"))).await;
    assert_eq!(crate::support::json(&r)["status"], "rejected");
    // Another key cannot reveal or read a request it did not open.
    let nonce = Nonce::random();
    let id = open(nonce).await;
    let other = TestTerminal::new("other").https(ServerTrust::Pins(vec![f.server.pin]));
    let reveal_url = f.gate(&format!("/v1/pairing/{id}/reveal"));
    let r = post(
        &other,
        &reveal_url,
        &serde_json::json!({"terminal_nonce": nonce.to_hex()}),
    )
    .await;
    assert_error(&r, 404, "PG-NOT-FOUND");
    assert_error(
        &get(&other, &f.gate(&format!("/v1/pairing/{id}"))).await,
        404,
        "PG-NOT-FOUND",
    );
    // Too late.
    clock.advance(Duration::from_millis(1100));
    let r = post(
        &client,
        &reveal_url,
        &serde_json::json!({"terminal_nonce": nonce.to_hex()}),
    )
    .await;
    assert_error(&r, 410, "PG-EXPIRED");
    let r = get(&client, &f.gate(&format!("/v1/pairing/{id}"))).await;
    assert_eq!(crate::support::json(&r)["status"], "expired");
    f.server.shutdown().await;
}

crate::on_both_databases!(
    malformed_and_oversized_bodies,
    wrong_reveal_and_expired_request,
);
