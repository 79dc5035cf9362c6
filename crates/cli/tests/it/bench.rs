//! `pairgate bench tls` runs every case against a real loopback server and
//! reports the OpenSSL ceiling beside it.

use pairgate_testkit::temp_dir;

use crate::support::{json, ok};

#[test]
fn bench_tls_reports_every_case_and_the_ceiling() {
    let dir = temp_dir();
    let report = json(&ok(
        dir.path(),
        &[
            "bench",
            "tls",
            "--duration",
            "200ms",
            "--concurrency",
            "2",
            "--json",
        ],
    ));
    let cases = report["cases"].as_array().unwrap();
    let names: Vec<&str> = cases.iter().map(|c| c["case"].as_str().unwrap()).collect();
    for expected in [
        "full mTLS TLS 1.3, software key",
        "resumed mTLS TLS 1.3, software key",
        "full mTLS TLS 1.3, PKCS#11 key",
        "full mTLS TLS 1.2, software key",
        "resumed mTLS TLS 1.2, software key",
        "full mTLS TLS 1.2, PKCS#11 key",
    ] {
        assert!(names.contains(&expected), "missing {expected}: {names:?}");
    }
    for case in cases {
        assert!(case["handshakes"].as_u64().unwrap() > 0, "{case}");
        assert_eq!(case["errors"], 0, "{case}");
        let name = case["case"].as_str().unwrap();
        if name.starts_with("resumed") {
            assert!(
                case["resumed"].as_u64().unwrap() * 2 > case["handshakes"].as_u64().unwrap(),
                "{case}"
            );
        } else {
            assert_eq!(case["resumed"], 0, "{case}");
            assert!(
                case["fraction_of_crypto_ceiling"].as_f64().unwrap() > 0.0,
                "{case}"
            );
        }
    }
    assert!(
        report["crypto_ceiling_full_handshakes_per_cpu_second"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    assert!(
        report["openssl_speed"]["ecdsap256_sign_per_s"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    assert!(
        crate::support::fails(dir.path(), &["bench", "tls", "--duration", "10parsecs"])
            .contains("unknown unit")
    );
}

/// `pairgate bench all` in miniature: it starts pairgate, nginx and a
/// PostgreSQL cluster itself, pairs its fleet through the real protocol,
/// and reports every figure with no failed operation. Figures are not
/// asserted (a test must not depend on the machine's speed); that each
/// case ran, negotiated what it should and failed nowhere is.
#[test]
fn bench_all_runs_every_case_against_pairgate_and_nginx() {
    let dir = temp_dir();
    let report = json(&ok(
        dir.path(),
        &[
            "bench",
            "all",
            "--duration",
            "300ms",
            "--concurrency",
            "4",
            "--connections",
            "8",
            "--idle",
            "100",
            "--gate-terminals",
            "16",
            "--rounds",
            "3",
            "--sustained",
            "500ms",
            "--json",
        ],
    ));
    let runs = [
        ("proxy", "pairgate"),
        ("proxy", "nginx"),
        ("full_handshake", "pairgate"),
        ("full_handshake", "pairgate_x25519"),
        ("full_handshake", "nginx"),
        ("resumed_handshake", "pairgate"),
        ("resumed_handshake", "nginx"),
        ("kept_alive", "pairgate"),
        ("kept_alive", "nginx"),
    ];
    for (case, server) in runs {
        let run = &report[case][server];
        assert!(run["ok"].as_u64().unwrap() > 0, "{case} {server}: {run}");
        assert_eq!(run["errors"], 0, "{case} {server}: {run}");
        assert!(run["per_second"].as_f64().unwrap() > 0.0, "{case} {server}");
    }
    // The sustained proxy run served without an error, and its pooled
    // upstream connections left (next to) nothing in TIME_WAIT.
    let sustained = &report["proxy_sustained"];
    assert!(sustained["run"]["ok"].as_u64().unwrap() > 0, "{sustained}");
    assert_eq!(sustained["run"]["errors"], 0, "{sustained}");
    let time_wait = &sustained["time_wait_towards_upstream"];
    assert!(
        time_wait["pairgate_after_sustained"].as_u64().unwrap() < 64,
        "{sustained}"
    );
    let negotiated = |case: &str, server: &str| {
        report[case][server]["negotiated"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    // The terminal's default policy gets the post-quantum hybrid from
    // pairgate; nginx (OpenSSL 3.0) and the X25519 row use X25519.
    assert!(negotiated("full_handshake", "pairgate").starts_with("X25519MLKEM768,"));
    assert!(negotiated("full_handshake", "pairgate_x25519").starts_with("X25519,"));
    assert!(negotiated("full_handshake", "nginx").starts_with("X25519,"));
    for server in ["pairgate", "nginx"] {
        assert!(negotiated("full_handshake", server).ends_with("TLS13_AES_128_GCM_SHA256"));
        let full = &report["full_handshake"][server];
        assert_eq!(full["resumed"], 0, "{full}");
        let resumed = &report["resumed_handshake"][server];
        assert!(
            resumed["resumed"].as_u64().unwrap() * 2 > resumed["ok"].as_u64().unwrap(),
            "{server}: {resumed}"
        );
        let kept = &report["kept_alive"][server];
        assert!(kept["p99_ms"].as_f64().unwrap() >= kept["p50_ms"].as_f64().unwrap());
        let idle = &report["idle"][server];
        assert_eq!(idle["connections"], 100, "{idle}");
        assert_eq!(idle["errors"], 0, "{idle}");
        assert!(
            idle["rss_before_bytes"].as_u64().unwrap() > 1024 * 1024,
            "{idle}"
        );
        // The server's CPU time is read: the figures are per server CPU-second.
        let kept = &report["kept_alive"][server];
        assert!(kept["server_cpu_seconds"].as_f64().unwrap() > 0.0, "{kept}");
        assert!(
            kept["per_server_cpu_second"].as_f64().unwrap() > 0.0,
            "{kept}"
        );
    }
    let gate = &report["gate_pairing"];
    assert!(gate["ok"].as_u64().unwrap() > 0, "{gate}");
    assert_eq!(gate["errors"], 0, "{gate}");
    let unpair = &report["unpair_to_reject"];
    assert_eq!(unpair["instances"], 2);
    for kind in ["kept_alive", "new", "resumed"] {
        let latency = &unpair["latency"][kind];
        // Every loop on both instances was refused, none timed out.
        assert_eq!(latency["samples"], 6, "{kind}: {latency}");
        assert_eq!(latency["timeouts"], 0, "{kind}: {latency}");
        assert!(latency["max_ms"].as_f64().unwrap() < 10_000.0, "{latency}");
    }
    assert!(
        unpair["latency"]["resumed_handshakes"].as_u64().unwrap() > 0,
        "the resumed loops never resumed: {unpair}"
    );
    assert!(
        report["crypto_ceiling_full_handshakes_per_server_cpu_second"]
            .as_f64()
            .unwrap()
            > 0.0
    );
}

#[test]
fn bench_all_refuses_what_it_cannot_hold() {
    let dir = temp_dir();
    let err = crate::support::fails(dir.path(), &["bench", "all", "--idle", "1000000"]);
    assert!(err.contains("open files"), "{err}");
    let err = crate::support::fails(dir.path(), &["bench", "all", "--rounds", "0"]);
    assert!(err.contains("at least 1"), "{err}");
}

/// `pairgate bench hostile` in miniature: the genuine terminal is served
/// in both phases with no error, every attack ran and was answered as the
/// bounds say, and the server's rows stayed bounded.
#[test]
fn bench_hostile_serves_the_genuine_terminal_beside_the_attack() {
    let dir = temp_dir();
    let report = json(&ok(
        dir.path(),
        &[
            "bench",
            "hostile",
            "--duration",
            "1s",
            "--slow",
            "300",
            "--json",
        ],
    ));
    for phase in ["quiet", "under_attack"] {
        let p = &report[phase];
        assert!(p["kept_alive_requests"].as_u64().unwrap() > 10, "{report}");
        assert!(p["new_connections"].as_u64().unwrap() > 2, "{report}");
        assert_eq!(p["errors"], 0, "{report}");
        assert!(p["kept_alive_p99_ms"].as_f64().unwrap() > 0.0, "{report}");
    }
    assert!(report["kept_alive_p99_ratio"].as_f64().unwrap() > 0.0);
    let answers = report["attack_answers"].as_object().unwrap();
    let count = |key: &str| answers.get(key).and_then(|v| v.as_u64()).unwrap_or(0);
    assert!(count("gate unknown serial: 429") > 0, "{report}");
    assert!(count("gate supersede: 429") > 0, "{report}");
    assert!(count("cas login: 429") > 0, "{report}");
    assert!(
        count("gate big certificate: handshake refused") + count("gate big certificate: closed")
            > 0,
        "{report}"
    );
    assert_eq!(count("gate big certificate: 500"), 0);
    let before = report["server_before"]["pairing_requests"]
        .as_u64()
        .unwrap();
    let during = report["server_under_attack"]["pairing_requests"]
        .as_u64()
        .unwrap();
    assert!(during <= before + 12, "{report}");
    assert!(report["server_under_attack"]["rss_bytes"].as_u64().unwrap() > 0);
}

/// `pairgate bench audit` in miniature: the view checks only the newest
/// run, finds the log intact, and reports both figures.
#[test]
fn bench_audit_reports_the_view_beside_the_whole_chain() {
    let dir = temp_dir();
    let report = json(&ok(
        dir.path(),
        &[
            "bench",
            "audit",
            "--records",
            "2500",
            "--every",
            "500",
            "--views",
            "3",
            "--json",
        ],
    ));
    assert_eq!(report["checkpoints"], 4, "{report}");
    // The newest signed run (500) and the open tail (500).
    assert_eq!(report["view_checked_records"], 1000, "{report}");
    assert!(report["view_p50_ms"].as_f64().unwrap() > 0.0, "{report}");
    assert!(
        report["whole_chain_rehash_ms"].as_f64().unwrap() > 0.0,
        "{report}"
    );
    let err = crate::support::fails(dir.path(), &["bench", "audit", "--views", "0"]);
    assert!(err.contains("at least 1"), "{err}");
}

#[test]
fn bench_onboard_pairs_every_manifest_terminal_and_reports_the_peer() {
    let dir = temp_dir();
    let report = json(&ok(
        dir.path(),
        &[
            "bench",
            "onboard",
            "--terminals",
            "20",
            "--concurrency",
            "4",
            "--json",
        ],
    ));
    assert_eq!(report["pairing"]["done"], 20, "{report}");
    assert!(report["pairing"]["first_error"].is_null(), "{report}");
    assert_eq!(report["peer_new_connections"]["done"], 20, "{report}");
    assert!(
        report["pairing"]["per_second"].as_f64().unwrap() > 0.0,
        "{report}"
    );
    assert!(
        report["connections_per_pairing"].as_f64().unwrap() > 0.0,
        "{report}"
    );
}

#[test]
fn bench_fleet_times_the_dashboard_beside_the_one_before() {
    let dir = temp_dir();
    let report = json(&ok(
        dir.path(),
        &[
            "bench",
            "fleet",
            "--terminals",
            "300",
            "--views",
            "2",
            "--json",
        ],
    ));
    assert_eq!(report["terminals"], 300, "{report}");
    // Terminals 7 (every 10,000th from 7) is a suspected clone.
    assert!(report["alerts"].as_u64().unwrap() >= 1, "{report}");
    assert!(
        report["fleet_view_p50_ms"].as_f64().unwrap() > 0.0,
        "{report}"
    );
    assert!(
        report["peer_dashboard_p50_ms"].as_f64().unwrap() > 0.0,
        "{report}"
    );
}

/// `bench idle` in miniature: 300 terminals over two masters and two
/// client processes, every one held, and every one back after the
/// masters restart.
#[test]
fn bench_idle_holds_every_terminal_and_reconnects_them_after_a_restart() {
    let dir = temp_dir();
    let report = json(&ok(
        dir.path(),
        &[
            "bench",
            "idle",
            "--terminals",
            "300",
            "--masters",
            "2",
            "--json",
        ],
    ));
    assert_eq!(report["held"], 300.0, "{report}");
    assert_eq!(report["restart"]["held_again"], 300.0, "{report}");
    // A figure at any size (too few connections here for a real one).
    assert!(
        report["master_kib_per_connection"].as_f64().is_some(),
        "{report}"
    );
    assert!(
        report["restart"]["all_reconnected_seconds"]
            .as_f64()
            .unwrap()
            > 0.0,
        "{report}"
    );
}
