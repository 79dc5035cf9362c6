//! Resumption works inside the policy's session lifetime and falls back to
//! a full handshake after it, under TLS 1.2 and TLS 1.3. Lifetimes run on
//! a manual clock that the tests move, so nothing waits for them.

use std::time::{Duration, SystemTime};

use pairgate_clock::Clock;

use pairgate_pki::KeyAlgorithm;
use pairgate_tls::TlsPolicy;
use pairgate_tls::client::ServerTrust;
use pairgate_tls::server::ClientAuth;
use rustls::HandshakeKind;

use crate::support::{Backend, exchange, identity, serve};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumption_inside_the_lifetime_full_handshake_after() {
    for base in [TlsPolicy::tls12_only(), TlsPolicy::tls13_only()] {
        let clock = Clock::manual(SystemTime::now());
        let policy = TlsPolicy {
            session_lifetime: Duration::from_millis(1500),
            clock: clock.clone(),
            ..base
        };
        let server_id = identity(Backend::Software, KeyAlgorithm::P256, "server");
        let client_id = identity(Backend::Software, KeyAlgorithm::P256, "terminal");
        let server = server_id.server(ClientAuth::AnyProvenKey, &policy);
        let (addr, mut seen) = serve(server.clone()).await;
        let addr = addr.to_string();
        let client = client_id.client(ServerTrust::Pins(vec![server_id.pin]), &policy);
        let kind = |s: &tokio_rustls::client::TlsStream<tokio::net::TcpStream>| {
            s.get_ref().1.handshake_kind()
        };

        let mut first = client.connect(&addr, None).await.unwrap();
        // Read to the end so TLS 1.3 tickets arrive before the next connect.
        exchange(&mut first).await;
        assert_eq!(kind(&first), Some(HandshakeKind::Full), "{policy:?}");
        let mut second = client.connect(&addr, None).await.unwrap();
        exchange(&mut second).await;
        assert_eq!(kind(&second), Some(HandshakeKind::Resumed), "{policy:?}");
        // The server still knows who the resumed client is.
        seen.recv().await.unwrap().result.unwrap();
        assert_eq!(
            seen.recv().await.unwrap().result.unwrap(),
            client_id.fingerprint
        );

        clock.advance(Duration::from_millis(1700));
        let mut third = client.connect(&addr, None).await.unwrap();
        exchange(&mut third).await;
        assert_eq!(
            kind(&third),
            Some(HandshakeKind::Full),
            "resumed after the lifetime under {policy:?}"
        );
        assert!(server.cached_sessions() >= 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumed_chains_do_not_extend_the_lifetime() {
    let clock = Clock::manual(SystemTime::now());
    let policy = TlsPolicy {
        session_lifetime: Duration::from_millis(1500),
        clock: clock.clone(),
        ..TlsPolicy::tls13_only()
    };
    let server_id = identity(Backend::Software, KeyAlgorithm::P256, "server");
    let client_id = identity(Backend::Software, KeyAlgorithm::P256, "terminal");
    let server = server_id.server(ClientAuth::AnyProvenKey, &policy);
    let (addr, _seen) = serve(server).await;
    let addr = addr.to_string();
    let client = client_id.client(ServerTrust::Pins(vec![server_id.pin]), &policy);
    let mut kinds = Vec::new();
    // Resume every 400 ms: tickets issued on resumed handshakes must not
    // keep the chain alive past 1.5 s from the full handshake.
    for _ in 0..6 {
        let mut s = client.connect(&addr, None).await.unwrap();
        exchange(&mut s).await;
        kinds.push(s.get_ref().1.handshake_kind().unwrap());
        clock.advance(Duration::from_millis(400));
    }
    assert_eq!(kinds[0], HandshakeKind::Full);
    assert_eq!(kinds[1], HandshakeKind::Resumed);
    assert!(kinds[2..].contains(&HandshakeKind::Full), "{kinds:?}");
}

/// Issue 12, finding 10: the server itself bounds a chain of resumptions
/// from its full handshake, whatever the client's cache allows: tickets
/// re-issued on resumed handshakes inherit the time of the full one, so
/// a client resuming every 400 ms gets a full handshake after 1.5 s, and
/// no connection is broken on the way (resumption is refused inside the
/// handshake, which falls back to a full one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_bounds_chains_of_resumptions() {
    for base in [TlsPolicy::tls13_only(), TlsPolicy::tls12_only()] {
        let clock = Clock::manual(SystemTime::now());
        let server_policy = TlsPolicy {
            session_lifetime: Duration::from_millis(1500),
            clock: clock.clone(),
            ..base.clone()
        };
        let client_policy = TlsPolicy {
            session_lifetime: Duration::from_secs(3600),
            clock: clock.clone(),
            ..base
        };
        let server_id = identity(Backend::Software, KeyAlgorithm::P256, "server");
        let client_id = identity(Backend::Software, KeyAlgorithm::P256, "terminal");
        let server = server_id.server(ClientAuth::AnyProvenKey, &server_policy);
        let (addr, mut seen) = serve(server).await;
        let addr = addr.to_string();
        let client = client_id.client(ServerTrust::Pins(vec![server_id.pin]), &client_policy);
        let mut kinds = Vec::new();
        for _ in 0..8 {
            let mut s = client.connect(&addr, None).await.unwrap();
            let answer = exchange(&mut s).await;
            assert!(answer.starts_with("hello "), "{answer:?}");
            kinds.push(s.get_ref().1.handshake_kind().unwrap());
            seen.recv().await.unwrap().result.unwrap();
            clock.advance(Duration::from_millis(400));
        }
        assert_eq!(kinds[0], HandshakeKind::Full);
        assert_eq!(kinds[1], HandshakeKind::Resumed, "{kinds:?}");
        // 0, 0.4, 0.8, 1.2 s resume; 1.6 s is past the lifetime.
        assert_eq!(
            kinds[4],
            HandshakeKind::Full,
            "{kinds:?} under {server_policy:?}"
        );
    }
}
