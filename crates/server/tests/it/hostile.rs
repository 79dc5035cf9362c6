//! Issue 12's findings, each reproduced at a small, bounded scale against
//! a real server on 127.0.0.0/8, asserting the bound: certificates that
//! would grow the session cache, unknown-serial floods behind one NAT
//! address, one key filling the queue, supersede loops, database growth,
//! connection floods and slow bodies, an early `413`, expired
//! certificates on resumed sessions, CA certificates as identities.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use pairgate_pki::Nonce;
use pairgate_store::Actor;
use pairgate_tls::client::ServerTrust;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{Db, Fixture, TestTerminal, assert_error, get, post};

/// `step`, or a failure naming it after 30 s (a hang is a finding too).
async fn within<T>(step: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), fut)
        .await
        .unwrap_or_else(|_| panic!("{step} did not finish within 30 s"))
}

fn ask(serial: &str) -> serde_json::Value {
    serde_json::json!({"serial": serial, "commitment": Nonce::random().commitment().to_hex()})
}

fn local(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

async fn counts(f: &Fixture) -> (usize, usize) {
    (
        f.store.pairing_requests(false, 10_000).await.unwrap().len(),
        f.store.audit_records(100_000).await.unwrap().len(),
    )
}

/// Finding 8: the unknown-serial limit is per (address, certificate) with
/// a larger per-address budget for unknown serials only; refusals are
/// audited one record per address and window, under a global budget.
async fn unknown_serials_limit_the_key_not_the_nat(db: Db) {
    let f = Fixture::start(db, |s| {
        s.unknown_serial_per_minute = 3;
        s.unknown_serial_per_address_per_minute = 5;
        s.refusal_audit_per_minute = 2;
    })
    .await;
    f.register("ATM-1").await;
    f.register("ATM-2").await;
    let before = counts(&f).await;
    let pins = ServerTrust::Pins(vec![f.server.pin]);
    let url = f.gate("/v1/pairing");
    let attacker = TestTerminal::new("flood").https(pins.clone());
    for i in 0..3 {
        assert_error(
            &post(&attacker, &url, &ask(&format!("NOPE-{i}"))).await,
            403,
            "PG-UNKNOWN-SERIAL",
        );
    }
    for i in 3..6 {
        assert_error(
            &post(&attacker, &url, &ask(&format!("NOPE-{i}"))).await,
            429,
            "PG-RATE-LIMITED",
        );
    }
    // Another terminal behind the same address pairs as usual.
    let neighbour = TestTerminal::new("ATM-1").https(pins.clone());
    assert_eq!(post(&neighbour, &url, &ask("ATM-1")).await.status, 202);
    // Fresh keys exhaust the address's budget for unknown serials...
    for i in 0..2 {
        let k = TestTerminal::new("k").https(pins.clone());
        assert_error(
            &post(&k, &url, &ask(&format!("X-{i}"))).await,
            403,
            "PG-UNKNOWN-SERIAL",
        );
    }
    let k = TestTerminal::new("k").https(pins.clone());
    assert_error(&post(&k, &url, &ask("X-9")).await, 429, "PG-RATE-LIMITED");
    // ...and still never block a known serial.
    let other = TestTerminal::new("ATM-2").https(pins.clone());
    assert_eq!(post(&other, &url, &ask("ATM-2")).await.status, 202);
    // Twenty more addresses, two unknown serials each.
    for last in 10..30 {
        let c = TestTerminal::new("spray")
            .tls(pins.clone())
            .from_source(local(last));
        let c = pairgate_tls::https::HttpsClient::new(c.without_resumption());
        for i in 0..2 {
            assert_error(
                &post(&c, &url, &ask(&format!("S-{i}"))).await,
                403,
                "PG-UNKNOWN-SERIAL",
            );
        }
    }
    let during = counts(&f).await;
    assert_eq!(
        during,
        (before.0 + 2, before.1 + 2),
        "the two opens were audited, the refusals not yet"
    );
    let written = f.server.flush_refusals().await.unwrap();
    assert_eq!(written, 3, "two addresses' records and one sum");
    let audit = f.store.audit_records(3).await.unwrap();
    assert_eq!(audit[0].action, "gate.refusals_summed");
    let first = serde_json::from_str::<serde_json::Value>(&audit[2].detail).unwrap();
    assert_eq!(audit[2].subject, "127.0.0.1");
    assert!(first["count"].as_u64().unwrap() >= 5, "{first}");
    f.server.shutdown().await;
}

/// Findings 3 and 5: one client cannot reach the global cap of open
/// requests, and what it can write is bounded.
async fn one_client_cannot_fill_the_queue(db: Db) {
    let f = Fixture::start(db, |s| {
        s.max_open_requests = 6;
        s.max_open_per_key = 2;
        s.max_open_per_address = 3;
    })
    .await;
    for i in 0..10 {
        f.register(&format!("Q-{i}")).await;
    }
    let pins = ServerTrust::Pins(vec![f.server.pin]);
    let url = f.gate("/v1/pairing");
    let one_key = TestTerminal::new("q").https(pins.clone());
    let mut accepted = 0;
    for i in 0..10 {
        let r = post(&one_key, &url, &ask(&format!("Q-{i}"))).await;
        if r.status == 202 {
            accepted += 1;
        } else {
            assert_error(&r, 429, "PG-LIMIT");
        }
    }
    assert_eq!(accepted, 2, "the key's quota");
    for i in 2..10 {
        let r = post(
            &TestTerminal::new("q").https(pins.clone()),
            &url,
            &ask(&format!("Q-{i}")),
        )
        .await;
        if r.status == 202 {
            accepted += 1;
        }
    }
    assert_eq!(accepted, 3, "the address's quota");
    // A genuine terminal elsewhere still gets a request.
    let genuine = TestTerminal::new("Q-9")
        .tls(pins.clone())
        .from_source(local(2));
    let genuine = pairgate_tls::https::HttpsClient::new(genuine.without_resumption());
    assert_eq!(post(&genuine, &url, &ask("Q-9")).await.status, 202);
    f.server.shutdown().await;
}

/// Finding 4: a supersede loop stops at the limits, and the operator can
/// block the attacker's key; the genuine terminal then pairs.
async fn a_supersede_loop_is_stopped(db: Db) {
    let clock = pairgate_server::Clock::manual(std::time::SystemTime::now());
    let f = Fixture::start_with_clock(db, clock.clone(), |s| {
        s.supersedes_per_key = 1;
        s.supersedes_per_address = 3;
    })
    .await;
    f.register("ATM-1").await;
    let pins = ServerTrust::Pins(vec![f.server.pin]);
    let url = f.gate("/v1/pairing");
    let genuine = TestTerminal::new("ATM-1");
    let genuine_client = pairgate_tls::https::HttpsClient::new(
        genuine
            .tls(pins.clone())
            .from_source(local(2))
            .without_resumption(),
    );
    assert_eq!(post(&genuine_client, &url, &ask("ATM-1")).await.status, 202);
    let before = counts(&f).await;
    let attacker = TestTerminal::new("evil");
    let attacker_client = attacker.https(pins.clone());
    let mut statuses = Vec::new();
    // Every 50 ms for a second, with the same key and then fresh ones.
    for i in 0..20 {
        let client = if i % 2 == 0 {
            attacker_client.clone()
        } else {
            TestTerminal::new("evil").https(pins.clone())
        };
        statuses.push(post(&client, &url, &ask("ATM-1")).await.status);
        clock.advance(Duration::from_millis(50));
    }
    let superseded = statuses.iter().filter(|s| **s == 202).count();
    assert!(superseded <= 3, "{statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 202 || *s == 429),
        "{statuses:?}"
    );
    let after = counts(&f).await;
    assert!(after.0 - before.0 <= 3, "rows {before:?} → {after:?}");
    assert!(after.1 - before.1 <= 6, "audit {before:?} → {after:?}");
    // The operator blocks the key; the genuine terminal asks again, from
    // its own address, and takes its serial back from whichever key holds it.
    f.store
        .block_key(
            &attacker.fingerprint,
            "supersede loop",
            &Actor::new("admin"),
            std::time::SystemTime::now(),
        )
        .await
        .unwrap();
    assert_error(
        &post(&attacker_client, &url, &ask("ATM-1")).await,
        403,
        "PG-BLOCKED",
    );
    let r = post(&genuine_client, &url, &ask("ATM-1")).await;
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let open = f.store.pairing_requests(true, 10).await.unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].fingerprint, genuine.fingerprint);
    f.server.shutdown().await;
}

/// Findings 1 and 13: a certificate over the size cap or marked CA:TRUE
/// is refused in the handshake and nothing of it is cached; certificates
/// under the cap fill the cache only up to its byte budget.
async fn certificates_cannot_grow_the_session_cache(db: Db) {
    let budget = 256 * 1024;
    let f = Fixture::start(db, |s| s.tls_session_cache_bytes = budget).await;
    let pins = ServerTrust::Pins(vec![f.server.pin]);
    let padded = |bytes: usize| {
        TestTerminal::with("big", move |p| {
            p.custom_extensions
                .push(rcgen::CustomExtension::from_oid_content(
                    &[1, 3, 6, 1, 4, 1, 55555, 1],
                    vec![0x04, 0x82, (bytes >> 8) as u8, bytes as u8]
                        .into_iter()
                        .chain(std::iter::repeat_n(0x41, bytes))
                        .collect(),
                ));
        })
    };
    let huge = padded(60_000);
    let r = within(
        "the request with a 60 KB certificate",
        huge.https(pins.clone())
            .request("GET", &f.gate("/v1/pairing/x"), &[], None),
    )
    .await;
    assert!(r.is_err(), "a 60 KB certificate must be refused");
    let ca = TestTerminal::with("ca", |p| {
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    });
    let r = within(
        "the request with a CA certificate",
        ca.https(pins.clone())
            .request("GET", &f.gate("/v1/pairing/x"), &[], None),
    )
    .await;
    assert!(r.is_err(), "a CA certificate must be refused");
    assert_eq!(f.server.gate_tls.cached_sessions(), 0);
    // 14 KB certificates, each a new session: the cache stays in budget.
    let big = padded(14_000);
    let client = big.tls(pins.clone());
    for _ in 0..40 {
        let mut s = within(
            "a handshake with a 14 KB certificate",
            client
                .without_resumption()
                .connect(&f.server.gate_addr.to_string(), None),
        )
        .await
        .unwrap();
        s.write_all(b"GET /v1/pairing/x HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = Vec::new();
        let _ = within("reading the answer", s.read_to_end(&mut out)).await;
        assert!(
            out.starts_with(b"HTTP/1.1 404"),
            "{}",
            String::from_utf8_lossy(&out)
        );
    }
    let held = f.server.gate_tls.cached_session_bytes();
    assert!(held as u64 <= budget, "{held} > {budget}");
    assert!(
        f.server.gate_tls.cached_sessions() >= 10,
        "{}",
        f.server.gate_tls.cached_sessions()
    );
    within("the server's shutdown", f.server.shutdown()).await;
}

/// Finding 2: connections over the per-address cap are closed at once,
/// a client elsewhere is still served, a body that never arrives gets
/// `408`, and an idle kept-alive connection is closed.
async fn connection_floods_and_slow_bodies_are_bounded(db: Db) {
    let f = Fixture::start(db, |s| {
        s.max_connections_per_address = 20;
        s.body_timeout_secs = 1;
        s.header_timeout_secs = 2;
    })
    .await;
    let pins = ServerTrust::Pins(vec![f.server.pin]);
    let addr = f.server.gate_addr;
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    let start = Instant::now();
    while f.server.connections[0].open() < 20 && start.elapsed() < Duration::from_secs(2) {
        // The server accepts on its own task: a real wait, with a deadline.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(f.server.connections[0].open(), 20);
    let mut extra = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 1];
    let n = tokio::time::timeout(Duration::from_secs(2), extra.read(&mut buf)).await;
    assert!(
        matches!(n, Ok(Ok(0)) | Ok(Err(_))),
        "over the cap: closed at once, {n:?}"
    );
    assert!(f.server.connections[0].refused() >= 1);
    // Another address is served meanwhile.
    let other = TestTerminal::new("x")
        .tls(pins.clone())
        .from_source(local(3));
    let other = pairgate_tls::https::HttpsClient::new(other.without_resumption());
    assert_error(
        &get(&other, &f.gate("/v1/pairing/00")).await,
        404,
        "PG-NOT-FOUND",
    );
    drop(held);
    drop(extra);
    // The server frees the places as it sees the connections close.
    let start = Instant::now();
    while f.server.connections[0].open() > 0 && start.elapsed() < Duration::from_secs(5) {
        // Closing is seen by the server's tasks: a real wait, with a deadline.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(f.server.connections[0].open(), 0);
    // Headers with Content-Length and no body: 408 after the body timeout.
    let t = TestTerminal::new("slow");
    let mut s = t
        .tls(pins.clone())
        .connect(&addr.to_string(), None)
        .await
        .unwrap();
    s.write_all(b"POST /v1/pairing HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 16000\r\n\r\n{").await.unwrap();
    let started = Instant::now();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    assert!(
        out.starts_with(b"HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    assert!(started.elapsed() < Duration::from_secs(4));
    // An idle kept-alive connection goes after the header timeout.
    let mut idle = t
        .tls(pins.clone())
        .connect(&addr.to_string(), None)
        .await
        .unwrap();
    let started = Instant::now();
    let n = tokio::time::timeout(Duration::from_secs(5), idle.read(&mut [0u8; 16])).await;
    assert!(matches!(n, Ok(Ok(0)) | Ok(Err(_))), "{n:?}");
    assert!(started.elapsed() < Duration::from_secs(4));
    // So does one whose first header byte comes late: the header timeout
    // counts from the start of the wait, not from that byte.
    let mut late = t.tls(pins).connect(&addr.to_string(), None).await.unwrap();
    let started = Instant::now();
    // A real pause on the wire, most of the 2 s header timeout.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    late.write_all(b"G").await.unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), late.read_to_end(&mut rest)).await;
    assert!(
        started.elapsed() < Duration::from_millis(3000),
        "closed after {:?}",
        started.elapsed()
    );
    f.server.shutdown().await;
}

/// Finding 12: an 8 MiB body gets a `413` JSON answer the client reads.
async fn an_oversized_body_gets_a_readable_413(db: Db) {
    let f = Fixture::start(db, |_| {}).await;
    let client = TestTerminal::new("big").https(ServerTrust::Pins(vec![f.server.pin]));
    let r = client
        .request(
            "POST",
            &f.gate("/v1/pairing"),
            &[("content-type", "application/json")],
            Some(vec![b' '; 8 << 20]),
        )
        .await
        .unwrap();
    assert_error(&r, 413, "PG-TOO-LARGE");
    f.server.shutdown().await;
}

/// Finding 10: a certificate that expires is refused on its resumed
/// sessions and on its kept-alive connection, though no handshake checks
/// it any more.
async fn an_expired_certificate_is_refused_when_resumed(db: Db) {
    let clock = pairgate_server::Clock::manual(std::time::SystemTime::now());
    let f = Fixture::start_with_clock(db, clock.clone(), |_| {}).await;
    let soon = time::OffsetDateTime::now_utc() + time::Duration::seconds(3);
    let t = TestTerminal::with("soon", |p| p.not_after = soon);
    let pins = ServerTrust::Pins(vec![f.server.pin]);
    let client = pairgate_tls::https::HttpsClient::new(t.tls(pins.clone()));
    let r = get(&client, &f.gate("/v1/pairing/00")).await;
    assert_error(&r, 404, "PG-NOT-FOUND");
    clock.advance(Duration::from_millis(4_200));
    let r = client
        .request("GET", &f.gate("/v1/pairing/00"), &[], None)
        .await
        .unwrap();
    assert_error(&r, 403, "PG-CERT-EXPIRED");
    f.server.shutdown().await;
}

/// Median latency of `n` kept-alive `GET /v1/me` on one connection.
async fn me_median(f: &Fixture, t: &TestTerminal, n: usize) -> Duration {
    use http_body_util::{BodyExt, Empty};
    let stream = t
        .tls(ServerTrust::Pins(vec![f.server.pin]))
        .connect(&f.server.master_addr.to_string(), None)
        .await
        .unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    let driver = tokio::spawn(conn);
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let request = hyper::Request::get("/v1/me")
            .header("host", "master")
            .body(Empty::<hyper::body::Bytes>::new())
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), 200);
        response.into_body().collect().await.unwrap();
        times.push(started.elapsed());
        // Paces the probe against the real flood (a latency measurement).
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    driver.abort();
    times.sort();
    times[n / 2]
}

/// Finding 9: a flood of CAS logins (each an Argon2 hash) no longer runs
/// on the async workers, so the master's latency barely moves.
async fn a_login_flood_does_not_slow_the_master(db: Db) {
    let f = Fixture::start(db, |s| {
        s.login_failures_per_address = 1_000_000;
        s.password_hash_concurrency = 1;
    })
    .await;
    let t = crate::master::paired(&f, "ATM-1").await;
    let quiet = me_median(&f, &t, 60).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hashed = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let flood: Vec<_> = (0..8)
        .map(|i| {
            let (stop, hashed, cas) = (stop.clone(), hashed.clone(), f.server.cas_addr);
            tokio::spawn(async move {
                let mut web = crate::web::Web::new(cas);
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    // A new name each time: one (name, address) pair
                    // would soon have to wait between guesses.
                    n += 1;
                    let page = web.get("/login").await;
                    let r = web
                        .post(
                            "/login",
                            &[
                                ("csrf", &page.csrf()),
                                ("username", &format!("nobody{i}-{n}")),
                                ("password", "guess"),
                            ],
                        )
                        .await;
                    assert_eq!(r.status, 401);
                    hashed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            })
        })
        .collect();
    // Lets the flood of real logins get going before measuring.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let loud = me_median(&f, &t, 60).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for task in flood {
        task.await.unwrap();
    }
    let hashed = hashed.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!("/v1/me median: {quiet:?} quiet, {loud:?} during {hashed} logins");
    assert!(hashed >= 8, "the flood ran ({hashed} logins)");
    // Hashing inline took the workers for tens of milliseconds per
    // login; off them, the median stays within a few milliseconds.
    assert!(
        loud <= quiet * 10 + Duration::from_millis(10),
        "/v1/me median {loud:?} during the flood against {quiet:?} without"
    );
    f.server.shutdown().await;
}

crate::on_both_databases!(
    a_login_flood_does_not_slow_the_master,
    unknown_serials_limit_the_key_not_the_nat,
    one_client_cannot_fill_the_queue,
    a_supersede_loop_is_stopped,
    certificates_cannot_grow_the_session_cache,
    connection_floods_and_slow_bodies_are_bounded,
    an_oversized_body_gets_a_readable_413,
    an_expired_certificate_is_refused_when_resumed,
);
