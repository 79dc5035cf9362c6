//! The server certificate: a self-signed one lasts at most 398 days and
//! is reissued on the same key; a chain the operator's CA issued is served
//! as given, expiring or expired, and never replaced by a self-signed one.

use std::time::{Duration, SystemTime};

use pairgate_keystore::{Alias, KeyStoreUri};
use pairgate_pki::ca::RequestedKey;
use pairgate_pki::{CertificateAuthority, CertificateInfo, Subject};
use pairgate_server::identity::{self, CERT_DAYS, Creating, SERVER_ALIAS};

const DAY: Duration = Duration::from_secs(86_400);

fn leaf(dir: &std::path::Path) -> CertificateInfo {
    let uri: KeyStoreUri = format!("file:{}", dir.join("identity").display())
        .parse()
        .unwrap();
    let pass = pairgate_keystore::Passphrase::from_file(&dir.join("pass")).unwrap();
    let store = pairgate_keystore::open(&uri, Some(pass), false).unwrap();
    let chain = store
        .certificate_chain(&Alias::new(SERVER_ALIAS).unwrap())
        .unwrap();
    CertificateInfo::parse(&chain[0]).unwrap()
}

fn load(dir: &std::path::Path, now: SystemTime) -> identity::ServerIdentity {
    identity::load(
        &format!("file:{}", dir.join("identity").display()),
        &dir.join("pass"),
        &["localhost".to_owned()],
        now,
        Creating::Allowed,
    )
    .unwrap()
}

#[test]
fn a_self_signed_certificate_lasts_398_days_and_is_reissued_on_the_same_key() {
    let dir = pairgate_testkit::temp_dir();
    let t0 = SystemTime::now();
    let first = load(dir.path(), t0);
    assert!(!first.certificate.operator_issued);
    let (from, to) = leaf(dir.path()).validity();
    let lifetime = to.duration_since(from).unwrap();
    assert!(
        lifetime <= DAY * 398,
        "valid for {lifetime:?}, more than 398 days"
    );
    assert!(lifetime >= DAY * CERT_DAYS);
    // 370 days on: less than 30 left, a new certificate on the same key.
    let later = load(dir.path(), t0 + DAY * 370);
    assert_eq!(later.pin, first.pin);
    assert!(later.certificate.not_after > first.certificate.not_after);
}

#[test]
fn an_operator_issued_chain_is_served_as_given_even_expired() {
    let dir = pairgate_testkit::temp_dir();
    let t0 = SystemTime::now();
    let identity = load(dir.path(), t0);
    // The operator's CA issues a certificate for the identity's key.
    let uri: KeyStoreUri = format!("file:{}", dir.path().join("identity").display())
        .parse()
        .unwrap();
    let pass = pairgate_keystore::Passphrase::from_file(&dir.path().join("pass")).unwrap();
    let store = pairgate_keystore::open(&uri, Some(pass), false).unwrap();
    let alias = Alias::new(SERVER_ALIAS).unwrap();
    let spki = store.public_key(&alias).unwrap().spki_der;
    let ca = CertificateAuthority::new_root(
        rcgen::KeyPair::generate().unwrap(),
        &Subject::common_name("acquirer CA").unwrap(),
        t0,
        365,
    )
    .unwrap();
    let request =
        RequestedKey::from_spki(&spki, &Subject::common_name("pairgate.example").unwrap()).unwrap();
    let issued = ca
        .issue_server_certificate(&request, &["pairgate.example".to_owned()], &[], t0, 10)
        .unwrap();
    let pem = pairgate_pki::certificate::certificate_pem(&issued);
    pairgate_keystore::import_certificate_chain(store.as_ref(), &alias, pem.as_bytes()).unwrap();
    drop(store);
    // Five days before its end, and twenty days after it: served as given.
    for at in [t0 + DAY * 5, t0 + DAY * 30] {
        let loaded = load(dir.path(), at);
        assert!(loaded.certificate.operator_issued);
        assert_eq!(loaded.pin, identity.pin);
        let served = leaf(dir.path());
        assert_eq!(
            served.issuer,
            CertificateInfo::parse(&issued).unwrap().issuer
        );
        assert_eq!(loaded.certificate.not_after, served.validity().1);
    }
}

/// A running server renews its self-signed certificate on the same key
/// once it comes within 30 days of its end, without a restart: `/metrics`
/// shows the new end and terminals pinning the key still connect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_server_renews_its_self_signed_certificate() {
    use crate::support::{Db, Fixture, TestTerminal, eventually};
    let clock = pairgate_server::Clock::manual(SystemTime::now());
    let f = Fixture::start_with_clock(Db::Sqlite, clock.clone(), |s| s.reconcile_secs = 1).await;
    let not_after = async || {
        let r = crate::web::Web::new(f.server.metrics_addr.unwrap())
            .get("/metrics")
            .await;
        r.body
            .lines()
            .find_map(|l| {
                l.strip_prefix("pairgate_server_certificate_not_after_seconds ")?
                    .parse::<f64>()
                    .ok()
            })
            .unwrap()
    };
    let first = not_after().await;
    clock.advance(DAY * 380);
    assert!(
        eventually(Duration::from_secs(10), async || not_after().await
            > first + 300.0 * 86_400.0)
        .await,
        "the certificate was not renewed"
    );
    let t = TestTerminal::new("probe");
    let r = t
        .https(pairgate_tls::client::ServerTrust::Pins(vec![f.server.pin]))
        .request(
            "POST",
            &f.gate("/v1/pairing"),
            &[("content-type", "application/json")],
            Some(b"{}".to_vec()),
        )
        .await
        .unwrap();
    assert_eq!(r.server_pin, Some(f.server.pin));
}
