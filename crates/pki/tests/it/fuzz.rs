//! Fuzz targets (stable harness, `pairgate_testkit::fuzz`) for the PKI
//! parsers of outside input: client and server certificates (DER and PEM
//! bundles), CSRs, firmware root bundles, subjects, nonces, commitments
//! and pairing codes. None may panic, and what parses must be
//! self-consistent.

use pairgate_pki::certificate::{parse_certificates, parse_csr};
use pairgate_pki::{
    CertificateInfo, Commitment, FirmwareRoots, Nonce, PairingCode, Subject, TerminalFingerprint,
};
use pairgate_testkit::fuzz::{config, inputs};
use proptest::prelude::*;

fn seed_certificate() -> (Vec<u8>, String, Vec<u8>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["terminal.example".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "ATM-0042");
    let cert = params.self_signed(&key).unwrap();
    let csr = params.serialize_request(&key).unwrap();
    (cert.der().to_vec(), cert.pem(), csr.der().to_vec())
}

#[test]
fn fuzz_certificates() {
    let (der, pem, _) = seed_certificate();
    proptest!(config(), |(input in inputs(vec![der.clone()]))| {
        // The server's quick validity read is stricter than x509-parser
        // (it refused a validity whose tag was not SEQUENCE, which
        // x509-parser let through): where both read one, they agree.
        let quick = pairgate_pki::validity::certificate_validity(&input);
        if let Ok(info) = CertificateInfo::parse(&input) {
            if let Ok(quick) = quick {
                prop_assert_eq!(quick, info.validity());
            }
            let fp = TerminalFingerprint::of_certificate(&input);
            prop_assert_eq!(info.fingerprint.as_bytes(), fp.as_bytes());
        }
    });
    proptest!(config(), |(input in inputs(vec![pem.clone().into_bytes(), format!("{pem}{pem}").into_bytes()]))| {
        if let Ok(certs) = parse_certificates(&input) {
            for c in &certs {
                let _ = CertificateInfo::parse(c);
            }
        }
        let _ = FirmwareRoots::from_pem(&input);
    });
}

#[test]
fn fuzz_csrs() {
    let (_, _, csr) = seed_certificate();
    proptest!(config(), |(input in inputs(vec![csr.clone()]))| {
        let _ = parse_csr(&input);
    });
}

#[test]
fn fuzz_wire_values() {
    let seeds = vec![
        b"CN=ATM-0042, O=Operator, C=CZ".to_vec(),
        Nonce::random().to_hex().into_bytes(),
        Nonce::random().commitment().to_hex().into_bytes(),
        b"1234-5678".to_vec(),
    ];
    proptest!(config(), |(input in inputs(seeds.clone()))| {
        let text = String::from_utf8_lossy(&input);
        if let Ok(s) = text.parse::<Subject>() {
            // What parses prints back to something that parses the same.
            prop_assert_eq!(s.to_string().parse::<Subject>().ok(), Some(s));
        }
        // Hex is read in either case and written in lower case.
        if let Ok(n) = text.parse::<Nonce>() {
            prop_assert_eq!(n.to_hex(), text.to_ascii_lowercase());
        }
        if let Ok(c) = text.parse::<Commitment>() {
            prop_assert_eq!(c.to_hex(), text.to_ascii_lowercase());
        }
        if let Ok(code) = text.parse::<PairingCode>() {
            prop_assert!(code.value() < 100_000_000);
        }
    });
}
