//! The CA issues what it decides, not what a CSR asks for, and OpenSSL
//! agrees with the result.

use std::time::SystemTime;

use pairgate_pki::ca::{CaError, CertificateAuthority, RequestedKey};
use pairgate_pki::certificate::{certificate_pem, csr_pem};
use pairgate_pki::{CertificateError, CertificateInfo, Subject};
use pairgate_testkit::{openssl, openssl_output, temp_dir};
use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType};
use x509_parser::prelude::*;

fn dev_ca() -> CertificateAuthority<KeyPair> {
    let key = KeyPair::generate().unwrap();
    let subject: Subject = "CN=Test Acquirer Root, O=Test".parse().unwrap();
    CertificateAuthority::new_root(key, &subject, SystemTime::now(), 365).unwrap()
}

#[test]
fn csr_extensions_are_overwritten_and_openssl_verifies() {
    let dir = temp_dir();
    let ca = dev_ca();
    // A greedy CSR: asks to be a CA, a server, with a SAN.
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["evil.example".to_owned()]).unwrap();
    params.distinguished_name = Subject::common_name("ATM-0001")
        .unwrap()
        .to_distinguished_name();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params
        .subject_alt_names
        .push(SanType::DnsName("bank.example".try_into().unwrap()));
    let csr = params.serialize_request(&key).unwrap();

    let request = RequestedKey::from_csr(csr.der()).unwrap();
    let cert = ca
        .issue_client_certificate(&request, SystemTime::now(), 30)
        .unwrap();
    let (_, parsed) = X509Certificate::from_der(&cert).unwrap();
    assert!(!parsed.is_ca());
    assert!(parsed.subject_alternative_name().unwrap().is_none());
    let eku = parsed.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.client_auth && !eku.server_auth);
    assert_eq!(parsed.subject().to_string(), "CN=ATM-0001");

    std::fs::write(dir.path().join("ca.pem"), certificate_pem(ca.certificate())).unwrap();
    std::fs::write(dir.path().join("leaf.pem"), certificate_pem(&cert)).unwrap();
    let out = openssl(
        dir.path(),
        &[
            "verify",
            "-CAfile",
            "ca.pem",
            "-purpose",
            "sslclient",
            "leaf.pem",
        ],
    );
    assert!(out.contains("leaf.pem: OK"), "{out}");
    // ... and not as a server certificate.
    let out = openssl_output(
        dir.path(),
        &[
            "verify",
            "-CAfile",
            "ca.pem",
            "-purpose",
            "sslserver",
            "leaf.pem",
        ],
    );
    assert!(!out.status.success());
}

#[test]
fn server_certificates_carry_the_names_given() {
    let dir = temp_dir();
    let ca = dev_ca();
    let key = KeyPair::generate().unwrap();
    let subject = Subject::common_name("gate.example").unwrap();
    let request = RequestedKey::from_spki(
        &rcgen::PublicKeyData::subject_public_key_info(&key),
        &subject,
    )
    .unwrap();
    let cert = ca
        .issue_server_certificate(
            &request,
            &["gate.example".to_owned()],
            &["127.0.0.1".parse().unwrap()],
            SystemTime::now(),
            30,
        )
        .unwrap();
    std::fs::write(dir.path().join("ca.pem"), certificate_pem(ca.certificate())).unwrap();
    std::fs::write(dir.path().join("srv.pem"), certificate_pem(&cert)).unwrap();
    let out = openssl(
        dir.path(),
        &[
            "verify",
            "-CAfile",
            "ca.pem",
            "-purpose",
            "sslserver",
            "-verify_hostname",
            "gate.example",
            "srv.pem",
        ],
    );
    assert!(out.contains("OK"));
    assert!(matches!(
        ca.issue_server_certificate(&request, &[], &[], SystemTime::now(), 30),
        Err(CaError::NoServerNames)
    ));
}

#[test]
fn tampered_csr_fails_proof_of_possession() {
    let key = KeyPair::generate().unwrap();
    let params = CertificateParams::new(Vec::<String>::new()).unwrap();
    let csr = params.serialize_request(&key).unwrap();
    let mut der = csr.der().to_vec();
    let last = der.len() - 1;
    der[last] ^= 0x01;
    assert!(matches!(
        RequestedKey::from_csr(&der),
        Err(CaError::BadCsrSignature)
    ));
    assert!(matches!(
        RequestedKey::from_csr(b"garbage"),
        Err(CaError::MalformedCsr(_))
    ));
}

#[test]
fn sha1_and_weak_key_csrs_are_refused() {
    let dir = temp_dir();
    openssl(
        dir.path(),
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
        dir.path(),
        &[
            "req", "-new", "-sha1", "-key", "k.pem", "-subj", "/CN=x", "-outform", "DER", "-out",
            "sha1.der",
        ],
    );
    let der = std::fs::read(dir.path().join("sha1.der")).unwrap();
    match RequestedKey::from_csr(&der) {
        Err(CaError::Refused(CertificateError::WeakSignatureAlgorithm { algorithm })) => {
            assert!(algorithm.contains("SHA-1"), "{algorithm}")
        }
        other => panic!("SHA-1 CSR accepted or wrong error: {:?}", other.err()),
    }
    openssl(
        dir.path(),
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:1024",
            "-out",
            "r.pem",
        ],
    );
    openssl(
        dir.path(),
        &[
            "req", "-new", "-sha256", "-key", "r.pem", "-subj", "/CN=x", "-outform", "DER", "-out",
            "weak.der",
        ],
    );
    let der = std::fs::read(dir.path().join("weak.der")).unwrap();
    assert!(matches!(
        RequestedKey::from_csr(&der),
        Err(CaError::Refused(CertificateError::WeakKey(_)))
    ));
}

#[test]
fn ca_key_must_match_its_certificate() {
    let ca = dev_ca();
    let other = KeyPair::generate().unwrap();
    assert!(matches!(
        CertificateAuthority::from_parts(ca.certificate().clone(), other),
        Err(CaError::KeyMismatch)
    ));
    let info = CertificateInfo::parse(ca.certificate()).unwrap();
    assert!(info.is_ca);
    // PEM output of a CSR is what openssl expects.
    let key = KeyPair::generate().unwrap();
    let csr = CertificateParams::new(Vec::<String>::new())
        .unwrap()
        .serialize_request(&key)
        .unwrap();
    assert!(csr_pem(csr.der()).starts_with("-----BEGIN CERTIFICATE REQUEST-----\n"));
}
