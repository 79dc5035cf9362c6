//! Vendor keys and manifests over the CAS API, then the gate: only an
//! admin with a fresh TOTP adds a vendor key; a viewer imports nothing; a
//! missing or bad signature imports nothing and says why; a good manifest
//! imports once (201, then 200 unchanged); its terminal pairs at the
//! reveal with no operator, and the master serves its first call.

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine;
use pairgate_pki::{SpkiPin, VendorKey};
use pairgate_store::Role;
use pairgate_tls::client::ServerTrust;

use crate::accounts::{on_manual_clock, with_token};
use crate::support::{Db, TestTerminal, get, json};
use crate::web::Web;

/// The vendor's public key as PEM.
fn public_pem(vendor: &Ed25519KeyPair) -> String {
    VendorKey::ed25519(vendor.public_key().as_ref())
        .unwrap()
        .to_pem()
}

async fn upload(
    web: &Web,
    token: &str,
    file: &[u8],
    signature: Option<&[u8]>,
) -> crate::web::Answer {
    let auth = format!("Bearer {token}");
    let sig = signature.map(|s| base64::engine::general_purpose::STANDARD.encode(s));
    let mut headers = vec![
        ("Content-Type", "application/json"),
        ("Authorization", auth.as_str()),
    ];
    if let Some(s) = &sig {
        headers.push(("Pairgate-Manifest-Signature", s.as_str()));
    }
    let mut bare = Web::new(web.addr);
    bare.request(
        "POST",
        "/api/v1/manifests",
        &headers,
        std::str::from_utf8(file).unwrap(),
    )
    .await
}

async fn manifests_onboard_through_the_api(db: Db) {
    let f = on_manual_clock(db, |_| {}).await;
    let (mut olga, olga_token) = with_token(&f, "olga", Role::Operator).await;
    let (mut boss, boss_token) = with_token(&f, "boss", Role::Admin).await;
    let (_, viewer_token) = with_token(&f, "vera", Role::Viewer).await;
    let web = Web::new(f.server.cas_addr);
    let vendor = Ed25519KeyPair::generate().unwrap();
    let pem = public_pem(&vendor);

    let add = |totp: String| serde_json::json!({ "name": "acme", "public_key": pem, "totp": totp });
    let r = web
        .api(
            "POST",
            "/vendors",
            Some(&olga_token),
            Some(add(olga.fresh().await)),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    let bad_key =
        serde_json::json!({ "name": "acme", "public_key": "nope", "totp": boss.fresh().await });
    let r = web
        .api("POST", "/vendors", Some(&boss_token), Some(bad_key))
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = web
        .api(
            "POST",
            "/vendors",
            Some(&boss_token),
            Some(add(boss.fresh().await)),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["algorithm"], "ed25519");
    let r = web.api("GET", "/vendors", Some(&viewer_token), None).await;
    assert_eq!(r.json()["vendors"][0]["name"], "acme");

    let terminal = TestTerminal::new("ATM-API");
    let pin = SpkiPin::of_certificate(&terminal.key.cert[0]).unwrap();
    let file = serde_json::to_vec(&serde_json::json!({
        "version": 1, "manifest_id": "api-1", "vendor": "acme", "issued_at": "2026-11-30T10:00:00Z",
        "terminals": [{ "serial": "ATM-API", "model": "X9", "spki_pin": pin.to_hex() }],
    }))
    .unwrap();
    let signature = vendor.sign(&file).as_ref().to_vec();

    let r = upload(&web, &viewer_token, &file, Some(&signature)).await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = upload(&web, &olga_token, &file, None).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.body.contains("Pairgate-Manifest-Signature")
            || r.body.contains("pairgate-manifest-signature"),
        "{}",
        r.body
    );
    let mut flipped = signature.clone();
    flipped[0] ^= 1;
    let r = upload(&web, &olga_token, &file, Some(&flipped)).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("does not verify"), "{}", r.body);
    assert_eq!(
        web.api("GET", "/terminals", Some(&olga_token), None)
            .await
            .json()["total"],
        0
    );

    let r = upload(&web, &olga_token, &file, Some(&signature)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["registered"], 1);
    let r = upload(&web, &olga_token, &file, Some(&signature)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["unchanged"], true);
    let r = web
        .api("GET", "/manifests", Some(&viewer_token), None)
        .await;
    assert_eq!(r.json()["manifests"][0]["id"], "api-1");

    // The terminal pairs with nobody approving, and the master serves its
    // very first call.
    let pairing = terminal.start_pairing(&f.gate(""), "ATM-API").await;
    let pinned = terminal.https(ServerTrust::Pins(vec![pairing.pin]));
    let status = json(&get(&pinned, &f.gate(&format!("/v1/pairing/{}", pairing.id))).await);
    assert_eq!(status["status"], "approved", "{status}");
    let me = get(&pinned, &f.master("/v1/me")).await;
    assert_eq!(me.status, 200, "{}", String::from_utf8_lossy(&me.body));

    // Removing the vendor key: its manifest vouches for nothing more.
    let r = web
        .api(
            "POST",
            "/vendors/acme/remove",
            Some(&boss_token),
            Some(serde_json::json!({ "totp": boss.fresh().await })),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(
        web.api("GET", "/vendors", Some(&boss_token), None)
            .await
            .json()["vendors"],
        serde_json::json!([])
    );
}

crate::on_both_databases!(manifests_onboard_through_the_api);
