//! The master: only paired fingerprints, checked per request; unpair
//! closes kept-alive connections and refuses resumed sessions within a
//! second; the upstream sees the terminal's identity, never headers the
//! terminal forged.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use pairgate_store::Serial;
use pairgate_tls::client::ServerTrust;

use crate::support::{
    Db, Fixture, Operator, TestTerminal, assert_error, eventually, get, json, post,
};

/// Pairs a fresh terminal for `serial`.
pub(crate) async fn paired(f: &Fixture, serial: &str) -> TestTerminal {
    let terminal = TestTerminal::new(serial);
    paired_as(f, serial, &terminal).await;
    terminal
}

/// Pairs `terminal` for `serial`.
pub(crate) async fn paired_as(f: &Fixture, serial: &str, terminal: &TestTerminal) {
    f.register(serial).await;
    let mut op = Operator::create(&f.store, &format!("op-{}", serial.to_lowercase())).await;
    let p = terminal.start_pairing(&f.gate(""), serial).await;
    op.approve(&f.store, &p.id, p.code).await.unwrap();
    assert!(
        eventually(Duration::from_secs(2), async || f
            .server
            .paired
            .serial(&terminal.fingerprint)
            .is_some())
        .await
    );
}

async fn unknown_unpaired_and_superseded_get_403(db: Db) {
    let f = Fixture::start(db, |_| {}).await;
    let pin = f.server.pin;
    // Unknown: never asked to pair.
    let stranger = TestTerminal::new("stranger");
    let r = get(
        &stranger.https(ServerTrust::Pins(vec![pin])),
        &f.master("/v1/me"),
    )
    .await;
    assert_error(&r, 403, "PG-NOT-PAIRED");
    assert_eq!(
        r.headers
            .iter()
            .find(|(n, _)| n == "connection")
            .map(|(_, v)| v.as_str()),
        Some("close")
    );
    // Superseded: asked, then another key asked for the same serial.
    f.register("ATM-2").await;
    let first = TestTerminal::new("ATM-2");
    let p = first.start_pairing(&f.gate(""), "ATM-2").await;
    let second = TestTerminal::new("ATM-2b");
    second.start_pairing(&f.gate(""), "ATM-2").await;
    let req = f.store.pairing_request(&p.id).await.unwrap().unwrap();
    assert_eq!(req.state.wire_status(), "superseded");
    for t in [&first, &second] {
        let r = get(&t.https(ServerTrust::Pins(vec![pin])), &f.master("/v1/me")).await;
        assert_error(&r, 403, "PG-NOT-PAIRED");
    }
    let r = get(
        &first.https(ServerTrust::Pins(vec![pin])),
        &f.gate(&format!("/v1/pairing/{}", p.id)),
    )
    .await;
    assert_eq!(json(&r)["status"], "superseded");
    // Unpaired: paired once, then unpaired.
    let t = paired(&f, "ATM-3").await;
    let client = t.https(ServerTrust::Pins(vec![pin]));
    assert_eq!(get(&client, &f.master("/v1/me")).await.status, 200);
    f.unpair("ATM-3").await;
    // The server may close the kept-alive connection under the request
    // (a connection error); the next request connects anew and gets 403.
    assert!(
        eventually(Duration::from_secs(1), async || client
            .request("GET", &f.master("/v1/me"), &[], None)
            .await
            .is_ok_and(|r| r.status == 403))
        .await
    );
    // Unknown paths and the proxy without an upstream answer in JSON too.
    let t = paired(&f, "ATM-4").await;
    let client = t.https(ServerTrust::Pins(vec![pin]));
    assert_error(&get(&client, &f.master("/nope")).await, 404, "PG-NO-ROUTE");
    assert_error(
        &get(&client, &f.master("/app/x")).await,
        404,
        "PG-NO-UPSTREAM",
    );
    f.server.shutdown().await;
}

async fn unpair_closes_kept_alive_and_refuses_resumed(db: Db) {
    let f = Fixture::start(db, |_| {}).await;
    let t = paired(&f, "ATM-1").await;
    let tls = t.tls(ServerTrust::Pins(vec![f.server.pin]));
    let addr = f.server.master_addr.to_string();
    // A kept-alive connection: one request now, the connection stays open.
    let stream = tls.connect(&addr, None).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    let driver = tokio::spawn(connection);
    let request = || {
        hyper::Request::get("/v1/me")
            .header("host", "localhost")
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    let r = sender.send_request(request()).await.unwrap();
    assert_eq!(r.status(), 200);
    r.into_body().collect().await.unwrap();
    // A second connection resumes that session (no certificate checks)
    // and is served; its request also reads the next session ticket (the
    // server issues one per handshake).
    let resumed = tls.connect(&addr, None).await.unwrap();
    assert_eq!(
        resumed.get_ref().1.handshake_kind(),
        Some(rustls::HandshakeKind::Resumed)
    );
    let (mut resumed_sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(resumed))
            .await
            .unwrap();
    tokio::spawn(connection);
    let r = resumed_sender.send_request(request()).await.unwrap();
    assert_eq!(r.status(), 200);
    r.into_body().collect().await.unwrap();
    drop(resumed_sender);

    let unpaired_at = Instant::now();
    f.unpair("ATM-1").await;
    // The kept-alive connection is closed by the server.
    tokio::time::timeout(Duration::from_secs(1), driver)
        .await
        .expect("the kept-alive connection of an unpaired terminal stayed open")
        .unwrap()
        .ok();
    assert!(sender.send_request(request()).await.is_err());
    // A resumed session is refused per request.
    let stream = tls.connect(&addr, None).await.unwrap();
    assert_eq!(
        stream.get_ref().1.handshake_kind(),
        Some(rustls::HandshakeKind::Resumed)
    );
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let r = sender.send_request(request()).await.unwrap();
    assert_eq!(r.status(), 403);
    let body = r.into_body().collect().await.unwrap().to_bytes();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"]["code"], "PG-NOT-PAIRED");
    assert!(unpaired_at.elapsed() < Duration::from_secs(2));
    f.server.shutdown().await;
}

/// An upstream that answers with the headers and path it received, and
/// logs every path it was asked for.
async fn echo_upstream() -> std::net::SocketAddr {
    logging_upstream().await.0
}

async fn logging_upstream() -> (std::net::SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let seen = log.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let seen = seen.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        seen.lock().unwrap().push(req.uri().to_string());
                        async move {
                            let mut headers = serde_json::Map::new();
                            for (name, value) in req.headers() {
                                let entry = headers
                                    .entry(name.as_str().to_owned())
                                    .or_insert_with(|| serde_json::Value::Array(Vec::new()));
                                if let serde_json::Value::Array(values) = entry {
                                    values.push(value.to_str().unwrap().into());
                                }
                            }
                            let uri = req.uri().to_string();
                            let method = req.method().to_string();
                            let body = req.into_body().collect().await?.to_bytes();
                            let answer = serde_json::json!({
                                "uri": uri, "method": method, "headers": headers,
                                "body": String::from_utf8_lossy(&body),
                            });
                            let mut response =
                                hyper::Response::new(Full::new(Bytes::from(answer.to_string())));
                            *response.status_mut() = hyper::StatusCode::CREATED;
                            Ok::<_, hyper::Error>(response)
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    (addr, log)
}

/// Issue 12, findings 6 and 7: paths that would leave the base path are
/// refused before the upstream sees them, and identity or forwarding
/// headers under any spelling never reach it.
async fn proxy_keeps_paths_and_identity_headers(db: Db) {
    let (upstream, log) = logging_upstream().await;
    let f = Fixture::start(db, |s| s.upstream_url = format!("http://{upstream}/base")).await;
    let t = paired(&f, "ATM-1").await;
    let client = t.https(ServerTrust::Pins(vec![f.server.pin]));
    for path in [
        "/app/../internal/secrets",
        "/app/%2e%2e/internal/secrets",
        "/app/%2E%2e/internal/secrets",
        "/app/x/..%2f..%2finternal",
        "/app/a%2fb",
        "/app/a%5cb",
        "/app/%252e%252e/internal",
    ] {
        let r = client
            .request("GET", &f.master(path), &[], None)
            .await
            .unwrap();
        assert_error(&r, 400, "PG-BAD-PATH");
    }
    assert!(log.lock().unwrap().is_empty(), "{:?}", log.lock().unwrap());
    let r = client
        .request(
            "GET",
            &f.master("/app/ok"),
            &[
                ("X_Pairgate_Terminal_Serial", "ATM-0999"),
                ("x-pairgate_terminal-fingerprint", "00"),
                ("Forwarded", "for=1.2.3.4"),
                ("X-Real-IP", "1.2.3.4"),
                ("X_Real_IP", "1.2.3.4"),
                ("X-Forwarded-Host", "evil.example"),
                ("Connection", "x-hop"),
                ("X-Hop", "1"),
                ("X-Custom", "kept"),
            ],
            None,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let seen = json(&r);
    assert_eq!(seen["uri"], "/base/ok");
    let names: Vec<String> = seen["headers"]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.to_ascii_lowercase().replace('_', "-"))
        .collect();
    for reserved in ["forwarded", "x-real-ip", "x-forwarded-host", "x-hop"] {
        assert!(
            !names.iter().any(|n| n == reserved),
            "{reserved} in {names:?}"
        );
    }
    assert_eq!(
        names
            .iter()
            .filter(|n| n.as_str() == "x-pairgate-terminal-serial")
            .count(),
        1
    );
    let h = &seen["headers"];
    assert_eq!(
        h["x-pairgate-terminal-serial"],
        serde_json::json!(["ATM-1"])
    );
    assert_eq!(
        h["x-pairgate-terminal-fingerprint"],
        serde_json::json!([t.fingerprint.to_hex()])
    );
    assert_eq!(h["x-custom"], serde_json::json!(["kept"]));
    assert_eq!(log.lock().unwrap().as_slice(), ["/base/ok"]);
    f.server.shutdown().await;
}

async fn proxy_sets_identity_and_strips_forgeries(db: Db) {
    let upstream = echo_upstream().await;
    let f = Fixture::start(db, |s| s.upstream_url = format!("http://{upstream}/base")).await;
    let t = paired(&f, "ATM-1").await;
    let client = t.https(ServerTrust::Pins(vec![f.server.pin]));
    let r = client
        .request(
            "PUT",
            &f.master("/app/orders/7?x=1"),
            &[
                ("x-pairgate-terminal-serial", "ATM-666"),
                ("X-Pairgate-Terminal-Fingerprint", "00"),
                ("x-forwarded-for", "1.2.3.4"),
                ("x-custom", "kept"),
            ],
            Some(b"hello".to_vec()),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let seen = json(&r);
    assert_eq!(seen["uri"], "/base/orders/7?x=1");
    assert_eq!(seen["method"], "PUT");
    assert_eq!(seen["body"], "hello");
    let h = &seen["headers"];
    assert_eq!(
        h["x-pairgate-terminal-serial"],
        serde_json::json!(["ATM-1"])
    );
    assert_eq!(
        h["x-pairgate-terminal-fingerprint"],
        serde_json::json!([t.fingerprint.to_hex()])
    );
    assert_eq!(h["x-forwarded-for"], serde_json::json!(["127.0.0.1"]));
    assert_eq!(h["x-custom"], serde_json::json!(["kept"]));
    // An unpaired client never reaches the upstream.
    let stranger = TestTerminal::new("x").https(ServerTrust::Pins(vec![f.server.pin]));
    let r = post(&stranger, &f.master("/app/orders"), &serde_json::json!({})).await;
    assert_error(&r, 403, "PG-NOT-PAIRED");
    f.server.shutdown().await;
}

/// Unpairs `serial` in the store; whether the master's paired set drops
/// `terminal` within `within`.
async fn unpaired_within(
    f: &Fixture,
    serial: &str,
    terminal: &TestTerminal,
    within: Duration,
) -> bool {
    f.store
        .unpair(
            &Serial::new(serial).unwrap(),
            &pairgate_store::TrustChange::local("admin"),
            SystemTime::now(),
        )
        .await
        .unwrap();
    eventually(within, async || {
        f.server.paired.serial(&terminal.fingerprint).is_none()
    })
    .await
}

/// Issue 13, finding 5: one paired row that does not read no longer
/// stops every reload. The row's terminal is refused, the others are
/// served, and an unpair made afterwards is honoured.
async fn a_corrupt_row_does_not_stop_unpair(db: Db) {
    let f = Fixture::start(db, |_| {}).await;
    let broken = paired(&f, "ATM-1").await;
    let kept = paired(&f, "ATM-2").await;
    let gone = paired(&f, "ATM-3").await;
    sqlx::query(
        "UPDATE terminals SET paired_fingerprint = 'not-a-fingerprint' WHERE serial = 'ATM-1'",
    )
    .execute(f.store.pool())
    .await
    .unwrap();
    // A generation the change log does not account for (as a purge of
    // the log, or a change by an older version, leaves): the master
    // reloads the whole set, and meets the corrupt row.
    sqlx::query("UPDATE paired_generation SET generation = generation + 1")
        .execute(f.store.pool())
        .await
        .unwrap();
    assert!(
        unpaired_within(&f, "ATM-3", &gone, Duration::from_secs(3)).await,
        "the unpair was not honoured"
    );
    assert_eq!(f.server.paired.unreadable_rows(), 1);
    let pins = ServerTrust::Pins(vec![f.server.pin]);
    assert_error(
        &get(&broken.https(pins.clone()), &f.master("/v1/me")).await,
        403,
        "PG-NOT-PAIRED",
    );
    assert_error(
        &get(&gone.https(pins.clone()), &f.master("/v1/me")).await,
        403,
        "PG-NOT-PAIRED",
    );
    assert_eq!(
        get(&kept.https(pins), &f.master("/v1/me")).await.status,
        200
    );
    f.server.shutdown().await;
}

/// `GET /v1/me` answers from the paired set in memory, and a heartbeat
/// shows in it at once, as it does in the store.
async fn me_shows_the_record_and_heartbeats(db: Db) {
    let f = Fixture::start(db, |_| {}).await;
    let t = paired(&f, "ATM-7").await;
    let client = t.https(ServerTrust::Pins(vec![f.server.pin]));
    let me = json(&get(&client, &f.master("/v1/me")).await);
    assert_eq!(me["serial"], "ATM-7");
    assert_eq!(me["fingerprint"], t.fingerprint.to_hex());
    assert!(me["paired_at"].as_str().unwrap().ends_with('Z'), "{me}");
    assert!(me["last_seen_at"].is_null(), "{me}");
    let r = post(
        &client,
        &f.master("/v1/heartbeat"),
        &serde_json::json!({ "firmware": "7.1.2" }),
    )
    .await;
    assert_eq!(r.status, 200);
    let me = json(&get(&client, &f.master("/v1/me")).await);
    assert_eq!(me["firmware"], "7.1.2", "{me}");
    assert!(me["last_seen_at"].as_str().unwrap().ends_with('Z'), "{me}");
    let stored = f
        .store
        .terminal(&Serial::new("ATM-7").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.firmware.as_deref(), Some("7.1.2"));
    assert!(stored.last_seen_at.is_some());
}

crate::on_both_databases!(
    a_corrupt_row_does_not_stop_unpair,
    proxy_keeps_paths_and_identity_headers,
    me_shows_the_record_and_heartbeats,
    unknown_unpaired_and_superseded_get_403,
    unpair_closes_kept_alive_and_refuses_resumed,
    proxy_sets_identity_and_strips_forgeries,
);

/// PostgreSQL: when the LISTEN connection dies, the master listens again
/// (and reloads), so an unpair still takes effect at once, long before the
/// periodic reconcile (set to a minute here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_listener_loss_is_recovered() {
    let f = Fixture::start(Db::Postgres, |s| s.reconcile_secs = 60).await;
    let t = paired(&f, "ATM-1").await;
    let killed = sqlx::query(
        "SELECT pg_terminate_backend(pid) AS done FROM pg_stat_activity \
         WHERE datname = current_database() AND query ILIKE 'LISTEN%' AND pid <> pg_backend_pid()",
    )
    .fetch_all(f.store.pool())
    .await
    .unwrap();
    // One for the paired set, one for the gate's pairing decisions.
    assert_eq!(killed.len(), 2, "two LISTEN connections per server");
    // Let it notice and listen again.
    assert!(
        eventually(Duration::from_secs(5), async || {
            sqlx::query(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
                 AND query ILIKE 'LISTEN%' AND pid <> pg_backend_pid()",
            )
            .fetch_all(f.store.pool())
            .await
            .unwrap()
            .len()
                == 2
        })
        .await,
        "the listeners did not come back"
    );
    assert!(
        unpaired_within(&f, "ATM-1", &t, Duration::from_secs(1)).await,
        "unpair was not seen within a second after the listener was lost"
    );
    f.server.shutdown().await;
}
