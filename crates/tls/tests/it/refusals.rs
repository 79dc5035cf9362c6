//! What our server refuses: old protocol versions, CBC and RC4 suites,
//! clients without certificates where the master requires them, clients
//! the acceptor does not know, SHA-1 signed client certificates, and
//! clients that stall in the handshake.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use pairgate_pki::{KeyAlgorithm, TerminalFingerprint};
use pairgate_testkit::{openssl_output, temp_dir};
use pairgate_tls::client::{ServerTrust, TlsClient};
use pairgate_tls::server::{ClientAuth, TlsServer};
use pairgate_tls::{ClientCertAcceptor, TlsPolicy, pem_certified_key};
use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{Backend, Identity, exchange, identity, identity_from, serve};

/// The master's rule in miniature: a set of paired fingerprints.
#[derive(Debug, Default)]
struct Paired(Mutex<Vec<TerminalFingerprint>>);

impl ClientCertAcceptor for Paired {
    fn accept(
        &self,
        fingerprint: &TerminalFingerprint,
        _: &CertificateDer<'_>,
    ) -> Result<(), String> {
        if self.0.lock().unwrap().contains(fingerprint) {
            Ok(())
        } else {
            Err(format!("terminal {fingerprint} is not paired"))
        }
    }
}

fn gate_server(server_id: &Identity, auth: ClientAuth, policy: &TlsPolicy) -> TlsServer {
    server_id.server(auth, policy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_style_server_accepts_only_what_the_acceptor_accepts() {
    let server_id = identity(Backend::Software, KeyAlgorithm::P256, "master");
    let paired_id = identity(Backend::Software, KeyAlgorithm::P256, "paired");
    let stranger_id = identity(Backend::Software, KeyAlgorithm::P256, "stranger");
    let paired = Arc::new(Paired::default());
    paired.0.lock().unwrap().push(paired_id.fingerprint);
    let (addr, mut seen) = serve(gate_server(
        &server_id,
        ClientAuth::Accepting(paired),
        &TlsPolicy::default(),
    ))
    .await;
    let addr = addr.to_string();
    let trust = ServerTrust::Pins(vec![server_id.pin]);

    let ok = paired_id.client(trust.clone(), &TlsPolicy::default());
    let mut stream = ok.connect(&addr, None).await.unwrap();
    assert!(
        exchange(&mut stream)
            .await
            .contains(&paired_id.fingerprint.to_hex())
    );
    assert_eq!(
        seen.recv().await.unwrap().result.unwrap(),
        paired_id.fingerprint
    );

    // TLS 1.3 clients learn of the refusal on first read; either way no
    // data flows and the server reports why.
    let stranger = stranger_id.client(trust.clone(), &TlsPolicy::default());
    if let Ok(mut s) = stranger.connect(&addr, None).await {
        let mut buf = Vec::new();
        let _ = s.write_all(b"ping\n").await;
        assert!(s.read_to_end(&mut buf).await.is_err() || buf.is_empty());
    }
    let err = seen.recv().await.unwrap().result.unwrap_err();
    assert!(err.contains("is not paired"), "{err}");

    let anonymous = TlsClient::new(None, trust, &TlsPolicy::default()).unwrap();
    if let Ok(mut s) = anonymous.connect(&addr, None).await {
        let mut buf = Vec::new();
        let _ = s.write_all(b"ping\n").await;
        assert!(s.read_to_end(&mut buf).await.is_err() || buf.is_empty());
    }
    let err = seen.recv().await.unwrap().result.unwrap_err();
    assert!(err.to_lowercase().contains("certificate"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_client_certificates_pass_only_within_the_grace() {
    let day = Duration::from_secs(86_400);
    let server_id = identity(Backend::Software, KeyAlgorithm::P256, "master");
    let start = SystemTime::now() - 40 * day;
    // Valid for 30 days from 40 days ago: expired 10 days ago.
    let late = identity_from(Backend::Software, KeyAlgorithm::P256, "late", start, 30);
    // Expired 20 days ago.
    let later = identity_from(Backend::Software, KeyAlgorithm::P256, "later", start, 20);
    let policy = TlsPolicy::default();
    let trust = ServerTrust::Pins(vec![server_id.pin]);
    let grace = ClientAuth::AnyProvenKeyExpiredWithin(15 * day);
    let (with_grace, mut seen) = serve(gate_server(&server_id, grace, &policy)).await;
    let mut stream = late
        .client(trust.clone(), &policy)
        .connect(&with_grace.to_string(), None)
        .await
        .unwrap();
    assert!(
        exchange(&mut stream)
            .await
            .contains(&late.fingerprint.to_hex())
    );
    assert_eq!(seen.recv().await.unwrap().result.unwrap(), late.fingerprint);
    // Beyond the grace; and without one, the gate's way.
    assert_refused_as_expired(&later, &with_grace, &mut seen, &policy, &trust).await;
    let (strict, mut strict_seen) =
        serve(gate_server(&server_id, ClientAuth::AnyProvenKey, &policy)).await;
    assert_refused_as_expired(&late, &strict, &mut strict_seen, &policy, &trust).await;
}

async fn assert_refused_as_expired(
    id: &Identity,
    addr: &std::net::SocketAddr,
    seen: &mut tokio::sync::mpsc::UnboundedReceiver<crate::support::Seen>,
    policy: &TlsPolicy,
    trust: &ServerTrust,
) {
    let client = id.client(trust.clone(), policy);
    if let Ok(mut s) = client.connect(&addr.to_string(), None).await {
        let mut buf = Vec::new();
        let _ = s.write_all(b"ping\n").await;
        assert!(s.read_to_end(&mut buf).await.is_err() || buf.is_empty());
    }
    let err = seen.recv().await.unwrap().result.unwrap_err();
    assert!(err.to_lowercase().contains("expired"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sha1_signed_client_certificates_are_refused() {
    let dir = temp_dir();
    let d = dir.path();
    pairgate_testkit::openssl_self_signed(d, "c", "legacy", "sha1");
    let server_id = identity(Backend::Software, KeyAlgorithm::P256, "gate");
    let (addr, mut seen) = serve(gate_server(
        &server_id,
        ClientAuth::AnyProvenKey,
        &TlsPolicy::default(),
    ))
    .await;
    let policy = TlsPolicy::default();
    let key = pem_certified_key(
        &policy.provider(),
        &std::fs::read(d.join("c.pem")).unwrap(),
        &std::fs::read(d.join("c.key")).unwrap(),
    )
    .unwrap();
    let client =
        TlsClient::new(Some(key), ServerTrust::Pins(vec![server_id.pin]), &policy).unwrap();
    if let Ok(mut s) = client.connect(&addr.to_string(), None).await {
        let mut buf = Vec::new();
        let _ = s.write_all(b"ping\n").await;
        assert!(s.read_to_end(&mut buf).await.is_err() || buf.is_empty());
    }
    let err = seen.recv().await.unwrap().result.unwrap_err();
    assert!(err.contains("SHA-1"), "{err}");

    // The same through OpenSSL's client.
    let out = openssl_output(
        d,
        &[
            "s_client",
            "-connect",
            &addr.to_string(),
            "-cert",
            "c.pem",
            "-key",
            "c.key",
            "-brief",
            "-no_ign_eof",
        ],
    );
    let err = seen.recv().await.unwrap().result.unwrap_err();
    assert!(
        err.contains("SHA-1"),
        "{err}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A raw ClientHello: `version` in the hello, these suites, no
/// supported_versions extension (so it cannot negotiate TLS 1.3).
fn client_hello(version: [u8; 2], suites: &[u16]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&version);
    body.extend_from_slice(&[0x42; 32]);
    body.push(0);
    body.extend_from_slice(&((suites.len() * 2) as u16).to_be_bytes());
    for s in suites {
        body.extend_from_slice(&s.to_be_bytes());
    }
    body.extend_from_slice(&[1, 0]);
    let extensions: &[u8] = &[
        0x00, 0x0a, 0x00, 0x06, 0x00, 0x04, 0x00, 0x17, 0x00, 0x1d, // supported_groups
        0x00, 0x0b, 0x00, 0x02, 0x01, 0x00, // ec_point_formats
        0x00, 0x0d, 0x00, 0x08, 0x00, 0x06, 0x04, 0x03, 0x08, 0x04, 0x04,
        0x01, // signature_algorithms
    ];
    body.extend_from_slice(&(extensions.len() as u16).to_be_bytes());
    body.extend_from_slice(extensions);
    let mut handshake = vec![0x01, 0, 0, 0];
    handshake[1..4].copy_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    handshake.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}

/// Sends a hello and returns the alert description the server answers with.
async fn alert_for(addr: &str, hello: &[u8]) -> u8 {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(hello).await.unwrap();
    let mut answer = [0u8; 7];
    tokio::time::timeout(Duration::from_secs(5), tcp.read_exact(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer[0], 0x15, "expected an alert record, got {answer:?}");
    assert_eq!(answer[5], 2, "expected a fatal alert");
    answer[6]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_versions_cbc_and_rc4_are_refused() {
    let server_id = identity(Backend::Software, KeyAlgorithm::P256, "gate");
    let (addr, _) = serve(gate_server(
        &server_id,
        ClientAuth::AnyProvenKey,
        &TlsPolicy::default(),
    ))
    .await;
    let addr = addr.to_string();
    const PROTOCOL_VERSION: u8 = 70;
    const HANDSHAKE_FAILURE: u8 = 40;
    let gcm = [0xc02b, 0xc02f];
    for (name, version) in [("SSLv3", [3, 0]), ("TLS 1.0", [3, 1]), ("TLS 1.1", [3, 2])] {
        assert_eq!(
            alert_for(&addr, &client_hello(version, &gcm)).await,
            PROTOCOL_VERSION,
            "{name}"
        );
    }
    let cbc = [
        0xc009, 0xc013, 0xc00a, 0xc014, 0x002f, 0x0035, 0x003c, 0x000a,
    ];
    assert_eq!(
        alert_for(&addr, &client_hello([3, 3], &cbc)).await,
        HANDSHAKE_FAILURE,
        "CBC"
    );
    let rc4 = [0x0005, 0x0004, 0xc007, 0xc011];
    assert_eq!(
        alert_for(&addr, &client_hello([3, 3], &rc4)).await,
        HANDSHAKE_FAILURE,
        "RC4"
    );
    // The same hello with a GCM suite is accepted, so the refusals above
    // are about the versions and suites, not the hello itself.
    let mut tcp = TcpStream::connect(&addr).await.unwrap();
    tcp.write_all(&client_hello([3, 3], &gcm)).await.unwrap();
    let mut first = [0u8; 1];
    tcp.read_exact(&mut first).await.unwrap();
    assert_eq!(first[0], 0x16, "expected a ServerHello");

    // And OpenSSL's own client, allowed to try the old protocols.
    let dir = temp_dir();
    for flag in ["-tls1", "-tls1_1"] {
        let out = openssl_output(
            dir.path(),
            &[
                "s_client",
                "-connect",
                &addr,
                flag,
                "-cipher",
                "DEFAULT@SECLEVEL=0",
                "-brief",
            ],
        );
        assert!(!out.status.success(), "openssl {flag} connected");
    }
    let out = openssl_output(
        dir.path(),
        &[
            "s_client",
            "-connect",
            &addr,
            "-tls1_2",
            "-cipher",
            "AES128-SHA:ECDHE-ECDSA-AES128-SHA",
            "-brief",
        ],
    );
    assert!(!out.status.success(), "a CBC suite was accepted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_handshakes_are_dropped() {
    let server_id = identity(Backend::Software, KeyAlgorithm::P256, "gate");
    let policy = TlsPolicy {
        handshake_timeout: Duration::from_millis(300),
        ..TlsPolicy::default()
    };
    let (addr, mut seen) = serve(gate_server(&server_id, ClientAuth::AnyProvenKey, &policy)).await;
    let start = Instant::now();
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(&[0x16, 0x03, 0x01]).await.unwrap(); // a few bytes, then silence
    let err = seen.recv().await.unwrap().result.unwrap_err();
    assert!(err.contains("timed out"), "{err}");
    assert!(start.elapsed() < Duration::from_secs(3));
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(2), tcp.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "connection not closed");
}
