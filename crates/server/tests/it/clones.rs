//! Clone detection and suspension at the master: one identity on live
//! connections from 127.0.0.2 and 127.0.0.3 at once marks the terminal
//! `suspected_clone` with both addresses; with `clone_action = "suspend"`
//! the master refuses both copies and closes their connections until an
//! operator resumes it with a fresh TOTP; a heartbeat counter that does
//! not rise raises the same suspicion.

use std::time::Duration;

use pairgate_store::{Role, Serial};
use pairgate_tls::client::ServerTrust;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::accounts::{on_manual_clock, with_token};
use crate::master::paired;
use crate::support::{Db, Fixture, TestTerminal, assert_error, eventually, get, json, post};
use crate::web::Web;

/// A kept-alive master connection of `terminal` from `source`, after one
/// `GET /v1/me` answered 200.
async fn held(f: &Fixture, terminal: &TestTerminal, source: &str) -> TlsStream<TcpStream> {
    let (s, head) = connect(f, terminal, source).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    s
}

/// A master connection of `terminal` from `source` and the head of the
/// answer to its `GET /v1/me`.
async fn connect(
    f: &Fixture,
    terminal: &TestTerminal,
    source: &str,
) -> (TlsStream<TcpStream>, String) {
    let tls = terminal
        .tls(ServerTrust::Pins(vec![f.server.pin]))
        .from_source(source.parse().unwrap());
    let mut s = tls
        .connect(&f.server.master_addr.to_string(), Some("localhost"))
        .await
        .unwrap();
    s.write_all(b"GET /v1/me HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).into_owned();
    (s, head)
}

/// Whether the server closed `s` (end of stream or an error on read).
async fn closed(s: &mut TlsStream<TcpStream>) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

async fn suspected(f: &Fixture, serial: &str) -> serde_json::Value {
    let t = f
        .store
        .terminal(&Serial::new(serial).unwrap())
        .await
        .unwrap()
        .unwrap();
    serde_json::to_value(t.view()).unwrap()
}

async fn two_addresses_at_once_raise_an_alert(db: Db) {
    let f = Fixture::start(db, |_| {}).await;
    let terminal = paired(&f, "ATM-C1").await;
    let _first = held(&f, &terminal, "127.0.0.2").await;
    // The same address again is the same terminal, not a clone.
    let _again = held(&f, &terminal, "127.0.0.2").await;
    assert!(
        !suspected(&f, "ATM-C1").await["suspected_clone"]
            .as_bool()
            .unwrap()
    );
    let _second = held(&f, &terminal, "127.0.0.3").await;
    assert!(
        eventually(Duration::from_secs(2), async || suspected(&f, "ATM-C1")
            .await["suspected_clone"]
            == true)
        .await
    );
    let view = suspected(&f, "ATM-C1").await;
    assert_eq!(view["state"], "paired", "alert only: {view}");
    assert_eq!(view["clone_evidence"]["address"], "127.0.0.3", "{view}");
    assert_eq!(
        view["clone_evidence"]["other_addresses"][0], "127.0.0.2",
        "{view}"
    );
    let records = f.store.audit_records(1000).await.unwrap();
    assert_eq!(
        records
            .iter()
            .filter(|r| r.action == "terminal.suspected_clone" && r.subject == "ATM-C1")
            .count(),
        1
    );
    // Alert only: the master still serves it.
    let https = terminal.https(ServerTrust::Pins(vec![f.server.pin]));
    assert_eq!(get(&https, &f.master("/v1/me")).await.status, 200);
}

async fn with_suspension_both_copies_are_refused_until_resumed(db: Db) {
    let f = on_manual_clock(db, |s| s.clone_action = "suspend".into()).await;
    let terminal = paired(&f, "ATM-C2").await;
    let (mut admin, token) = with_token(&f, "boss", Role::Admin).await;
    let mut first = held(&f, &terminal, "127.0.0.2").await;
    // The copy's first request may already meet the suspension.
    let (mut second, _) = connect(&f, &terminal, "127.0.0.3").await;
    assert!(
        closed(&mut first).await,
        "the original's connection stayed open"
    );
    assert!(
        closed(&mut second).await,
        "the copy's connection stayed open"
    );
    let view = suspected(&f, "ATM-C2").await;
    assert_eq!(view["state"], "suspended", "{view}");
    assert_eq!(view["suspended_by"], "rule:clone", "{view}");
    for source in ["127.0.0.2", "127.0.0.3"] {
        let tls = terminal
            .tls(ServerTrust::Pins(vec![f.server.pin]))
            .without_resumption()
            .from_source(source.parse().unwrap());
        let https = pairgate_tls::https::HttpsClient::new(tls);
        assert_error(
            &get(&https, &f.master("/v1/me")).await,
            403,
            "PG-NOT-PAIRED",
        );
    }
    // Resuming needs a fresh TOTP.
    let web = Web::new(f.server.cas_addr);
    let r = web
        .api(
            "POST",
            "/terminals/ATM-C2/resume",
            Some(&token),
            Some(serde_json::json!({})),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = web
        .api(
            "POST",
            "/terminals/ATM-C2/resume",
            Some(&token),
            Some(serde_json::json!({ "totp": admin.fresh().await })),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["state"], "paired");
    assert_eq!(r.json()["suspected_clone"], false);
    let https = terminal.https(ServerTrust::Pins(vec![f.server.pin]));
    assert!(
        eventually(Duration::from_secs(2), async || get(
            &https,
            &f.master("/v1/me")
        )
        .await
        .status
            == 200)
        .await
    );
}

async fn a_heartbeat_counter_that_does_not_rise_is_a_clone(db: Db) {
    let f = Fixture::start(db, |_| {}).await;
    let terminal = paired(&f, "ATM-C3").await;
    let https = terminal.https(ServerTrust::Pins(vec![f.server.pin]));
    let beat = |counter: u64| serde_json::json!({ "firmware": "1.0", "counter": counter });
    for counter in [1, 2, 7] {
        let r = post(&https, &f.master("/v1/heartbeat"), &beat(counter)).await;
        assert_eq!(r.status, 200, "{}", json(&r));
    }
    assert!(
        !suspected(&f, "ATM-C3").await["suspected_clone"]
            .as_bool()
            .unwrap()
    );
    // A copy restored from a backup taken at 5.
    let r = post(&https, &f.master("/v1/heartbeat"), &beat(6)).await;
    assert_eq!(r.status, 200);
    assert!(
        eventually(Duration::from_secs(2), async || suspected(&f, "ATM-C3")
            .await["suspected_clone"]
            == true)
        .await
    );
    let view = suspected(&f, "ATM-C3").await;
    assert_eq!(view["clone_evidence"]["highest_counter"], 7, "{view}");
    assert_eq!(view["clone_evidence"]["counter"], 6, "{view}");
}

crate::on_both_databases!(
    two_addresses_at_once_raise_an_alert,
    with_suspension_both_copies_are_refused_until_resumed,
    a_heartbeat_counter_that_does_not_rise_is_a_clone,
);
