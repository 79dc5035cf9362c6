//! Rule `ca`'s check against OpenSSL-issued certificates: a leaf an
//! acquirer CA issued to CN=<serial> vouches for that serial only; a leaf
//! of another CA vouches for nothing.

use pairgate_pki::FirmwareRoots;
use pairgate_pki::issued::{IssuedError, certified_names, issued_for};
use pairgate_testkit::{OpensslCa, P256, temp_dir};

fn der(path: &std::path::Path) -> Vec<u8> {
    let pem = std::fs::read(path).unwrap();
    pem::parse(pem).unwrap().into_contents()
}

#[test]
fn a_ca_issued_certificate_vouches_for_its_serial_only() {
    let dir = temp_dir();
    let acquirer = OpensslCa::new(dir.path(), "acquirer");
    let other = OpensslCa::new(dir.path(), "other");
    let cas = FirmwareRoots::from_pem(&std::fs::read(acquirer.cert_path()).unwrap()).unwrap();
    let leaf = der(&acquirer.issue("ATM-9", P256, "sha256"));
    assert_eq!(certified_names(&leaf).unwrap(), ["ATM-9"]);
    let now = std::time::SystemTime::now();
    let by = issued_for(&cas, &leaf, "ATM-9", now).unwrap();
    let ca_der = der(&acquirer.cert_path());
    assert_eq!(
        by,
        pairgate_pki::CertificateFingerprint::of_certificate(&ca_der)
    );
    assert!(matches!(
        issued_for(&cas, &leaf, "ATM-10", now),
        Err(IssuedError::OtherSerial { .. })
    ));
    let stranger = der(&other.issue("ATM-9", P256, "sha256"));
    assert!(matches!(
        issued_for(&cas, &stranger, "ATM-9", now),
        Err(IssuedError::NotIssued(_))
    ));
    // Issued for ten days: a month on, it vouches for nothing.
    let later = now + std::time::Duration::from_secs(30 * 86_400);
    assert!(issued_for(&cas, &leaf, "ATM-9", later).is_err());
}
