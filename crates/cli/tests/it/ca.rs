//! `pairgate ca`: what it issues, OpenSSL verifies.

use pairgate_testkit::{openssl, openssl_output, temp_dir};

use crate::support::{fails, json, ok};

#[test]
fn server_certificates_for_a_new_key_and_for_a_csr() {
    let dir = temp_dir();
    let d = dir.path();
    let init = json(&ok(d, &["ca", "init", "--dir", "ca", "--json"]));
    assert_eq!(init["subject"], "CN=pairgate development CA");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(d.join("ca/ca-key.pem"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    assert!(fails(d, &["ca", "init", "--dir", "ca"]).contains("already holds a CA"));

    let pem = ok(
        d,
        &[
            "ca",
            "sign-server-cert",
            "--dir",
            "ca",
            "--dns",
            "gate.example",
            "--ip",
            "127.0.0.1",
            "--key-out",
            "srv.key",
        ],
    );
    std::fs::write(d.join("srv.pem"), pem).unwrap();
    let out = openssl(
        d,
        &[
            "verify",
            "-CAfile",
            "ca/ca.pem",
            "-purpose",
            "sslserver",
            "-verify_ip",
            "127.0.0.1",
            "srv.pem",
        ],
    );
    assert!(out.contains("srv.pem: OK"), "{out}");
    // The key written matches the certificate.
    let cert_pub = openssl(d, &["x509", "-in", "srv.pem", "-noout", "-pubkey"]);
    let key_pub = openssl(d, &["pkey", "-in", "srv.key", "-pubout"]);
    assert_eq!(cert_pub, key_pub);

    openssl(
        d,
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            "rsa.key",
        ],
    );
    openssl(
        d,
        &[
            "req",
            "-new",
            "-key",
            "rsa.key",
            "-subj",
            "/CN=master.example",
            "-out",
            "rsa.csr",
        ],
    );
    let issued = json(&ok(
        d,
        &[
            "ca",
            "sign-server-cert",
            "--dir",
            "ca",
            "--dns",
            "master.example",
            "--csr",
            "rsa.csr",
            "--json",
        ],
    ));
    std::fs::write(d.join("rsa.pem"), issued["certificate"].as_str().unwrap()).unwrap();
    let out = openssl_output(
        d,
        &[
            "verify",
            "-CAfile",
            "ca/ca.pem",
            "-verify_hostname",
            "master.example",
            "rsa.pem",
        ],
    );
    assert!(out.status.success());
    assert!(
        fails(
            d,
            &[
                "ca",
                "sign-server-cert",
                "--dir",
                "ca",
                "--key-out",
                "x.key"
            ]
        )
        .contains("--dns")
    );
    let err = fails(
        d,
        &[
            "ca",
            "sign-server-cert",
            "--dir",
            "ca",
            "--dns",
            "a.example",
            "--csr",
            "rsa.csr",
            "--subject",
            "CN=other",
        ],
    );
    assert!(err.contains("cannot be used with"), "{err}");
}

#[test]
fn sha1_and_garbage_csrs_are_refused() {
    let dir = temp_dir();
    let d = dir.path();
    ok(d, &["ca", "init", "--dir", "ca"]);
    openssl(
        d,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "k.pem",
        ],
    );
    openssl(
        d,
        &[
            "req", "-new", "-sha1", "-key", "k.pem", "-subj", "/CN=old", "-out", "sha1.csr",
        ],
    );
    let err = fails(d, &["ca", "sign-csr", "--dir", "ca", "sha1.csr"]);
    assert!(err.contains("SHA-1"), "{err}");
    std::fs::write(
        d.join("junk.csr"),
        "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
    )
    .unwrap();
    let err = fails(d, &["ca", "sign-csr", "--dir", "ca", "junk.csr", "--json"]);
    let err = json(&err);
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not a valid certificate signing request"),
        "{err}"
    );
}
