//! `pairgate terminal`: keys, CSRs, certificates, fingerprint and trust
//! store, on the software store and on SoftHSM2.

use std::path::Path;

use pairgate_testkit::{OpensslCa, P256, openssl, temp_dir};

use crate::support::{fails, json, ok};

/// The whole CA-mode identity flow for one key store URI: generate, CSR,
/// CA signs, import, fingerprint, trust store.
fn identity_flow(d: &Path, keystore: &str) {
    let ks = ["terminal", "--keystore", keystore];
    let with =
        |rest: &[&str]| -> Vec<String> { ks.iter().chain(rest).map(|s| s.to_string()).collect() };
    let run = |rest: &[&str]| {
        ok(
            d,
            &with(rest).iter().map(String::as_str).collect::<Vec<_>>(),
        )
    };
    let run_fail = |rest: &[&str]| {
        fails(
            d,
            &with(rest).iter().map(String::as_str).collect::<Vec<_>>(),
        )
    };

    ok(
        d,
        &["ca", "init", "--dir", "ca", "--subject", "CN=Acquirer Root"],
    );
    for (alias, algorithm) in [("identity", "p256"), ("legacy", "rsa2048")] {
        let generated = json(&run(&[
            "keys",
            "generate",
            "--alias",
            alias,
            "--algorithm",
            algorithm,
            "--json",
        ]));
        assert_eq!(generated["algorithm"], algorithm);
        let csr = run(&[
            "keys",
            "csr",
            "--alias",
            alias,
            "--subject",
            "CN=ATM-0042, O=Operator",
        ]);
        std::fs::write(d.join(format!("{alias}.csr")), &csr).unwrap();
        let verify = pairgate_testkit::openssl_output(
            d,
            &["req", "-verify", "-noout", "-in", &format!("{alias}.csr")],
        );
        assert!(
            verify.status.success(),
            "{}",
            String::from_utf8_lossy(&verify.stderr)
        );
        let cert = ok(
            d,
            &["ca", "sign-csr", "--dir", "ca", &format!("{alias}.csr")],
        );
        std::fs::write(d.join(format!("{alias}.pem")), &cert).unwrap();
        let out = openssl(
            d,
            &["verify", "-CAfile", "ca/ca.pem", &format!("{alias}.pem")],
        );
        assert!(out.contains(": OK"), "{out}");
        run(&[
            "keys",
            "import-cert",
            "--alias",
            alias,
            &format!("{alias}.pem"),
        ]);

        let fp = json(&run(&["fingerprint", "--alias", alias, "--json"]));
        assert_eq!(fp["alias"], alias);
        let expected = pairgate_testkit::openssl_sha256_fingerprint(d, &format!("{alias}.pem"));
        assert_eq!(fp["fingerprint"], expected);
    }
    // A certificate for another key is refused and says why.
    let err = run_fail(&["keys", "import-cert", "--alias", "identity", "legacy.pem"]);
    assert!(err.contains("not the key of alias \"identity\""), "{err}");
    let listed = json(&run(&["keys", "list", "--json"]));
    assert_eq!(listed.as_array().unwrap().len(), 2);

    // Trust store: only what the firmware roots signed.
    let acquirer = OpensslCa::new(d, "acquirer");
    let stranger = OpensslCa::new(d, "stranger");
    let server = acquirer.issue("server", P256, "sha256");
    let roots = acquirer.cert_path();
    let roots = roots.to_str().unwrap();
    let err = run_fail(&["trust", "add", server.to_str().unwrap()]);
    assert!(err.contains("--firmware-roots"), "{err}");
    let added = json(&run(&[
        "trust",
        "add",
        server.to_str().unwrap(),
        "--firmware-roots",
        roots,
        "--json",
    ]));
    let fingerprint = added["certificate"]["fingerprint"]
        .as_str()
        .unwrap()
        .to_owned();
    let foreign = stranger.issue("foreign", P256, "sha256");
    let err = run_fail(&[
        "trust",
        "add",
        foreign.to_str().unwrap(),
        "--firmware-roots",
        roots,
    ]);
    assert!(err.contains("not signed by any firmware root"), "{err}");
    // Issue 13, finding 10: the reason once, not once per error layer.
    assert_eq!(
        err.matches("not signed by any firmware root").count(),
        1,
        "{err}"
    );
    let sha1 = acquirer.issue("sha1", P256, "sha1");
    let err = run_fail(&[
        "trust",
        "add",
        sha1.to_str().unwrap(),
        "--firmware-roots",
        roots,
    ]);
    assert!(err.contains("SHA-1"), "{err}");
    let list = json(&run(&["trust", "list", "--json"]));
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["fingerprint"], fingerprint.as_str());
    run(&["trust", "remove", &fingerprint]);
    assert!(run(&["trust", "list"]).contains("empty"));
}

#[test]
fn identity_flow_on_the_software_store() {
    let dir = temp_dir();
    let keystore = format!("file:{}", dir.path().join("state/keys").display());
    identity_flow(dir.path(), &keystore);
    // The passphrase matters and never comes from an argument.
    let err = crate::support::pairgate(
        dir.path(),
        &["terminal", "--keystore", &keystore, "keys", "list"],
    );
    assert!(err.status.success());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pairgate"))
        .args(["terminal", "--keystore", &keystore, "keys", "list"])
        .env("PAIRGATE_KEYSTORE_PASSPHRASE", "wrong")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrong passphrase"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pairgate"))
        .args(["terminal", "--keystore", &keystore, "keys", "list"])
        .env_remove("PAIRGATE_KEYSTORE_PASSPHRASE")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("PAIRGATE_KEYSTORE_PASSPHRASE"));
    assert!(
        !fails(
            dir.path(),
            &[
                "terminal",
                "--keystore",
                &keystore,
                "--passphrase",
                "x",
                "keys",
                "list"
            ]
        )
        .is_empty()
    );
}

#[test]
fn state_directory_defaults_the_software_store() {
    let dir = temp_dir();
    let d = dir.path();
    let pass = d.join("pass");
    std::fs::write(&pass, "from a file\n").unwrap();
    let p = pass.to_str().unwrap();
    ok(
        d,
        &[
            "terminal",
            "--state",
            "st",
            "--passphrase-file",
            p,
            "keys",
            "generate",
        ],
    );
    ok(
        d,
        &[
            "terminal",
            "--state",
            "st",
            "--passphrase-file",
            p,
            "keys",
            "self-signed",
        ],
    );
    let fp = json(&ok(
        d,
        &[
            "terminal",
            "--state",
            "st",
            "--passphrase-file",
            p,
            "fingerprint",
            "--json",
        ],
    ));
    assert_eq!(fp["alias"], "terminal");
    assert_eq!(fp["fingerprint"].as_str().unwrap().len(), 64);
    assert!(d.join("st/keys/keystore.json").exists());

    // Issue 13, finding 9: the certificate comes back out, for a CA or
    // for openssl, in PEM and in DER.
    let base = [
        "terminal",
        "--state",
        "st",
        "--passphrase-file",
        p,
        "keys",
        "cert",
    ];
    let pem = ok(d, &base);
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
    std::fs::write(d.join("leaf.pem"), &pem).unwrap();
    assert_eq!(
        pairgate_testkit::openssl_sha256_fingerprint(d, "leaf.pem"),
        fp["fingerprint"].as_str().unwrap()
    );
    let der = crate::support::pairgate(d, &[&base[..], &["--der"]].concat());
    assert!(der.status.success());
    std::fs::write(d.join("leaf.der"), &der.stdout).unwrap();
    let text = openssl(
        d,
        &[
            "x509", "-inform", "DER", "-in", "leaf.der", "-noout", "-subject",
        ],
    );
    assert!(text.contains("terminal"), "{text}");
    let err = fails(
        d,
        &[
            "terminal",
            "--state",
            "st",
            "--passphrase-file",
            p,
            "keys",
            "cert",
            "--alias",
            "nope",
        ],
    );
    assert!(err.contains("nope"), "{err}");
}

#[test]
fn identity_flow_on_softhsm() {
    assert!(
        std::env::var_os("SOFTHSM2_CONF").is_some(),
        "run through scripts/test (SOFTHSM2_CONF)"
    );
    let dir = temp_dir();
    let uri = crate::support::softhsm_token_uri(dir.path());
    identity_flow(dir.path(), &uri);
}
