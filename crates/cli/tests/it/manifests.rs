//! Onboarding by manifest against a real server, with OpenSSL making the
//! vendor keys (Ed25519 and P-256), computing the terminals' SPKI pins and
//! signing the manifests: the import registers the terminals, a terminal
//! whose key matches pairs with no operator action, one whose key differs
//! is flagged and waits, a flipped byte imports nothing, a re-import
//! changes nothing, and a vendor key needs an admin's TOTP.

use std::path::Path;

use pairgate_testkit::{openssl, temp_dir};

use crate::support::{ServerProcess, fails, json, ok, terminal_json, totp_now};

/// A terminal identity in `cwd/NAME`; returns its SPKI pin as OpenSSL
/// computes it from the certificate.
fn terminal_pin(cwd: &Path, name: &str) -> String {
    terminal_json(cwd, name, &["init"]);
    let pem = ok(cwd, &["terminal", "--state", name, "keys", "cert"]);
    std::fs::write(cwd.join(format!("{name}.pem")), pem).unwrap();
    let pem = format!("{name}.pem");
    let public = format!("{name}.pub");
    let spki = format!("{name}.spki");
    openssl(
        cwd,
        &["x509", "-in", &pem, "-pubkey", "-noout", "-out", &public],
    );
    openssl(
        cwd,
        &[
            "pkey", "-pubin", "-in", &public, "-outform", "DER", "-out", &spki,
        ],
    );
    let digest = openssl(cwd, &["dgst", "-sha256", "-r", &spki]);
    digest.split_whitespace().next().unwrap().to_owned()
}

fn manifest(id: &str, vendor: &str, terminals: &[(&str, &str)]) -> String {
    let list: Vec<_> = terminals
        .iter()
        .map(|(serial, pin)| serde_json::json!({"serial": serial, "model": "X9", "spki_pin": pin}))
        .collect();
    serde_json::to_string_pretty(&serde_json::json!({
        "version": 1, "manifest_id": id, "vendor": vendor,
        "issued_at": "2026-11-30T10:00:00Z", "terminals": list,
    }))
    .unwrap()
}

#[test]
fn terminals_in_a_signed_manifest_pair_without_an_operator() {
    let dir = temp_dir();
    let cwd = dir.path();
    let server = ServerProcess::start(cwd, &cwd.join("server"), &["--gate-listen", "127.0.0.1:0"]);
    let ada = json(&server.admin(
        cwd,
        &["--json", "operator", "create", "ada", "--role", "admin"],
    ));
    let ada_uri = ada["totp_uri"].as_str().unwrap().to_owned();
    let olga = json(&server.admin(
        cwd,
        &["--json", "operator", "create", "olga", "--role", "operator"],
    ));
    let olga_uri = olga["totp_uri"].as_str().unwrap().to_owned();
    let data = server.data.display().to_string();
    let admin = |args: &[&str]| {
        let mut all = vec!["--json", "admin", "--data", data.as_str()];
        all.extend_from_slice(args);
        all.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()
    };
    let run = |args: Vec<String>| {
        json(&ok(
            cwd,
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
        ))
    };
    let refused =
        |args: Vec<String>| fails(cwd, &args.iter().map(String::as_str).collect::<Vec<_>>());

    openssl(
        cwd,
        &["genpkey", "-algorithm", "ed25519", "-out", "acme.key"],
    );
    openssl(
        cwd,
        &["pkey", "-in", "acme.key", "-pubout", "-out", "acme.pub"],
    );
    // Only an admin, with a fresh code, adds a vendor key.
    let err = refused(admin(&[
        "vendor",
        "add",
        "acme",
        "--key",
        "acme.pub",
        "--operator",
        "olga",
        "--totp",
        &totp_now(&olga_uri, 0),
    ]));
    assert!(err.contains("not an admin"), "{err}");
    let added = run(admin(&[
        "vendor",
        "add",
        "acme",
        "--key",
        "acme.pub",
        "--operator",
        "ada",
        "--totp",
        &totp_now(&ada_uri, 0),
    ]));
    assert_eq!(added["algorithm"], "ed25519");

    let pin_1 = terminal_pin(cwd, "t1");
    let _ = terminal_pin(cwd, "t2");
    let pin_3 = terminal_pin(cwd, "t3");
    // ATM-M2 is listed with t3's key; t2 will ask as ATM-M2.
    let text = manifest(
        "acme-2026-11",
        "acme",
        &[("ATM-M1", &pin_1), ("ATM-M2", &pin_3)],
    );
    std::fs::write(cwd.join("manifest.json"), &text).unwrap();
    openssl(
        cwd,
        &[
            "pkeyutl",
            "-sign",
            "-rawin",
            "-inkey",
            "acme.key",
            "-in",
            "manifest.json",
            "-out",
            "manifest.sig",
        ],
    );

    // One flipped byte: nothing imported, and it says why.
    std::fs::write(
        cwd.join("flipped.json"),
        text.replacen("ATM-M1", "ATM-N1", 1),
    )
    .unwrap();
    let err = refused(admin(&[
        "manifest",
        "import",
        "flipped.json",
        "--signature",
        "manifest.sig",
    ]));
    assert!(err.contains("signature does not verify"), "{err}");
    assert_eq!(run(admin(&["manifest", "list"])), serde_json::json!([]));
    let listed = run(admin(&["terminal", "list"]));
    assert_eq!(
        listed,
        serde_json::json!([]),
        "a refused import registered terminals"
    );

    let imported = run(admin(&[
        "manifest",
        "import",
        "manifest.json",
        "--signature",
        "manifest.sig",
    ]));
    assert_eq!(
        (
            imported["terminals"].as_u64(),
            imported["registered"].as_u64()
        ),
        (Some(2), Some(2))
    );
    let again = run(admin(&[
        "manifest",
        "import",
        "manifest.json",
        "--signature",
        "manifest.sig",
    ]));
    assert_eq!(again["unchanged"], true);

    // The matching terminal pairs with nobody approving.
    let paired = terminal_json(
        cwd,
        "t1",
        &[
            "pair",
            "--gate",
            &server.gate,
            "--serial",
            "ATM-M1",
            "--timeout",
            "30",
        ],
    );
    assert_eq!(paired["status"], "paired");
    let me = terminal_json(cwd, "t1", &["call", "GET", "/v1/me"]);
    assert_eq!(me["body"]["serial"], "ATM-M1");
    let audit = run(admin(&["audit", "--limit", "50"]));
    let approval = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["action"] == "pairing.approve")
        .unwrap();
    assert_eq!(approval["actor"], "rule:manifest");
    assert!(
        approval["detail"].to_string().contains("acme-2026-11"),
        "{approval}"
    );

    // Another key for a listed serial: flagged, and it waits for a person.
    let err = fails(
        cwd,
        &[
            "--json",
            "terminal",
            "--state",
            "t2",
            "pair",
            "--gate",
            &server.gate,
            "--serial",
            "ATM-M2",
            "--timeout",
            "2",
        ],
    );
    assert!(err.contains("still waiting"), "{err}");
    let pending = run(admin(&["requests", "--pending"]));
    let request = &pending.as_array().unwrap()[0];
    assert_eq!(
        (request["serial"].as_str(), request["flagged"].as_bool()),
        (Some("ATM-M2"), Some(true))
    );

    // A P-256 vendor, its manifest signed with `openssl dgst -sha256`.
    openssl(
        cwd,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "bolt.key",
        ],
    );
    openssl(
        cwd,
        &["pkey", "-in", "bolt.key", "-pubout", "-out", "bolt.pub"],
    );
    run(admin(&[
        "vendor",
        "add",
        "bolt",
        "--key",
        "bolt.pub",
        "--operator",
        "ada",
        "--totp",
        &totp_now(&ada_uri, 1),
    ]));
    let pin_4 = terminal_pin(cwd, "t4");
    std::fs::write(
        cwd.join("bolt.json"),
        manifest("bolt-1", "bolt", &[("BOLT-1", &pin_4)]),
    )
    .unwrap();
    openssl(
        cwd,
        &[
            "dgst",
            "-sha256",
            "-sign",
            "bolt.key",
            "-out",
            "bolt.sig",
            "bolt.json",
        ],
    );
    // acme's signature on bolt's manifest is not bolt's.
    let err = refused(admin(&[
        "manifest",
        "import",
        "bolt.json",
        "--signature",
        "manifest.sig",
    ]));
    assert!(
        err.contains("signature does not verify with vendor bolt"),
        "{err}"
    );
    run(admin(&[
        "manifest",
        "import",
        "bolt.json",
        "--signature",
        "bolt.sig",
    ]));
    let paired = terminal_json(
        cwd,
        "t4",
        &[
            "pair",
            "--gate",
            &server.gate,
            "--serial",
            "BOLT-1",
            "--timeout",
            "30",
        ],
    );
    assert_eq!(paired["status"], "paired");
    let vendors = run(admin(&["vendor", "list"]));
    assert_eq!(vendors.as_array().unwrap().len(), 2);
}
