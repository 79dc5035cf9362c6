//! Fuzz targets (stable harness, `pairgate_testkit::fuzz`) for what the
//! server parses from outside: gate and master request bodies, paths and
//! queries, sent to a running server over kept-alive mutual TLS, and the
//! CAS CSV import. The server must answer every request with a JSON
//! answer below 500 and keep serving; the import must give every row a
//! verdict.

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use pairgate_pki::Nonce;
use pairgate_testkit::fuzz::{config, inputs};
use pairgate_tls::client::ServerTrust;
use proptest::prelude::*;

use crate::support::{Db, Fixture, TestTerminal};

/// One kept-alive connection, opened again when the server closes it.
struct Conn {
    client: pairgate_tls::client::TlsClient,
    addr: String,
    sender: Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>>,
}

impl Conn {
    async fn send(&mut self, method: &str, path: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            let stream = self.client.connect(&self.addr, None).await.unwrap();
            let (sender, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                    .await
                    .unwrap();
            tokio::spawn(conn);
            self.sender = Some(sender);
        }
        let sender = self.sender.as_mut().unwrap();
        sender.ready().await.unwrap();
        let request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "pairgate")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        (status, body)
    }
}

/// Printable paths from fuzzed bytes (the URI parser refuses the rest
/// before any server could see them).
fn path_from(prefix: &str, bytes: &[u8]) -> String {
    let tail: String = bytes
        .iter()
        .map(|b| match b {
            b'!'..=b'~' if *b != b'#' => char::from(*b),
            _ => '%',
        })
        .take(200)
        .collect();
    format!("{prefix}{tail}")
}

fn json_answer(status: u16, body: &[u8]) -> Result<(), TestCaseError> {
    prop_assert!(status < 500, "{status} {}", String::from_utf8_lossy(body));
    prop_assert!(
        serde_json::from_slice::<serde_json::Value>(body).is_ok(),
        "{status} {}",
        String::from_utf8_lossy(body)
    );
    Ok(())
}

async fn gate_and_master_bodies(db: Db) {
    let f = Fixture::start(db, |s| {
        s.unknown_serial_per_minute = 1_000_000;
        s.unknown_serial_per_address_per_minute = 1_000_000;
        s.upstream_url = "http://127.0.0.1:9/base".into();
    })
    .await;
    let t = crate::master::paired(&f, "ATM-1").await;
    let pins = ServerTrust::Pins(vec![f.server.pin]);
    let runtime = tokio::runtime::Handle::current();
    let gate = std::cell::RefCell::new(Conn {
        client: TestTerminal::new("fuzz").tls(pins.clone()),
        addr: f.server.gate_addr.to_string(),
        sender: None,
    });
    let master = std::cell::RefCell::new(Conn {
        client: t.tls(pins),
        addr: f.server.master_addr.to_string(),
        sender: None,
    });
    let open = serde_json::json!({
        "serial": "ATM-1", "model": "X9", "firmware": "1.0",
        "commitment": Nonce::random().commitment().to_hex(),
    });
    let seeds = vec![
        open.to_string().into_bytes(),
        serde_json::json!({ "terminal_nonce": Nonce::random().to_hex() })
            .to_string()
            .into_bytes(),
        br#"{"firmware": "2.1"}"#.to_vec(),
        b"/v1/pairing/0123456789abcdef0123456789abcdef?wait=1".to_vec(),
        b"/orders/7?x=1".to_vec(),
    ];
    let sent = std::cell::Cell::new(0u32);
    tokio::task::block_in_place(|| {
        proptest!(config(), |(input in inputs(seeds.clone()), pick in 0..6u8)| {
            let (conn, method, path, body) = match pick {
                0 => (&gate, "POST", "/v1/pairing".to_owned(), input.clone()),
                1 => (&gate, "POST", "/v1/pairing/0123456789abcdef0123456789abcdef/reveal".to_owned(), input.clone()),
                2 => (&gate, "GET", path_from("/v1/pairing/", &input), Vec::new()),
                3 => (&master, "POST", "/v1/heartbeat".to_owned(), input.clone()),
                4 => (&master, "GET", path_from("/v1/", &input), Vec::new()),
                _ => (&master, "POST", path_from("/app/", &input), input.clone()),
            };
            if path.parse::<hyper::Uri>().is_err() {
                return Ok(());
            }
            let (status, answer) = runtime.block_on(conn.borrow_mut().send(method, &path, body));
            sent.set(sent.get() + 1);
            // The proxy's upstream is down: 502 is its JSON answer.
            if !(pick == 5 && status == 502) {
                json_answer(status, &answer)?;
            }
        });
    });
    assert!(
        sent.get() >= pairgate_testkit::fuzz::cases() / 2,
        "only {} requests sent",
        sent.get()
    );
    // Still serving.
    let (status, _) = master.into_inner().send("GET", "/v1/me", Vec::new()).await;
    assert_eq!(status, 200);
    f.server.shutdown().await;
}

#[test]
fn fuzz_csv_import() {
    let seeds = vec![
        b"serial,name,location,contact_name,contact_phone\nATM-1,Lobby,\"Main St 1, Prague\",Jana,+420 1\n".to_vec(),
        b"ATM-2,,,,\n\n\"ATM-3\",\"a \"\"quoted\"\" name\"\n".to_vec(),
    ];
    proptest!(config(), |(input in inputs(seeds.clone()))| {
        let rows = pairgate_server::cas::parse_import(&input);
        let mut last = 0;
        for (row, verdict) in &rows {
            prop_assert!(*row > last, "rows in order: {rows:?}");
            last = *row;
            if let Ok(t) = verdict {
                prop_assert!(t.serial.len() <= input.len());
            }
        }
    });
}

crate::on_both_databases!(gate_and_master_bodies);
