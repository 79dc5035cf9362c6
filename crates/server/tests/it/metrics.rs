//! The observability listener: `/metrics` counts what the services did,
//! `/healthz` answers while the process lives, and `/readyz` follows the
//! store.

use std::time::Duration;

use pairgate_tls::client::ServerTrust;

use crate::master::paired;
use crate::support::{Db, Fixture, Outage, TestTerminal, eventually, get};
use crate::web::Web;

/// The value of the sample written exactly as `series`, if any.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

async fn scrape(f: &Fixture) -> String {
    let r = Web::new(f.server.metrics_addr.unwrap())
        .get("/metrics")
        .await;
    assert_eq!(r.status, 200);
    r.body
}

async fn metrics_count_requests_handshakes_and_the_paired_set(db: Db) {
    let f = Fixture::start(db, |_| {}).await;
    let mut web = Web::new(f.server.metrics_addr.unwrap());
    assert_eq!(web.get("/healthz").await.status, 200);
    assert_eq!(web.get("/readyz").await.status, 200);
    let terminal = paired(&f, "ATM-M").await;
    let client = terminal.https(ServerTrust::Pins(vec![f.server.pin]));
    for _ in 0..3 {
        assert_eq!(get(&client, &f.master("/v1/me")).await.status, 200);
    }
    let stranger = TestTerminal::new("stranger").https(ServerTrust::Pins(vec![f.server.pin]));
    assert_eq!(get(&stranger, &f.master("/v1/me")).await.status, 403);
    assert_eq!(get(&stranger, &f.master("/nothing")).await.status, 403);
    let text = scrape(&f).await;
    let me = r#"pairgate_http_requests_total{service="master",route="/v1/me",status="#;
    assert_eq!(
        sample(&text, &format!("{me}\"200\"}}")),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, &format!("{me}\"403\"}}")),
        Some(1.0),
        "{text}"
    );
    let count = r#"pairgate_http_request_duration_seconds_count{service="master",route="/v1/me"}"#;
    assert_eq!(sample(&text, count), Some(4.0), "{text}");
    // The pairing went through the gate's routes.
    assert!(
        text.contains(
            r#"pairgate_http_requests_total{service="gate",route="/v1/pairing",status="202"}"#
        ),
        "{text}"
    );
    let full = r#"pairgate_tls_handshakes_total{service="master",outcome="full"}"#;
    assert!(sample(&text, full).unwrap() >= 1.0, "{text}");
    assert_eq!(sample(&text, "pairgate_paired_terminals"), Some(1.0));
    // The approval reached the set as one change, not a reload.
    assert_eq!(
        sample(&text, "pairgate_paired_reloads_total"),
        Some(1.0),
        "{text}"
    );
    assert!(
        sample(&text, "pairgate_paired_changes_total").unwrap() >= 1.0,
        "{text}"
    );
    assert!(sample(&text, "pairgate_paired_change_lag_seconds_count").unwrap() >= 1.0);
    assert!(sample(&text, "pairgate_paired_generation").unwrap() >= 1.0);
    assert_eq!(sample(&text, "pairgate_ready"), Some(1.0));
    assert_eq!(sample(&text, "pairgate_store_up"), Some(1.0));
    assert_eq!(sample(&text, "pairgate_pairing_requests_open"), Some(0.0));
    // The served certificate: self-signed here, valid for about 397 days.
    assert_eq!(
        sample(&text, "pairgate_server_certificate_operator_issued"),
        Some(0.0)
    );
    let not_after = sample(&text, "pairgate_server_certificate_not_after_seconds").unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let days_left = (not_after - now.as_secs_f64()) / 86_400.0;
    assert!(
        (396.0..=398.0).contains(&days_left),
        "{days_left} days left"
    );
    assert!(sample(&text, r#"pairgate_connections_open{service="master"}"#).is_some());
    // Nothing secret is on the page: no pin of a key, no fingerprint.
    assert!(!text.contains(&terminal.fingerprint.to_hex()));
    f.server.shutdown().await;
}

/// On PostgreSQL: while the database refuses connections, `/readyz` says
/// 503 and why; once it takes them again, 200.
async fn readiness_follows_the_store(db: Db) {
    let f = Fixture::start(db, |_| {}).await;
    let outage = Outage::of(&f).await;
    outage.reachable(false).await;
    let addr = f.server.metrics_addr.unwrap();
    let status = async || Web::new(addr).get("/readyz").await;
    assert!(
        eventually(Duration::from_secs(10), async || status().await.status
            == 503)
        .await
    );
    let r = status().await;
    assert!(r.body.contains("store"), "{}", r.body);
    assert_eq!(Web::new(addr).get("/healthz").await.status, 200);
    outage.reachable(true).await;
    assert!(
        eventually(Duration::from_secs(15), async || status().await.status
            == 200)
        .await
    );
    f.server.shutdown().await;
}

crate::on_both_databases!(metrics_count_requests_handshakes_and_the_paired_set);

mod postgres_only {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn readiness_follows_the_store() {
        super::readiness_follows_the_store(crate::support::Db::Postgres).await;
    }
}
