//! The fleet view in a real headless Chromium: a few hundred terminals
//! onboarded by a signed manifest and paired through the gate, heartbeats
//! with several firmware versions, suspected clones (one suspended), a
//! manifest-key mismatch and repeated wrong codes; the dashboard's alerts
//! and SVG charts show them, the vendors page lists the manifest, and an
//! admin resumes a suspended terminal from its page with a TOTP.
//! Screenshots land in `$PAIRGATE_TEST_ARTIFACTS/cas/fleet/`.

use std::time::SystemTime;

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use fantoccini::Locator;
use futures_util::future::join_all;
use pairgate_pki::{SpkiPin, VendorKey};
use pairgate_store::{AdminAction, Changer, CloneAction, Serial};
use pairgate_tls::client::ServerTrust;

use crate::browser::{Shots, artifacts, body, browser, driver, fill, first_admin, submit, text};
use crate::support::{Db, Fixture, Operator, TestTerminal, post};

/// Terminals in the manifest; all but the last few pair.
const FLEET: usize = 240;

/// Imports a signed manifest of `terminals` as vendor `acme`.
async fn manifest(f: &Fixture, terminals: &[(String, TestTerminal)]) {
    let vendor = Ed25519KeyPair::generate().unwrap();
    let key = VendorKey::ed25519(vendor.public_key().as_ref()).unwrap();
    let now = SystemTime::now();
    f.store
        .add_vendor("acme", &key, &AdminAction::local("admin"), now)
        .await
        .unwrap();
    let list: Vec<_> = terminals
        .iter()
        .map(|(serial, t)| {
            let pin = SpkiPin::of_certificate(&t.key.cert[0]).unwrap();
            serde_json::json!({ "serial": serial, "model": "X9", "spki_pin": pin.to_hex() })
        })
        .collect();
    let file = serde_json::to_vec(&serde_json::json!({
        "version": 1, "manifest_id": "acme-fleet", "vendor": "acme",
        "issued_at": "2026-11-30T10:00:00Z", "terminals": list,
    }))
    .unwrap();
    let sig = vendor.sign(&file);
    f.store
        .import_signed_manifest(&file, sig.as_ref(), &Changer::local("admin"), now)
        .await
        .unwrap();
}

/// The fleet: paired by rule, heartbeats with firmware versions, two
/// suspected clones (one suspended), one manifest-key mismatch, and a
/// terminal with two wrong codes typed for it.
async fn fleet(f: &Fixture) {
    let terminals: Vec<(String, TestTerminal)> = (0..FLEET)
        .map(|i| {
            let serial = format!("ATM-{i:04}");
            let t = TestTerminal::new(&serial);
            (serial, t)
        })
        .collect();
    manifest(f, &terminals).await;
    let gate = f.gate("");
    for chunk in terminals[..FLEET - 10].chunks(16) {
        join_all(
            chunk
                .iter()
                .map(|(serial, t)| t.start_pairing(&gate, serial)),
        )
        .await;
    }
    for (i, (_, t)) in terminals[..120].iter().enumerate() {
        let https = t.https(ServerTrust::Pins(vec![f.server.pin]));
        let firmware = ["2.4.1", "2.4.1", "2.5.0", "2.3.9"][i % 4];
        post(
            &https,
            &f.master("/v1/heartbeat"),
            &serde_json::json!({ "firmware": firmware }),
        )
        .await;
    }
    for (serial, action) in [
        ("ATM-0007", CloneAction::Alert),
        ("ATM-0011", CloneAction::Suspend),
    ] {
        let t = &terminals.iter().find(|(s, _)| s == serial).unwrap().1;
        let evidence = serde_json::json!({
            "reason": "live connections from two addresses at once",
            "address": "198.51.100.7", "other_addresses": ["203.0.113.9"],
        });
        f.store
            .suspect_clone(&t.fingerprint, &evidence, action, SystemTime::now())
            .await
            .unwrap();
    }
    // A listed serial asking with another key.
    let impostor = TestTerminal::new("ATM-0235");
    impostor.start_pairing(&gate, &terminals[FLEET - 5].0).await;
    // A terminal outside any manifest, and two wrong codes for it.
    f.register("KIOSK-1").await;
    let kiosk = TestTerminal::new("KIOSK-1");
    let p = kiosk.start_pairing(&gate, "KIOSK-1").await;
    let mut olga = Operator::create(&f.store, "olga").await;
    for wrong in ["0000-0001", "0000-0002"] {
        let _ = olga.approve(&f.store, &p.id, wrong.parse().unwrap()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_view_shows_a_few_hundred_terminals_in_chromium() {
    let f = Fixture::start(Db::Sqlite, |_| {}).await;
    fleet(&f).await;
    let base = f.server.cas_url.clone();
    let password = f
        .server
        .first_run_password
        .as_ref()
        .unwrap()
        .reveal()
        .to_owned();
    let driver = driver().await;
    let c = browser(&driver).await;
    let mut shots = Shots::new(artifacts().join("fleet"));
    let mut app = first_admin(&c, &base, &password, &mut shots).await;

    c.goto(&format!("{base}/")).await.unwrap();
    let alerts = text(&c, "#alerts").await;
    for expected in [
        "suspected clone",
        "ATM-0007",
        "ATM-0011",
        "manifest key mismatch",
        "ATM-0235",
        "wrong codes",
        "KIOSK-1",
    ] {
        assert!(
            alerts.contains(expected),
            "{expected} missing from the alerts:\n{alerts}"
        );
    }
    for chart in [
        "#chart-days svg rect",
        "#chart-last-seen svg rect",
        "#chart-models svg rect",
        "#chart-firmware svg rect",
    ] {
        c.find(Locator::Css(chart))
            .await
            .unwrap_or_else(|_| panic!("no {chart}"));
    }
    let firmware = text(&c, "#chart-firmware").await;
    assert!(
        firmware.contains("2.4.1") && firmware.contains("60"),
        "{firmware}"
    );
    shots.take(&c, "fleet-dashboard").await;

    c.goto(&format!("{base}/vendors")).await.unwrap();
    assert!(text(&c, "#manifests").await.contains("acme-fleet"));
    assert!(text(&c, "#vendors").await.contains("acme"));
    shots.take(&c, "vendors").await;

    // The terminals table filtered by the alert.
    c.goto(&format!("{base}/terminals?state=suspected_clone"))
        .await
        .unwrap();
    let listed = text(&c, "#terminals").await;
    assert!(
        listed.contains("ATM-0007") && listed.contains("ATM-0011"),
        "{listed}"
    );
    assert!(!listed.contains("ATM-0008"), "{listed}");
    shots.take(&c, "suspected-clones").await;

    // The suspended clone: its evidence, and an admin resumes it.
    c.goto(&format!("{base}/terminals/ATM-0011")).await.unwrap();
    assert!(text(&c, "#terminal-state").await.contains("suspended"));
    assert!(text(&c, "#clone-evidence").await.contains("203.0.113.9"));
    shots.take(&c, "suspected-clone").await;
    fill(&c, "totp", &app.fresh().await).await;
    submit(&c, "form[action='/terminals/ATM-0011/resume']").await;
    assert!(body(&c).await.contains("Resumed."));
    assert!(text(&c, "#terminal-state").await.starts_with("paired"));
    shots.take(&c, "resumed").await;
    let t = f
        .store
        .terminal(&Serial::new("ATM-0011").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(t.suspended_at.is_none() && !t.suspected_clone);

    c.close().await.unwrap();
    f.server.shutdown().await;
}
