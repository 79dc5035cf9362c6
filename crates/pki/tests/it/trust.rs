//! The trust-store rule against certificates made by OpenSSL.

use std::time::{Duration, SystemTime};

use pairgate_pki::{CertificateError, FirmwareRoots, TrustError};
use pairgate_testkit::{OpensslCa, P256, RSA1024, temp_dir};

fn read(path: &std::path::Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

#[test]
fn only_certificates_signed_by_a_firmware_root_enter() {
    let dir = temp_dir();
    let acquirer = OpensslCa::new(dir.path(), "acquirer");
    let vendor = OpensslCa::new(dir.path(), "vendor");
    let stranger = OpensslCa::new(dir.path(), "stranger");
    let mut bundle = read(&acquirer.cert_path());
    bundle.extend(read(&vendor.cert_path()));
    let roots = FirmwareRoots::from_pem(&bundle).unwrap();
    assert_eq!(roots.certificates().count(), 2);

    let good = acquirer.issue("server", P256, "sha256");
    let admitted = roots
        .admit(&pem_der(&read(&good)), SystemTime::now())
        .unwrap();
    assert_eq!(admitted.info().subject, "CN=server");
    let from_vendor = vendor.issue("vendor-server", P256, "sha384");
    roots
        .admit(&pem_der(&read(&from_vendor)), SystemTime::now())
        .unwrap();

    let foreign = stranger.issue("foreign", P256, "sha256");
    let err = roots
        .admit(&pem_der(&read(&foreign)), SystemTime::now())
        .unwrap_err();
    assert!(matches!(err, TrustError::NotSignedByFirmwareRoot { .. }));
    assert!(
        err.to_string().contains("not signed by any firmware root"),
        "{err}"
    );
}

#[test]
fn a_forged_issuer_name_is_not_enough() {
    // Same subject name as the firmware root, different key.
    let dir = temp_dir();
    let real = OpensslCa::new(dir.path(), "acquirer");
    let sub = dir.path().join("fake");
    std::fs::create_dir(&sub).unwrap();
    let fake = OpensslCa::new(&sub, "acquirer");
    let roots = FirmwareRoots::from_pem(&read(&real.cert_path())).unwrap();
    let forged = fake.issue("server", P256, "sha256");
    let err = roots
        .admit(&pem_der(&read(&forged)), SystemTime::now())
        .unwrap_err();
    assert!(
        matches!(err, TrustError::NotSignedByFirmwareRoot { .. }),
        "{err}"
    );
}

#[test]
fn sha1_signed_weak_key_and_expired_certificates_are_refused() {
    let dir = temp_dir();
    let acquirer = OpensslCa::new(dir.path(), "acquirer");
    let roots = FirmwareRoots::from_pem(&read(&acquirer.cert_path())).unwrap();

    let sha1 = acquirer.issue("sha1", P256, "sha1");
    let err = roots
        .admit(&pem_der(&read(&sha1)), SystemTime::now())
        .unwrap_err();
    assert!(
        matches!(
            &err,
            TrustError::Certificate(CertificateError::WeakSignatureAlgorithm { .. })
        ),
        "{err}"
    );
    assert!(err.to_string().contains("SHA-1"), "{err}");

    let weak = acquirer.issue("weak", RSA1024, "sha256");
    let err = roots
        .admit(&pem_der(&read(&weak)), SystemTime::now())
        .unwrap_err();
    assert!(
        matches!(err, TrustError::Certificate(CertificateError::WeakKey(_))),
        "{err}"
    );
    assert!(err.to_string().contains("1024"), "{err}");

    let good = acquirer.issue("good", P256, "sha256");
    let later = SystemTime::now() + Duration::from_secs(400 * 86400);
    let err = roots.admit(&pem_der(&read(&good)), later).unwrap_err();
    assert!(
        matches!(
            err,
            TrustError::Certificate(CertificateError::Expired { .. })
        ),
        "{err}"
    );
}

#[test]
fn bad_root_bundles_are_refused() {
    assert!(matches!(
        FirmwareRoots::from_pem(b""),
        Err(TrustError::NoRoots)
    ));
    assert!(
        FirmwareRoots::from_pem(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
            .is_err()
    );
}

fn pem_der(pem: &[u8]) -> Vec<u8> {
    pairgate_pki::certificate::parse_certificates(pem)
        .unwrap()
        .remove(0)
        .to_vec()
}
