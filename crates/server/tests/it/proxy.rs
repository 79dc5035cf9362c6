//! The master's `/app/…` proxy as the operator's front door (issue 15):
//! upstream connections are reused, bodies stream both ways under the
//! limit, a dead or hung upstream costs a quick error and no pile of
//! connections, upgrades round-trip and close on unpair, the identity
//! headers cannot be forged, and an https:// upstream is held to its pin.
//! The proxy does not depend on the database: SQLite only.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use pairgate_tls::client::ServerTrust;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Notify, mpsc};

use crate::master::paired;
use crate::support::{Db, Fixture, TestTerminal, eventually};

type Error = Box<dyn std::error::Error + Send + Sync>;
type TestBody = BoxBody<Bytes, Error>;

/// What the test upstream saw, and the hand-offs of the streaming tests.
#[derive(Default)]
struct Seen {
    accepted: AtomicUsize,
    /// The upstream read the first part of a streamed request body.
    first_part_in: Notify,
    /// The test read the first part of a streamed response.
    first_part_out: Notify,
}

/// An HTTP/1.1 application on 127.0.0.1 under `/base`:
/// - `/base/echo`: the headers it got, as JSON;
/// - `/base/count`: reads the body as it comes, answers its length, and
///   says when the first 32 KiB are in;
/// - `/base/drip`: a first part, then the rest once the test has read it;
/// - `/base/big`: 4 MiB;
/// - `/base/ws`: switches to the `echo` protocol and echoes bytes.
async fn upstream() -> (String, Arc<Seen>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/base", listener.local_addr().unwrap());
    let seen = Arc::new(Seen::default());
    let shared = seen.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            shared.accepted.fetch_add(1, Ordering::SeqCst);
            let seen = shared.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| answer(req, seen.clone()));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .with_upgrades()
                    .await;
            });
        }
    });
    (url, seen)
}

async fn answer(
    mut req: hyper::Request<Incoming>,
    seen: Arc<Seen>,
) -> Result<hyper::Response<TestBody>, Infallible> {
    let full = |text: String| Full::new(Bytes::from(text)).map_err(Error::from).boxed();
    let body = match req.uri().path() {
        "/base/echo" => {
            let mut headers = serde_json::Map::new();
            for (name, value) in req.headers() {
                let values = headers
                    .entry(name.as_str())
                    .or_insert_with(|| serde_json::json!([]));
                values
                    .as_array_mut()
                    .unwrap()
                    .push(value.to_str().unwrap().into());
            }
            full(serde_json::Value::Object(headers).to_string())
        }
        "/base/count" => {
            let mut body = req.into_body();
            let (mut n, mut told) = (0usize, false);
            while let Some(frame) = body.frame().await {
                let Ok(frame) = frame else { break };
                n += frame.data_ref().map_or(0, Bytes::len);
                if n >= 32 * 1024 && !told {
                    told = true;
                    seen.first_part_in.notify_one();
                }
            }
            full(n.to_string())
        }
        "/base/drip" => {
            let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Error>>(2);
            tokio::spawn(async move {
                let _ = tx.send(Ok(Frame::data(Bytes::from("first;")))).await;
                seen.first_part_out.notified().await;
                let _ = tx.send(Ok(Frame::data(Bytes::from("rest")))).await;
            });
            StreamBody::new(receiver_stream(rx)).boxed()
        }
        "/base/big" => full("x".repeat(4 << 20)),
        "/base/ws" => {
            let upgraded = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                let mut io = TokioIo::new(upgraded.await.unwrap());
                let mut buf = [0u8; 64];
                while let Ok(n @ 1..) = io.read(&mut buf).await {
                    if io.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
            let mut response = hyper::Response::new(Empty::new().map_err(Error::from).boxed());
            *response.status_mut() = hyper::StatusCode::SWITCHING_PROTOCOLS;
            let headers = response.headers_mut();
            headers.insert("connection", "upgrade".parse().unwrap());
            headers.insert("upgrade", "echo".parse().unwrap());
            return Ok(response);
        }
        _ => full("no such path".into()),
    };
    Ok(hyper::Response::new(body))
}

fn receiver_stream<T: Send + 'static>(
    rx: mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send + Unpin {
    Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

/// A kept-alive mutual-TLS connection of `t` to the master.
async fn connect(f: &Fixture, t: &TestTerminal) -> SendRequest<TestBody> {
    let tls = t.tls(ServerTrust::Pins(vec![f.server.pin]));
    let stream = tls
        .connect(&f.server.master_addr.to_string(), None)
        .await
        .unwrap();
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection.with_upgrades());
    sender
}

fn request(method: &str, path: &str, body: TestBody) -> hyper::Request<TestBody> {
    hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost")
        .body(body)
        .unwrap()
}

fn empty() -> TestBody {
    Empty::new().map_err(Error::from).boxed()
}

/// Sends and reads the whole answer: status, headers, body.
async fn call(
    s: &mut SendRequest<TestBody>,
    req: hyper::Request<TestBody>,
) -> (u16, hyper::HeaderMap, Bytes) {
    s.ready().await.unwrap();
    let r = s.send_request(req).await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body = r.into_body().collect().await.unwrap().to_bytes();
    (status, headers, body)
}

fn error_code(body: &Bytes) -> String {
    let j: serde_json::Value = serde_json::from_slice(body).unwrap();
    j["error"]["code"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connections_are_reused_across_requests_and_terminals() {
    let (url, seen) = upstream().await;
    let f = Fixture::start(Db::Sqlite, |s| s.upstream_url = url).await;
    let terminals = [paired(&f, "ATM-1").await, paired(&f, "ATM-2").await];
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..4 {
        let mut s = connect(&f, &terminals[i % 2]).await;
        tasks.spawn(async move {
            for _ in 0..250 {
                let (status, _, _) = call(&mut s, request("GET", "/app/echo", empty())).await;
                assert_eq!(status, 200);
            }
        });
    }
    tasks.join_all().await;
    // Four loops need four connections at once; a connection still on its
    // way back to the pool when the next request leaves may make another.
    // Without reuse this would be 1,000.
    let accepted = seen.accepted.load(Ordering::SeqCst);
    assert!(
        (1..=12).contains(&accepted),
        "{accepted} upstream connections for 1,000 requests on 4 terminal connections"
    );
    // The pool's use is on /metrics: nothing in flight now, and its cap.
    let page = crate::web::Web::new(f.server.metrics_addr.unwrap())
        .get("/metrics")
        .await
        .body;
    assert!(
        page.lines().any(|l| l == "pairgate_upstream_in_flight 0"),
        "{page}"
    );
    let cap = format!(
        "pairgate_upstream_max_in_flight {}",
        f.settings.upstream_max_connections
    );
    assert!(page.lines().any(|l| l == cap), "{page}");
    f.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_stream_both_ways_and_the_limit_holds_while_streaming() {
    let (url, seen) = upstream().await;
    let f = Fixture::start(Db::Sqlite, |s| {
        s.upstream_url = url;
        s.max_proxy_body_bytes = 64 * 1024;
    })
    .await;
    let t = paired(&f, "ATM-1").await;
    let mut s = connect(&f, &t).await;
    // Up: the second part leaves only once the upstream has the first, so
    // a proxy that buffered the body whole would never answer.
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Error>>(2);
    let sent = tokio::spawn(async move {
        tx.send(Ok(Frame::data(Bytes::from(vec![1u8; 40 * 1024]))))
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(10), seen.first_part_in.notified())
            .await
            .expect("the upstream never saw the first part: the proxy held the body back");
        tx.send(Ok(Frame::data(Bytes::from(vec![2u8; 8 * 1024]))))
            .await
            .unwrap();
        seen
    });
    let body = StreamBody::new(receiver_stream(rx)).boxed();
    let (status, _, answer) = call(&mut s, request("POST", "/app/count", body)).await;
    assert_eq!((status, &answer[..]), (200, &b"49152"[..]));
    let seen = sent.await.unwrap();
    // Down: the terminal reads the first part before the upstream sends
    // the rest.
    s.ready().await.unwrap();
    let r = s
        .send_request(request("GET", "/app/drip", empty()))
        .await
        .unwrap();
    let mut body = r.into_body();
    let first = tokio::time::timeout(Duration::from_secs(10), body.frame())
        .await
        .expect("the first part of the answer was held back")
        .unwrap()
        .unwrap();
    assert_eq!(first.into_data().unwrap(), "first;");
    seen.first_part_out.notify_one();
    assert_eq!(body.collect().await.unwrap().to_bytes(), "rest");
    // An answer far larger than any buffer arrives whole.
    let (status, _, big) = call(&mut s, request("GET", "/app/big", empty())).await;
    assert_eq!((status, big.len()), (200, 4 << 20));
    // Over the limit: said by Content-Length, refused before the upstream;
    // streamed without one, refused when it passes the limit.
    let (status, _, answer) = call(
        &mut s,
        request(
            "POST",
            "/app/count",
            Full::new(Bytes::from(vec![0u8; 65 * 1024]))
                .map_err(Error::from)
                .boxed(),
        ),
    )
    .await;
    assert_eq!(
        (status, error_code(&answer).as_str()),
        (413, "PG-TOO-LARGE")
    );
    let mut s = connect(&f, &t).await;
    let chunks = futures_util::stream::iter(
        (0..10).map(|_| Ok::<_, Error>(Frame::data(Bytes::from(vec![3u8; 10 * 1024])))),
    );
    let (status, _, answer) = call(
        &mut s,
        request("POST", "/app/count", StreamBody::new(chunks).boxed()),
    )
    .await;
    assert_eq!(
        (status, error_code(&answer).as_str()),
        (413, "PG-TOO-LARGE")
    );
    f.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_or_hung_upstream_costs_a_quick_error_and_no_pile_of_connections() {
    // Nothing listens: refused at once, well before any timer.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let f = Fixture::start(Db::Sqlite, |s| {
        s.upstream_url = format!("http://127.0.0.1:{port}");
        s.upstream_connect_timeout_secs = 30;
        s.proxy_timeout_secs = 30;
    })
    .await;
    let t = paired(&f, "ATM-1").await;
    let mut s = connect(&f, &t).await;
    let started = Instant::now();
    for _ in 0..20 {
        let (status, _, body) = call(&mut s, request("GET", "/app/x", empty())).await;
        assert_eq!((status, error_code(&body).as_str()), (502, "PG-UPSTREAM"));
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "refused connections waited out a timer"
    );
    f.server.shutdown().await;

    // Accepts and never answers: each request ends at the timeout, and
    // the master closes what it opened.
    let hung = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", hung.local_addr().unwrap());
    let open = Arc::new(AtomicUsize::new(0));
    let accepted = Arc::new(AtomicUsize::new(0));
    let (o, a) = (open.clone(), accepted.clone());
    tokio::spawn(async move {
        loop {
            let (mut tcp, _) = hung.accept().await.unwrap();
            a.fetch_add(1, Ordering::SeqCst);
            o.fetch_add(1, Ordering::SeqCst);
            let o = o.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(1..) = tcp.read(&mut buf).await {}
                o.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    let f = Fixture::start(Db::Sqlite, |s| {
        s.upstream_url = url;
        s.proxy_timeout_secs = 1;
    })
    .await;
    let t = paired(&f, "ATM-1").await;
    let mut s = connect(&f, &t).await;
    for _ in 0..5 {
        let (status, _, body) = call(&mut s, request("GET", "/app/x", empty())).await;
        assert_eq!(
            (status, error_code(&body).as_str()),
            (504, "PG-UPSTREAM-TIMEOUT")
        );
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 5);
    assert!(
        eventually(Duration::from_secs(5), async || open.load(Ordering::SeqCst)
            == 0)
        .await,
        "{} connections to a hung upstream left open",
        open.load(Ordering::SeqCst)
    );
    f.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_round_trips_and_closes_on_unpair() {
    let (url, _) = upstream().await;
    let f = Fixture::start(Db::Sqlite, |s| s.upstream_url = url).await;
    let t = paired(&f, "ATM-1").await;
    // An unpaired key never gets to switch.
    let stranger = TestTerminal::new("x");
    let mut s = connect(&f, &stranger).await;
    let mut ask = request("GET", "/app/ws", empty());
    ask.headers_mut()
        .insert("connection", "upgrade".parse().unwrap());
    ask.headers_mut().insert("upgrade", "echo".parse().unwrap());
    let (status, _, body) = call(&mut s, ask).await;
    assert_eq!((status, error_code(&body).as_str()), (403, "PG-NOT-PAIRED"));

    let mut s = connect(&f, &t).await;
    let mut ask = request("GET", "/app/ws", empty());
    ask.headers_mut()
        .insert("connection", "upgrade".parse().unwrap());
    ask.headers_mut().insert("upgrade", "echo".parse().unwrap());
    let mut r = s.send_request(ask).await.unwrap();
    assert_eq!(r.status(), 101);
    assert_eq!(r.headers()["upgrade"], "echo");
    assert!(r.headers().contains_key("x-pairgate-request-id"));
    let mut io = TokioIo::new(hyper::upgrade::on(&mut r).await.unwrap());
    for word in ["ping", "pong and more"] {
        io.write_all(word.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; word.len()];
        io.read_exact(&mut buf).await.unwrap();
        assert_eq!(buf, word.as_bytes());
    }
    f.unpair("ATM-1").await;
    let mut buf = [0u8; 8];
    let closed = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            match io.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the upgraded connection of an unpaired terminal stayed open"
    );
    f.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_headers_cannot_be_forged_and_each_request_has_an_id() {
    for (setting, expect) in [
        ("x-forwarded-for", Some(("x-forwarded-for", "127.0.0.1"))),
        ("forwarded", Some(("forwarded", "for=127.0.0.1"))),
        ("none", None),
    ] {
        let (url, _) = upstream().await;
        let f = Fixture::start(Db::Sqlite, |s| {
            s.upstream_url = url;
            s.proxy_forwarded = setting.into();
        })
        .await;
        let t = paired(&f, "ATM-1").await;
        let mut s = connect(&f, &t).await;
        let mut ids = Vec::new();
        for _ in 0..2 {
            let mut req = request("GET", "/app/echo", empty());
            for (name, value) in [
                // Named in Connection, the forgery would be dropped as a
                // hop-by-hop header: ours must still be there, once.
                (
                    "connection",
                    "X-Pairgate-Terminal-Serial, x_pairgate_request_id",
                ),
                ("x-pairgate-terminal-serial", "ATM-666"),
                ("x_pairgate_request_id", "forged"),
                ("x-pairgate-request-id", "forged"),
                ("forwarded", "for=6.6.6.6"),
                ("x-forwarded-for", "6.6.6.6"),
            ] {
                req.headers_mut().append(name, value.parse().unwrap());
            }
            let (status, headers, body) = call(&mut s, req).await;
            assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
            let seen: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(
                seen["x-pairgate-terminal-serial"],
                serde_json::json!(["ATM-1"])
            );
            let id = headers["x-pairgate-request-id"]
                .to_str()
                .unwrap()
                .to_owned();
            assert_eq!(seen["x-pairgate-request-id"], serde_json::json!([id]));
            assert!(seen.get("x_pairgate_request_id").is_none(), "{seen}");
            ids.push(id);
            for name in ["forwarded", "x-forwarded-for"] {
                match expect {
                    Some((n, v)) if n == name => {
                        assert_eq!(seen[name], serde_json::json!([v]), "{setting}: {seen}");
                    }
                    _ => assert!(seen.get(name).is_none(), "{setting}: {seen}"),
                }
            }
        }
        assert_ne!(ids[0], ids[1]);
        assert_eq!(ids[0].len(), 32);
        f.server.shutdown().await;
    }
}

/// An upstream over TLS with a certificate for localhost: its SPKI pin,
/// and the URL to reach it.
async fn tls_upstream() -> (String, pairgate_pki::SpkiPin) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let pin = pairgate_pki::SpkiPin::of_certificate(cert.der()).unwrap();
    let config =
        rustls::ServerConfig::builder_with_provider(pairgate_tls::TlsPolicy::default().provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "https://localhost:{}/base",
        listener.local_addr().unwrap().port()
    );
    let seen = Arc::new(Seen::default());
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let (acceptor, seen) = (acceptor.clone(), seen.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |req| answer(req, seen.clone()));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (url, pin)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_upstream_is_held_to_its_pin() {
    let (url, pin) = tls_upstream().await;
    let f = Fixture::start(Db::Sqlite, |s| {
        s.upstream_url = url.clone();
        s.upstream_pin = pin.to_hex();
    })
    .await;
    let t = paired(&f, "ATM-1").await;
    let mut s = connect(&f, &t).await;
    let (status, _, body) = call(&mut s, request("GET", "/app/echo", empty())).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    f.server.shutdown().await;
    let f = Fixture::start(Db::Sqlite, |s| {
        s.upstream_url = url;
        s.upstream_pin = "ab".repeat(32);
    })
    .await;
    let t = paired(&f, "ATM-1").await;
    let mut s = connect(&f, &t).await;
    let (status, _, body) = call(&mut s, request("GET", "/app/echo", empty())).await;
    assert_eq!((status, error_code(&body).as_str()), (502, "PG-UPSTREAM"));
    f.server.shutdown().await;
}
