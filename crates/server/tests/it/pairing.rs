//! The pairing protocol end to end: a terminal pairs through the gate and
//! is accepted by the master; a relay in the middle makes the codes
//! differ; the paired state survives a restart.

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use pairgate_server::{Server, TerminalConfig};
use pairgate_store::{PairingState, StoreError};
use pairgate_tls::TlsPolicy;
use pairgate_tls::client::ServerTrust;
use pairgate_tls::server::{ClientAuth, TlsServer};

use crate::support::{Db, Fixture, Operator, TestTerminal, get, json, post};

async fn full_pairing(db: Db) {
    let f = Fixture::start(db, |_| {}).await;
    f.register("ATM-1").await;
    let mut olga = Operator::create(&f.store, "olga").await;
    let terminal = TestTerminal::new("ATM-1");
    let p = terminal.start_pairing(&f.gate(""), "ATM-1").await;
    // The terminal saw the server's real key.
    assert_eq!(p.pin, f.server.pin);
    // The server derives the same code from its own session.
    let req = f.store.pairing_request(&p.id).await.unwrap().unwrap();
    assert_eq!(req.state, PairingState::Pending);
    assert_eq!(req.fingerprint, terminal.fingerprint);
    assert_eq!(req.code(), Some(p.code));
    let pinned = terminal.https(ServerTrust::Pins(vec![p.pin]));
    // Before approval the status is pending and carries no configuration.
    let r = get(&pinned, &f.gate(&format!("/v1/pairing/{}", p.id))).await;
    assert_eq!(json(&r)["status"], "pending");
    assert!(json(&r).get("config").is_none());
    // A long poll returns as soon as the operator approves.
    let poll = {
        let pinned = pinned.clone();
        let url = f.gate(&format!("/v1/pairing/{}?wait=20", p.id));
        tokio::spawn(async move { get(&pinned, &url).await })
    };
    // Lets the long poll reach the gate (a real concurrent request)
    // before the approval it must wake on.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let approved = olga.approve(&f.store, &p.id, p.code).await.unwrap();
    assert_eq!(approved.paired_fingerprint, Some(terminal.fingerprint));
    let r = tokio::time::timeout(Duration::from_secs(5), poll)
        .await
        .expect("the long poll did not return after approval")
        .unwrap();
    let body = json(&r);
    assert_eq!(body["status"], "approved", "{body}");
    let config: TerminalConfig = serde_json::from_value(body["config"].clone()).unwrap();
    assert_eq!(config.server_pins, vec![f.server.pin]);
    assert_eq!(
        config.master_url,
        format!("https://localhost:{}", f.server.master_addr.port())
    );
    // The master accepts it, pinned to the same key.
    let master = terminal.https(ServerTrust::Pins(config.server_pins.clone()));
    assert!(
        crate::support::eventually(Duration::from_secs(2), async || {
            get(&master, &f.master("/v1/me")).await.status == 200
        })
        .await
    );
    let me = json(&get(&master, &f.master("/v1/me")).await);
    assert_eq!(me["serial"], "ATM-1");
    assert_eq!(me["fingerprint"], terminal.fingerprint.to_hex());
    let r = post(
        &master,
        &f.master("/v1/heartbeat"),
        &serde_json::json!({ "firmware": "1.1" }),
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let t = f
        .store
        .paired_terminal(&terminal.fingerprint)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(t.firmware.as_deref(), Some("1.1"));
    assert!(t.last_seen_at.is_some());
    // Asking the gate again gets the configuration at once.
    let again = post(
        &pinned,
        &f.gate("/v1/pairing"),
        &serde_json::json!({
            "serial": "ATM-1",
            "commitment": pairgate_pki::Nonce::random().commitment().to_hex(),
        }),
    )
    .await;
    assert_eq!(again.status, 200);
    assert_eq!(json(&again)["status"], "paired");
    assert_eq!(
        json(&again)["config"]["server_pins"][0],
        f.server.pin.to_hex()
    );
    assert!(f.store.verify_audit().await.unwrap().intact());
    f.server.shutdown().await;
}

/// A relay that terminates TLS on both sides with its own keys and passes
/// the HTTP requests on.
async fn start_relay(gate: String) -> std::net::SocketAddr {
    let relay_client = TestTerminal::new("relay").https(ServerTrust::FirstContact);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let policy = TlsPolicy::default();
    let identity = pairgate_tls::pem_certified_key(
        &policy.provider(),
        cert.pem().as_bytes(),
        key.serialize_pem().as_bytes(),
    )
    .unwrap();
    let tls = TlsServer::new(identity, ClientAuth::AnyProvenKey, &policy).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let tls = tls.clone();
            let client = relay_client.clone();
            let gate = gate.clone();
            tokio::spawn(async move {
                let Ok((stream, _)) = tls.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let client = client.clone();
                        let url = format!("{gate}{}", req.uri());
                        async move {
                            let method = req.method().to_string();
                            let body = req.into_body().collect().await?.to_bytes().to_vec();
                            let r = client
                                .request(
                                    &method,
                                    &url,
                                    &[("content-type", "application/json")],
                                    Some(body),
                                )
                                .await
                                .unwrap();
                            let mut response = hyper::Response::new(Full::new(Bytes::from(r.body)));
                            *response.status_mut() = hyper::StatusCode::from_u16(r.status).unwrap();
                            Ok::<_, hyper::Error>(response)
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

async fn relay_in_the_middle_makes_codes_differ(db: Db) {
    let f = Fixture::start(db, |_| {}).await;
    f.register("ATM-1").await;
    let mut olga = Operator::create(&f.store, "olga").await;
    let relay = start_relay(f.gate("")).await;
    let terminal = TestTerminal::new("ATM-1");
    // The terminal believes the relay is the server.
    let p = terminal
        .start_pairing(&format!("https://{relay}"), "ATM-1")
        .await;
    assert_ne!(p.pin, f.server.pin);
    let req = f.store.pairing_request(&p.id).await.unwrap().unwrap();
    // The gate saw the relay's certificate, not the terminal's.
    assert_ne!(req.fingerprint, terminal.fingerprint);
    let server_code = req.code().unwrap();
    assert_ne!(server_code, p.code, "a relay must change the code");
    // The operator types what the contact reads from the terminal: refused.
    let r = olga.approve(&f.store, &p.id, p.code).await;
    assert!(
        matches!(r, Err(StoreError::WrongCode { remaining: 2, .. })),
        "{r:?}"
    );
    assert!(f.store.paired_fingerprints().await.unwrap().is_empty());
    f.server.shutdown().await;
}

async fn paired_state_survives_a_restart(db: Db) {
    let f = Fixture::start(db, |_| {}).await;
    f.register("ATM-1").await;
    let mut olga = Operator::create(&f.store, "olga").await;
    let terminal = TestTerminal::new("ATM-1");
    let p = terminal.start_pairing(&f.gate(""), "ATM-1").await;
    olga.approve(&f.store, &p.id, p.code).await.unwrap();
    let Fixture {
        server,
        settings,
        dir,
        ..
    } = f;
    let pin = server.pin;
    server.shutdown().await;
    let mut settings = settings;
    settings.gate_listen = "127.0.0.1:0".into();
    settings.master_listen = "127.0.0.1:0".into();
    settings.metrics_listen = "127.0.0.1:0".into();
    let server = Server::start(&settings).await.unwrap();
    // Same key, same pin: the terminal's pin still holds.
    assert_eq!(server.pin, pin);
    assert_eq!(server.paired.len(), 1);
    let master = terminal.https(ServerTrust::Pins(vec![pin]));
    let r = get(&master, &format!("https://{}/v1/me", server.master_addr)).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(json(&r)["serial"], "ATM-1");
    server.shutdown().await;
    drop(dir);
}

/// Long polls are woken by the store when their request is decided, not
/// by reading it on a timer: with the periodic checks a minute apart, an
/// approval and a rejection each answer their waiting terminals at once,
/// and a waiter whose request is not decided keeps waiting.
async fn long_polls_are_woken_by_decisions(db: Db) {
    let f = Fixture::start(db, |s| {
        s.paired_poll_ms = 60_000;
        s.reconcile_secs = 60;
    })
    .await;
    let mut olga = Operator::create(&f.store, "olga").await;
    let mut polls = Vec::new();
    for serial in ["ATM-A", "ATM-R", "ATM-W"] {
        f.register(serial).await;
        let terminal = TestTerminal::new(serial);
        let p = terminal.start_pairing(&f.gate(""), serial).await;
        let pinned = terminal.https(ServerTrust::Pins(vec![p.pin]));
        let url = f.gate(&format!("/v1/pairing/{}?wait=30", p.id));
        // Two calls wait on the approved request.
        let calls = if serial == "ATM-A" { 2 } else { 1 };
        for _ in 0..calls {
            let (pinned, url) = (pinned.clone(), url.clone());
            polls.push((
                serial,
                tokio::spawn(async move { get(&pinned, &url).await }),
            ));
        }
        if serial == "ATM-A" {
            tokio::time::sleep(Duration::from_millis(300)).await;
            olga.approve(&f.store, &p.id, p.code).await.unwrap();
        } else if serial == "ATM-R" {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let by = pairgate_store::Changer::local("olga");
            f.store
                .reject_pairing(&p.id, &by, std::time::SystemTime::now())
                .await
                .unwrap();
        }
    }
    for (serial, poll) in polls {
        let answered = tokio::time::timeout(Duration::from_secs(3), poll).await;
        match serial {
            "ATM-W" => assert!(
                answered.is_err(),
                "an undecided request's long poll returned"
            ),
            _ => {
                let r = answered
                    .expect("a decided request's long poll kept waiting")
                    .unwrap();
                let want = if serial == "ATM-A" {
                    "approved"
                } else {
                    "rejected"
                };
                assert_eq!(json(&r)["status"], want, "{serial}");
            }
        }
    }
    f.server.shutdown().await;
}

crate::on_both_databases!(
    long_polls_are_woken_by_decisions,
    full_pairing,
    relay_in_the_middle_makes_codes_differ,
    paired_state_survives_a_restart,
);
