//! The written policy for a master that loses its store (docs/operations.md):
//! it serves the last known paired set for at most `stale_after_secs`,
//! then refuses every request with `503 PG-STORE-UNAVAILABLE` while
//! `/readyz` says why; when the store is back it serves again, and an
//! unpair made before it reconnected is honoured.

use std::time::Duration;

use pairgate_tls::client::ServerTrust;

use crate::master::paired;
use crate::support::{Db, Fixture, Outage, assert_error, eventually, get};
use crate::web::Web;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_without_its_store_serves_until_stale_then_refuses() {
    let f = Fixture::start(Db::Postgres, |s| {
        s.reconcile_secs = 1;
        s.stale_after_secs = 4;
    })
    .await;
    let t = paired(&f, "ATM-1").await;
    let client = t.https(ServerTrust::Pins(vec![f.server.pin]));
    let outage = Outage::of(&f).await;
    outage.reachable(false).await;
    // The last known set is served for a while: the outage is younger
    // than stale_after_secs.
    assert_eq!(get(&client, &f.master("/v1/me")).await.status, 200);
    let metrics = f.server.metrics_addr.unwrap();
    // Then every request is refused, and /readyz says why.
    assert!(
        eventually(Duration::from_secs(10), async || {
            get(&client, &f.master("/v1/me")).await.status == 503
        })
        .await,
        "the master kept serving without its store"
    );
    assert_error(
        &get(&client, &f.master("/v1/me")).await,
        503,
        "PG-STORE-UNAVAILABLE",
    );
    let ready = Web::new(metrics).get("/readyz").await;
    assert_eq!(ready.status, 503);
    assert!(ready.body.contains("stale"), "{}", ready.body);
    // The store comes back and, before the master has reconnected, the
    // terminal is unpaired elsewhere: the master must not serve it.
    outage.reachable(true).await;
    let mut store_back = None;
    for _ in 0..50 {
        match pairgate_server::open_store(&f.settings).await {
            Ok(store) => {
                store_back = Some(store);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let other = store_back.expect("the store did not come back");
    other
        .unpair(
            &pairgate_store::Serial::new("ATM-1").unwrap(),
            &pairgate_store::TrustChange::local("olga"),
            std::time::SystemTime::now(),
        )
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(15), async || {
            Web::new(metrics).get("/readyz").await.status == 200
        })
        .await,
        "the master did not become ready again"
    );
    assert_error(
        &get(&client, &f.master("/v1/me")).await,
        403,
        "PG-NOT-PAIRED",
    );
    f.server.shutdown().await;
}
