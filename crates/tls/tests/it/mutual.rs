//! Mutual TLS between our client and our server, with keys in software and
//! in SoftHSM2, P-256 and RSA, under each version policy; server trust by
//! pin, by trust store, or both.

use std::sync::Arc;
use std::time::SystemTime;

use pairgate_pki::ca::{CertificateAuthority, RequestedKey};
use pairgate_pki::{KeyAlgorithm, SpkiPin, Subject};
use pairgate_tls::TlsPolicy;
use pairgate_tls::client::{ServerTrust, TlsClient};
use pairgate_tls::server::ClientAuth;
use rustls::ProtocolVersion;

use crate::support::{Backend, exchange, identity, serve};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_for_every_backend_algorithm_and_version() {
    for backend in [Backend::Software, Backend::SoftHsm] {
        for algorithm in [KeyAlgorithm::P256, KeyAlgorithm::Rsa2048] {
            let server_id = identity(backend, algorithm, "server");
            let client_id = identity(backend, algorithm, "terminal");
            for (policy, expected) in [
                (TlsPolicy::default(), ProtocolVersion::TLSv1_3),
                (TlsPolicy::tls12_only(), ProtocolVersion::TLSv1_2),
                (TlsPolicy::tls13_only(), ProtocolVersion::TLSv1_3),
            ] {
                let server = server_id.server(ClientAuth::AnyProvenKey, &policy);
                let (addr, mut seen) = serve(server).await;
                let client = client_id.client(ServerTrust::Pins(vec![server_id.pin]), &policy);
                let mut stream = client.connect(&addr.to_string(), None).await.unwrap();
                assert_eq!(
                    stream.get_ref().1.protocol_version(),
                    Some(expected),
                    "{backend:?} {algorithm} {policy:?}"
                );
                let reply = exchange(&mut stream).await;
                assert_eq!(reply, format!("hello {}\n", client_id.fingerprint));
                let server_saw = seen.recv().await.unwrap().result.unwrap();
                assert_eq!(server_saw, client_id.fingerprint);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls12_only_client_cannot_reach_a_tls13_only_server() {
    let server_id = identity(Backend::Software, KeyAlgorithm::P256, "server");
    let client_id = identity(Backend::Software, KeyAlgorithm::P256, "terminal");
    let server = server_id.server(ClientAuth::AnyProvenKey, &TlsPolicy::tls13_only());
    let (addr, _) = serve(server).await;
    let client = client_id.client(
        ServerTrust::Pins(vec![server_id.pin]),
        &TlsPolicy::tls12_only(),
    );
    let err = client.connect(&addr.to_string(), None).await.unwrap_err();
    assert!(format!("{err:#}").contains("handshake"), "{err:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pin_mismatch_names_both_fingerprints() {
    let server_id = identity(Backend::Software, KeyAlgorithm::P256, "server");
    let client_id = identity(Backend::Software, KeyAlgorithm::P256, "terminal");
    let server = server_id.server(ClientAuth::AnyProvenKey, &TlsPolicy::default());
    let (addr, _) = serve(server).await;
    let wrong = SpkiPin::from_bytes([0x5a; 32]);
    let client = client_id.client(ServerTrust::Pins(vec![wrong]), &TlsPolicy::default());
    let err = format!(
        "{:#}",
        client.connect(&addr.to_string(), None).await.unwrap_err()
    );
    assert!(err.contains(&wrong.to_hex()), "{err}");
    assert!(err.contains(&server_id.pin.to_hex()), "{err}");
    assert!(err.contains("pin mismatch"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_store_mode_checks_chain_and_name() {
    let now = SystemTime::now();
    let ca = CertificateAuthority::new_root(
        rcgen::KeyPair::generate().unwrap(),
        &Subject::common_name("Acquirer").unwrap(),
        now,
        30,
    )
    .unwrap();
    let other_ca = CertificateAuthority::new_root(
        rcgen::KeyPair::generate().unwrap(),
        &Subject::common_name("Other").unwrap(),
        now,
        30,
    )
    .unwrap();
    let server_id = identity(Backend::Software, KeyAlgorithm::P256, "server");
    let csr = pairgate_keystore::certificate_request(
        server_id.store.as_ref(),
        &server_id.alias,
        &Subject::common_name("localhost").unwrap(),
    )
    .unwrap();
    let cert = ca
        .issue_server_certificate(
            &RequestedKey::from_csr(&csr).unwrap(),
            &["localhost".into()],
            &[],
            now,
            30,
        )
        .unwrap();
    server_id
        .store
        .set_certificate_chain(&server_id.alias, &[cert, ca.certificate().clone()])
        .unwrap();
    let server = server_id.server(ClientAuth::AnyProvenKey, &TlsPolicy::default());
    let (addr, _) = serve(server).await;
    let client_id = identity(Backend::Software, KeyAlgorithm::P256, "terminal");
    let connect = |trust: ServerTrust, name: &'static str| {
        let client = client_id.client(trust, &TlsPolicy::default());
        let addr = addr.to_string();
        async move { client.connect(&addr, Some(name)).await }
    };
    let trusted = ServerTrust::TrustStore(vec![ca.certificate().clone()]);
    let mut ok = connect(trusted.clone(), "localhost").await.unwrap();
    assert!(exchange(&mut ok).await.starts_with("hello "));
    assert!(
        connect(trusted, "gate.example").await.is_err(),
        "wrong name accepted"
    );
    let err = connect(
        ServerTrust::TrustStore(vec![other_ca.certificate().clone()]),
        "localhost",
    )
    .await
    .unwrap_err();
    let text = err.to_string();
    let presented =
        pairgate_keystore::terminal_fingerprint(server_id.store.as_ref(), &server_id.alias)
            .unwrap();
    let expected = pairgate_pki::CertificateFingerprint::of_certificate(other_ca.certificate());
    assert!(
        matches!(err, pairgate_tls::TlsError::UntrustedServer(_)),
        "{text}"
    );
    assert!(text.contains(&presented.to_hex()), "{text}");
    assert!(text.contains(&expected.to_hex()), "{text}");
    let both = ServerTrust::Both {
        trust_store: vec![ca.certificate().clone()],
        pins: vec![server_id.pin],
    };
    connect(both, "localhost").await.unwrap();
    let both_wrong_pin = ServerTrust::Both {
        trust_store: vec![ca.certificate().clone()],
        pins: vec![SpkiPin::from_bytes([1; 32])],
    };
    assert!(connect(both_wrong_pin, "localhost").await.is_err());
    assert!(matches!(
        TlsClient::new(None, ServerTrust::Pins(vec![]), &TlsPolicy::default()),
        Err(pairgate_tls::TlsError::EmptyTrust)
    ));
    let _ = Arc::clone(&client_id.store);
}
