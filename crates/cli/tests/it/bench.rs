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
