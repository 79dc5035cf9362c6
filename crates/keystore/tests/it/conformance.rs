//! Behaviour every `KeyStore` backend must share, run against both.

use std::path::Path;
use std::time::SystemTime;

use pairgate_keystore::{
    Alias, KeyStore, KeyStoreError, add_trusted_certificate, certificate_request,
    import_certificate_chain, self_signed_certificate, terminal_fingerprint,
};
use pairgate_pki::ca::{CertificateAuthority, RequestedKey};
use pairgate_pki::certificate::{certificate_pem, csr_pem};
use pairgate_pki::{CertificateFingerprint, FirmwareRoots, KeyAlgorithm, SignatureScheme, Subject};
use pairgate_testkit::{OpensslCa, P256, openssl, openssl_output, temp_dir};

fn alias(name: &str) -> Alias {
    Alias::new(name).unwrap()
}

fn keys_sign_and_verify(store: &dyn KeyStore, _dir: &Path) {
    for algorithm in KeyAlgorithm::ALL {
        let a = alias(&format!("key-{algorithm}"));
        let public = store.generate_key(&a, algorithm).unwrap();
        assert_eq!(public.algorithm, algorithm);
        assert_eq!(store.public_key(&a).unwrap(), public);
        for scheme in algorithm.schemes() {
            let message = format!("pay 10 EUR with {scheme:?}");
            let signature = store.sign(&a, *scheme, message.as_bytes()).unwrap();
            public
                .verify(*scheme, message.as_bytes(), &signature)
                .unwrap();
            assert!(public.verify(*scheme, b"pay 1000 EUR", &signature).is_err());
        }
        let wrong = if algorithm.is_rsa() {
            SignatureScheme::EcdsaP256Sha256
        } else {
            SignatureScheme::RsaPssSha256
        };
        assert!(matches!(
            store.sign(&a, wrong, b"x"),
            Err(KeyStoreError::SchemeMismatch { .. })
        ));
        assert!(matches!(
            store.generate_key(&a, algorithm),
            Err(KeyStoreError::AliasExists(_))
        ));
    }
    assert!(matches!(
        store.sign(&alias("nobody"), SignatureScheme::EcdsaP256Sha256, b"x"),
        Err(KeyStoreError::NoSuchAlias(_))
    ));
}

fn csrs_pass_openssl_and_the_ca(store: &dyn KeyStore, _dir: &Path) {
    let dir = temp_dir();
    let ca = CertificateAuthority::new_root(
        rcgen::KeyPair::generate().unwrap(),
        &Subject::common_name("Acquirer CA").unwrap(),
        SystemTime::now(),
        30,
    )
    .unwrap();
    std::fs::write(dir.path().join("ca.pem"), certificate_pem(ca.certificate())).unwrap();
    for algorithm in KeyAlgorithm::ALL {
        let a = alias(&format!("csr-{algorithm}"));
        store.generate_key(&a, algorithm).unwrap();
        let subject: Subject = format!("CN=ATM-{algorithm}, O=Operator").parse().unwrap();
        let csr = certificate_request(store, &a, &subject).unwrap();
        let path = format!("{algorithm}.csr");
        std::fs::write(dir.path().join(&path), csr_pem(&csr)).unwrap();
        let out = openssl_output(dir.path(), &["req", "-verify", "-noout", "-in", &path]);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && text.contains("verify OK"),
            "openssl rejected the {algorithm} CSR: {text}"
        );

        // The CA's certificate for it imports under the alias and verifies.
        let cert = ca
            .issue_client_certificate(
                &RequestedKey::from_csr(&csr).unwrap(),
                SystemTime::now(),
                30,
            )
            .unwrap();
        let mut bundle = certificate_pem(&cert);
        bundle.push_str(&certificate_pem(ca.certificate()));
        let chain = import_certificate_chain(store, &a, bundle.as_bytes()).unwrap();
        assert_eq!(chain.len(), 2);
        assert_eq!(store.certificate_chain(&a).unwrap(), chain);
        let leaf = format!("{algorithm}.pem");
        std::fs::write(dir.path().join(&leaf), certificate_pem(&cert)).unwrap();
        let out = openssl(
            dir.path(),
            &[
                "verify",
                "-CAfile",
                "ca.pem",
                "-purpose",
                "sslclient",
                &leaf,
            ],
        );
        assert!(out.contains(": OK"), "{out}");
    }
}

fn self_signed_certificates_match_openssl_fingerprint(store: &dyn KeyStore, _dir: &Path) {
    let dir = temp_dir();
    for algorithm in KeyAlgorithm::ALL {
        let a = alias(&format!("self-{algorithm}"));
        store.generate_key(&a, algorithm).unwrap();
        let subject = Subject::common_name("terminal").unwrap();
        let cert = self_signed_certificate(store, &a, &subject, SystemTime::now(), 3650).unwrap();
        let path = format!("{algorithm}.pem");
        std::fs::write(dir.path().join(&path), certificate_pem(&cert)).unwrap();
        let out = openssl(
            dir.path(),
            &["verify", "-CAfile", &path, "-partial_chain", &path],
        );
        assert!(out.contains(": OK"), "{out}");
        let openssl_hex = pairgate_testkit::openssl_sha256_fingerprint(dir.path(), &path);
        assert_eq!(
            terminal_fingerprint(store, &a).unwrap().to_hex(),
            openssl_hex
        );
        let listed = store
            .aliases()
            .unwrap()
            .into_iter()
            .find(|e| e.alias == a)
            .unwrap();
        assert_eq!(listed.certificate.unwrap().to_hex(), openssl_hex);
        assert_eq!(listed.algorithm, algorithm);
    }
}

fn certificates_for_other_keys_are_refused(store: &dyn KeyStore, _dir: &Path) {
    let (a, b) = (alias("mine"), alias("other"));
    store.generate_key(&a, KeyAlgorithm::P256).unwrap();
    store.generate_key(&b, KeyAlgorithm::P256).unwrap();
    let subject = Subject::common_name("x").unwrap();
    let mine = self_signed_certificate(store, &a, &subject, SystemTime::now(), 1).unwrap();
    let theirs = self_signed_certificate(store, &b, &subject, SystemTime::now(), 1).unwrap();
    let err = store
        .set_certificate_chain(&a, std::slice::from_ref(&theirs))
        .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, KeyStoreError::CertificateKeyMismatch { .. }),
        "{text}"
    );
    assert!(text.contains("not the key of alias \"mine\""), "{text}");
    // Nothing changed.
    assert_eq!(store.certificate_chain(&a).unwrap(), vec![mine]);
    assert!(matches!(
        store.set_certificate_chain(&a, &[]),
        Err(KeyStoreError::EmptyChain)
    ));
    assert!(matches!(
        import_certificate_chain(store, &a, b"not a certificate"),
        Err(KeyStoreError::Certificate(_))
    ));
    assert!(matches!(
        store.set_certificate_chain(&alias("ghost"), &[theirs]),
        Err(KeyStoreError::NoSuchAlias(_))
    ));
}

fn trust_store_admits_only_firmware_signed(store: &dyn KeyStore, _dir: &Path) {
    let dir = temp_dir();
    let acquirer = OpensslCa::new(dir.path(), "acquirer");
    let stranger = OpensslCa::new(dir.path(), "stranger");
    let roots = FirmwareRoots::from_pem(&std::fs::read(acquirer.cert_path()).unwrap()).unwrap();

    let good = std::fs::read(acquirer.issue("server", P256, "sha256")).unwrap();
    let admitted = add_trusted_certificate(store, &roots, &good, SystemTime::now()).unwrap();
    add_trusted_certificate(store, &roots, &good, SystemTime::now()).unwrap();
    assert_eq!(store.trusted().unwrap(), vec![admitted.der().clone()]);

    let sha1 = std::fs::read(acquirer.issue("legacy", P256, "sha1")).unwrap();
    let err = add_trusted_certificate(store, &roots, &sha1, SystemTime::now()).unwrap_err();
    assert!(err.to_string().contains("SHA-1"), "{err}");
    let foreign = std::fs::read(stranger.issue("foreign", P256, "sha256")).unwrap();
    let err = add_trusted_certificate(store, &roots, &foreign, SystemTime::now()).unwrap_err();
    assert!(
        err.to_string().contains("not signed by any firmware root"),
        "{err}"
    );
    assert_eq!(store.trusted().unwrap().len(), 1);

    store.remove_trusted(&admitted.info().fingerprint).unwrap();
    assert!(store.trusted().unwrap().is_empty());
    assert!(matches!(
        store.remove_trusted(&CertificateFingerprint::from_bytes([7; 32])),
        Err(KeyStoreError::NotTrusted(_))
    ));
}

fn list_delete_and_factory_reset(store: &dyn KeyStore, _dir: &Path) {
    let dir = temp_dir();
    let acquirer = OpensslCa::new(dir.path(), "acquirer");
    let roots = FirmwareRoots::from_pem(&std::fs::read(acquirer.cert_path()).unwrap()).unwrap();
    let server = std::fs::read(acquirer.issue("server", P256, "sha256")).unwrap();
    add_trusted_certificate(store, &roots, &server, SystemTime::now()).unwrap();
    store
        .generate_key(&alias("b-key"), KeyAlgorithm::P256)
        .unwrap();
    store
        .generate_key(&alias("a-key"), KeyAlgorithm::Rsa2048)
        .unwrap();
    let listed: Vec<String> = store
        .aliases()
        .unwrap()
        .iter()
        .map(|e| e.alias.to_string())
        .collect();
    assert_eq!(listed, ["a-key", "b-key"]);
    store.delete(&alias("a-key")).unwrap();
    assert!(matches!(
        store.delete(&alias("a-key")),
        Err(KeyStoreError::NoSuchAlias(_))
    ));
    assert!(matches!(
        store.public_key(&alias("a-key")),
        Err(KeyStoreError::NoSuchAlias(_))
    ));

    store.factory_reset().unwrap();
    assert!(store.aliases().unwrap().is_empty());
    assert!(store.trusted().unwrap().is_empty());
    // The firmware roots are not in the store: the rule still works after.
    add_trusted_certificate(store, &roots, &server, SystemTime::now()).unwrap();
    store
        .generate_key(&alias("b-key"), KeyAlgorithm::P256)
        .unwrap();
}

macro_rules! conformance_suite {
    ($backend:ident, $make:path) => {
        mod $backend {
            macro_rules! case {
                ($name:ident) => {
                    #[test]
                    fn $name() {
                        let (store, dir) = $make();
                        super::$name(&store, dir.path());
                    }
                };
            }
            case!(keys_sign_and_verify);
            case!(csrs_pass_openssl_and_the_ca);
            case!(self_signed_certificates_match_openssl_fingerprint);
            case!(certificates_for_other_keys_are_refused);
            case!(trust_store_admits_only_firmware_signed);
            case!(list_delete_and_factory_reset);
        }
    };
}

conformance_suite!(software, crate::support::software_store);
#[cfg(feature = "pkcs11")]
conformance_suite!(softhsm, crate::support::softhsm_store);
