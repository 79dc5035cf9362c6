//! Terminal re-key over the master: the new key is recorded only with a
//! fresh challenge and the new key's proof; the old key is refused once
//! the new one is used, or after the overlap; a replayed request, a
//! request without a valid proof, and a key any terminal held are refused
//! and change nothing; the store keeps the lineage and the audit says so.

use std::time::{Duration, SystemTime};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
use base64::Engine;
use pairgate_pki::{RekeyStatement, TerminalFingerprint};
use pairgate_server::Clock;
use pairgate_store::Serial;
use pairgate_tls::client::ServerTrust;
use pairgate_tls::https::{HttpsClient, HttpsResponse};

use crate::master::paired_as;
use crate::support::{Db, Fixture, TestTerminal, assert_error, get, json, post};

/// A new key for a re-key: the terminal it makes and the key to sign with.
struct NewKey {
    terminal: TestTerminal,
    signer: EcdsaKeyPair,
}

impl NewKey {
    fn make(cn: &str) -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        let signer =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref()).unwrap();
        let key = rcgen::KeyPair::try_from(pkcs8.as_ref()).unwrap();
        Self {
            terminal: TestTerminal::with_key(cn, &key, |_| {}),
            signer,
        }
    }

    /// The proof over `serial`, `old`, this key and `challenge` (hex).
    fn proof(&self, serial: &str, old: &TerminalFingerprint, challenge: &str) -> String {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(challenge, &mut bytes).unwrap();
        let statement = RekeyStatement {
            serial,
            old,
            new: &self.terminal.fingerprint,
            challenge: &bytes,
        };
        let signature = self
            .signer
            .sign(&SystemRandom::new(), &statement.message())
            .unwrap();
        base64::engine::general_purpose::STANDARD.encode(signature.as_ref())
    }

    /// A terminal whose certificate an acquirer's CA issued, valid from a
    /// month before `now` until `not_after`.
    fn ca_issued(cn: &str, now: SystemTime, not_after: SystemTime) -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        let signer =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref()).unwrap();
        let key = rcgen::KeyPair::try_from(pkcs8.as_ref()).unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "Acquirer Terminal CA");
        let issuer = rcgen::Issuer::new(ca, rcgen::KeyPair::generate().unwrap());
        let mut leaf = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        leaf.distinguished_name.push(rcgen::DnType::CommonName, cn);
        leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        leaf.not_before = (now - Duration::from_secs(30 * 86_400)).into();
        leaf.not_after = not_after.into();
        let cert = leaf.signed_by(&key, &issuer).unwrap();
        let provider = pairgate_tls::TlsPolicy::default().provider();
        let certified = pairgate_tls::pem_certified_key(
            &provider,
            cert.pem().as_bytes(),
            key.serialize_pem().as_bytes(),
        )
        .unwrap();
        Self {
            terminal: TestTerminal {
                fingerprint: TerminalFingerprint::of_certificate(cert.der()),
                key: certified,
            },
            signer,
        }
    }

    fn pem(&self) -> String {
        pairgate_pki::certificate::certificate_pem(&self.terminal.certificate())
    }
}

async fn challenge(f: &Fixture, client: &HttpsClient) -> String {
    let r = post(
        client,
        &f.master("/v1/rekey/challenge"),
        &serde_json::json!({}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    json(&r)["challenge"].as_str().unwrap().to_owned()
}

async fn send(f: &Fixture, client: &HttpsClient, body: &serde_json::Value) -> HttpsResponse {
    post(client, &f.master("/v1/rekey"), body).await
}

fn body(challenge: &str, pem: &str, proof: &str) -> serde_json::Value {
    serde_json::json!({ "challenge": challenge, "certificate": pem, "proof": proof })
}

async fn actions(f: &Fixture) -> Vec<(String, serde_json::Value)> {
    f.store
        .audit_records(200)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.action, serde_json::from_str(&r.detail).unwrap()))
        .collect()
}

async fn old_refused_once_the_new_key_is_used(db: Db) {
    let f = Fixture::start(db, |_| {}).await;
    let trust = || ServerTrust::Pins(vec![f.server.pin]);
    let old = NewKey::make("ATM-R1");
    paired_as(&f, "ATM-R1", &old.terminal).await;
    let (old_key, old) = (&old, &old.terminal);
    let old_client = old.https(trust());
    let new = NewKey::make("ATM-R1 k2");
    let c = challenge(&f, &old_client).await;
    let request = body(&c, &new.pem(), &new.proof("ATM-R1", &old.fingerprint, &c));
    let r = send(&f, &old_client, &request).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let answer = json(&r);
    assert_eq!(answer["fingerprint"], new.terminal.fingerprint.to_hex());
    assert_eq!(answer["previous_fingerprint"], old.fingerprint.to_hex());

    // The same request again: its challenge is used up.
    assert_error(
        &send(&f, &old_client, &request).await,
        403,
        "PG-BAD-CHALLENGE",
    );
    // Until the new key is used, the old one is still served.
    assert_eq!(get(&old_client, &f.master("/v1/me")).await.status, 200);

    let new_client = new.terminal.https(trust());
    let r = get(&new_client, &f.master("/v1/me")).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(json(&r)["fingerprint"], new.terminal.fingerprint.to_hex());
    assert_error(
        &get(&old_client, &f.master("/v1/me")).await,
        403,
        "PG-NOT-PAIRED",
    );
    let hb = post(
        &new_client,
        &f.master("/v1/heartbeat"),
        &serde_json::json!({}),
    )
    .await;
    assert_eq!(hb.status, 200, "{}", String::from_utf8_lossy(&hb.body));

    let serial = Serial::new("ATM-R1").unwrap();
    let terminal = f.store.terminal(&serial).await.unwrap().unwrap();
    assert_eq!(terminal.paired_fingerprint, Some(new.terminal.fingerprint));
    assert_eq!(terminal.successor_fingerprint, None);
    let lineage = f.store.key_lineage(&serial).await.unwrap();
    assert_eq!(lineage.len(), 2, "{lineage:?}");
    assert_eq!(lineage[0].fingerprint, old.fingerprint);
    assert_eq!(lineage[0].predecessor, None);
    assert!(lineage[0].retired_at.is_some());
    assert_eq!(lineage[1].fingerprint, new.terminal.fingerprint);
    assert_eq!(lineage[1].predecessor, Some(old.fingerprint));
    assert!(lineage[1].activated_at.is_some() && lineage[1].retired_at.is_none());
    // The API shows the lineage.
    let (_, token) = f
        .store
        .create_api_token_for(
            "op-atm-r1",
            "lineage",
            &pairgate_store::AdminAction::local("admin"),
            SystemTime::now(),
        )
        .await
        .unwrap();
    let web = crate::web::Web::new(f.server.cas_addr);
    let keys = web
        .api("GET", "/terminals/ATM-R1/keys", Some(&token), None)
        .await
        .json();
    assert_eq!(keys["keys"][0]["fingerprint"], old.fingerprint.to_hex());
    assert_eq!(keys["keys"][0]["predecessor"], serde_json::Value::Null);
    assert_eq!(keys["keys"][1]["predecessor"], old.fingerprint.to_hex());
    assert_eq!(
        keys["keys"][1]["fingerprint"],
        new.terminal.fingerprint.to_hex()
    );
    let r = web
        .api("GET", "/terminals/NOPE/keys", Some(&token), None)
        .await;
    assert_eq!(r.status, 404);
    let audit = actions(&f).await;
    let rekey = audit.iter().find(|(a, _)| a == "terminal.rekey").unwrap();
    assert_eq!(rekey.1["previous_fingerprint"], old.fingerprint.to_hex());
    assert_eq!(rekey.1["fingerprint"], new.terminal.fingerprint.to_hex());
    let switched = audit
        .iter()
        .find(|(a, _)| a == "terminal.rekey.activate")
        .unwrap();
    assert_eq!(switched.1["fingerprint"], new.terminal.fingerprint.to_hex());

    // The first key can never come back, nor can the new key succeed
    // itself, even with valid proofs.
    for back in [old_key, &new] {
        let c = challenge(&f, &new_client).await;
        let proof = back.proof("ATM-R1", &new.terminal.fingerprint, &c);
        let r = send(&f, &new_client, &body(&c, &back.pem(), &proof)).await;
        assert_error(&r, 409, "PG-CONFLICT");
    }
    let t = f.store.terminal(&serial).await.unwrap().unwrap();
    assert!(t.successor_fingerprint.is_none());
    assert_eq!(f.store.key_lineage(&serial).await.unwrap().len(), 2);
}

async fn requests_without_proof_are_refused_and_change_nothing(db: Db) {
    let f = Fixture::start(db, |_| {}).await;
    let trust = || ServerTrust::Pins(vec![f.server.pin]);
    let old = crate::master::paired(&f, "ATM-R2").await;
    let other = NewKey::make("ATM-R3");
    paired_as(&f, "ATM-R3", &other.terminal).await;
    let client = old.https(trust());
    let new = NewKey::make("ATM-R2 k2");
    let stranger = NewKey::make("stranger");
    let c = challenge(&f, &client).await;
    let before = actions(&f).await.len();
    // Signed by another key than the certificate's.
    let wrong_signer = stranger.proof("ATM-R2", &old.fingerprint, &c);
    let r = send(&f, &client, &body(&c, &new.pem(), &wrong_signer)).await;
    assert_error(&r, 403, "PG-BAD-PROOF");
    // Signed for another serial, or another challenge.
    let moved = new.proof("ATM-R3", &old.fingerprint, &c);
    assert_error(
        &send(&f, &client, &body(&c, &new.pem(), &moved)).await,
        403,
        "PG-BAD-PROOF",
    );
    let elsewhere = new.proof("ATM-R2", &old.fingerprint, &"ab".repeat(32));
    let r = send(&f, &client, &body(&c, &new.pem(), &elsewhere)).await;
    assert_error(&r, 403, "PG-BAD-PROOF");
    // No proof at all, or not base64.
    let r = post(
        &client,
        &f.master("/v1/rekey"),
        &serde_json::json!({ "challenge": c, "certificate": new.pem() }),
    )
    .await;
    assert_error(&r, 400, "PG-BAD-JSON");
    let r = post(
        &client,
        &f.master("/v1/rekey"),
        &serde_json::json!({ "challenge": c, "certificate": new.pem(), "proof": "", "extra": 1 }),
    )
    .await;
    assert_error(&r, 400, "PG-BAD-JSON");
    assert_error(
        &send(&f, &client, &body(&c, &new.pem(), "")).await,
        403,
        "PG-BAD-PROOF",
    );
    assert_error(
        &send(&f, &client, &body(&c, &new.pem(), "%%")).await,
        400,
        "PG-BAD-PROOF",
    );
    // A CSR to a server without a terminal CA; neither or both forms.
    let csr = serde_json::json!({ "challenge": c, "csr": "x", "proof": "AAAA" });
    let r = post(&client, &f.master("/v1/rekey"), &csr).await;
    assert_error(&r, 400, "PG-INVALID");
    assert!(
        json(&r)["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no terminal CA")
    );
    let neither = serde_json::json!({ "challenge": c, "proof": "AAAA" });
    assert_error(
        &post(&client, &f.master("/v1/rekey"), &neither).await,
        400,
        "PG-INVALID",
    );
    let both = serde_json::json!({ "challenge": c, "certificate": new.pem(), "csr": "x", "proof": "AAAA" });
    assert_error(
        &post(&client, &f.master("/v1/rekey"), &both).await,
        400,
        "PG-INVALID",
    );
    // A challenge the server never gave.
    let made_up = "cd".repeat(32);
    let proof = new.proof("ATM-R2", &old.fingerprint, &made_up);
    let r = send(&f, &client, &body(&made_up, &new.pem(), &proof)).await;
    assert_error(&r, 403, "PG-BAD-CHALLENGE");
    // Another terminal's key, with a valid proof from its holder.
    let c = challenge(&f, &client).await;
    let proof = other.proof("ATM-R2", &old.fingerprint, &c);
    let r = send(&f, &client, &body(&c, &other.pem(), &proof)).await;
    assert_error(&r, 409, "PG-CONFLICT");
    let serial = Serial::new("ATM-R2").unwrap();
    let t = f.store.terminal(&serial).await.unwrap().unwrap();
    assert_eq!(t.paired_fingerprint, Some(old.fingerprint));
    assert_eq!(t.successor_fingerprint, None);
    assert!(f.store.key_lineage(&serial).await.unwrap().is_empty());
    assert_eq!(
        actions(&f).await.len(),
        before,
        "a refusal wrote to the audit"
    );
    assert_eq!(get(&client, &f.master("/v1/me")).await.status, 200);
    // A challenge is the terminal's it was given to: another terminal
    // cannot use it.
    let c = challenge(&f, &client).await;
    let other_client = other.terminal.https(trust());
    let proof = new.proof("ATM-R3", &other.terminal.fingerprint, &c);
    let r = send(&f, &other_client, &body(&c, &new.pem(), &proof)).await;
    assert_error(&r, 403, "PG-BAD-CHALLENGE");
}

async fn old_key_refused_after_the_overlap_and_unpair_ends_both(db: Db) {
    let clock = Clock::manual(SystemTime::now());
    let f = Fixture::start_with_clock(db, clock.clone(), |s| s.rekey_overlap_secs = 60).await;
    let trust = || ServerTrust::Pins(vec![f.server.pin]);
    let old = crate::master::paired(&f, "ATM-R4").await;
    let client = old.https(trust());
    let new = NewKey::make("ATM-R4 k2");
    let c = challenge(&f, &client).await;
    let r = send(
        &f,
        &client,
        &body(&c, &new.pem(), &new.proof("ATM-R4", &old.fingerprint, &c)),
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(get(&client, &f.master("/v1/me")).await.status, 200);
    clock.advance(Duration::from_secs(61));
    assert_error(
        &get(&client, &f.master("/v1/me")).await,
        403,
        "PG-KEY-REPLACED",
    );

    // Unpaired before the new key was used: neither key is served.
    f.unpair("ATM-R4").await;
    // (A request racing the unpair may see its connection closed.)
    let new_client = new.terminal.https(trust());
    let url = f.master("/v1/me");
    assert!(
        crate::support::eventually(Duration::from_secs(3), async || {
            let r = new_client.request("GET", &url, &[], None).await;
            r.is_ok_and(|r| r.status == 403)
        })
        .await
    );
    let serial = Serial::new("ATM-R4").unwrap();
    let t = f.store.terminal(&serial).await.unwrap().unwrap();
    assert_eq!(t.successor_fingerprint, None);
    let lineage = f.store.key_lineage(&serial).await.unwrap();
    assert!(
        lineage.iter().all(|k| k.retired_at.is_some()),
        "{lineage:?}"
    );
}

async fn expired_certificates_may_only_rekey_within_the_grace(db: Db) {
    let start = SystemTime::now();
    let clock = Clock::manual(start);
    let f = Fixture::start_with_clock(db, clock.clone(), |_| {}).await;
    let trust = || ServerTrust::Pins(vec![f.server.pin]);
    let expires = start + Duration::from_secs(86_400);
    let late = NewKey::ca_issued("ATM-E1", start, expires);
    paired_as(&f, "ATM-E1", &late.terminal).await;
    let lost = NewKey::ca_issued("ATM-E2", start, expires);
    paired_as(&f, "ATM-E2", &lost.terminal).await;

    // Ten days after expiry: nothing but the re-key is served.
    clock.advance(Duration::from_secs(11 * 86_400));
    let client = late.terminal.https(trust());
    let r = get(&client, &f.master("/v1/me")).await;
    assert_error(&r, 403, "PG-CERT-EXPIRED");
    assert!(
        json(&r)["error"]["message"]
            .as_str()
            .unwrap()
            .contains("may only re-key")
    );
    let r = post(&client, &f.master("/v1/heartbeat"), &serde_json::json!({})).await;
    assert_error(&r, 403, "PG-CERT-EXPIRED");
    let new = NewKey::make("ATM-E1 k2");
    let c = challenge(&f, &client).await;
    let proof = new.proof("ATM-E1", &late.terminal.fingerprint, &c);
    let r = send(&f, &client, &body(&c, &new.pem(), &proof)).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let r = get(&new.terminal.https(trust()), &f.master("/v1/me")).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let audit = actions(&f).await;
    let rekey = audit.iter().find(|(a, _)| a == "terminal.rekey").unwrap();
    assert_eq!(rekey.1["previous_certificate_expired"], true);
    // The older key of the lineage, still within the grace: refused.
    let r = post(
        &client,
        &f.master("/v1/rekey/challenge"),
        &serde_json::json!({}),
    )
    .await;
    assert_error(&r, 403, "PG-NOT-PAIRED");

    // A hundred days after expiry, beyond the 90-day grace: the handshake
    // or the request is refused; the terminal pairs again.
    clock.advance(Duration::from_secs(90 * 86_400));
    let lost_client = lost.terminal.https(trust());
    let url = f.master("/v1/rekey/challenge");
    match lost_client.request("POST", &url, &[], None).await {
        Err(_) => {}
        Ok(r) => assert_error(&r, 403, "PG-CERT-EXPIRED"),
    }
    let serial = Serial::new("ATM-E2").unwrap();
    assert!(f.store.key_lineage(&serial).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_certificates_may_only_rekey_sqlite() {
    expired_certificates_may_only_rekey_within_the_grace(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_certificates_may_only_rekey_postgres() {
    expired_certificates_may_only_rekey_within_the_grace(Db::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_refused_once_the_new_key_is_used_sqlite() {
    old_refused_once_the_new_key_is_used(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_refused_once_the_new_key_is_used_postgres() {
    old_refused_once_the_new_key_is_used(Db::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_proof_are_refused_sqlite() {
    requests_without_proof_are_refused_and_change_nothing(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_proof_are_refused_postgres() {
    requests_without_proof_are_refused_and_change_nothing(Db::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_key_refused_after_the_overlap_sqlite() {
    old_key_refused_after_the_overlap_and_unpair_ends_both(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_key_refused_after_the_overlap_postgres() {
    old_key_refused_after_the_overlap_and_unpair_ends_both(Db::Postgres).await;
}
