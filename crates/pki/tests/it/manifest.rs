//! Vendor manifests against OpenSSL: OpenSSL makes the vendor keys and the
//! detached signatures (Ed25519 with `pkeyutl -rawin`, P-256 with `dgst
//! -sha256`), so the format is checked by another implementation; one
//! flipped byte, a wrong key and the format's rules are refused.

use std::path::Path;

use pairgate_pki::{ManifestError, UnverifiedManifest, VendorKey};
use pairgate_testkit::{openssl, temp_dir};

const PIN_A: &str = "0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a";
const PIN_B: &str = "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b";

fn manifest(terminals: &str) -> String {
    format!(
        r#"{{"version": 1, "manifest_id": "m-1", "vendor": "acme", "issued_at": "2026-11-30T10:00:00Z", "terminals": [{terminals}]}}"#
    )
}

fn entry(serial: &str, pin: &str) -> String {
    format!(r#"{{"serial": "{serial}", "model": "X9", "spki_pin": "{pin}"}}"#)
}

/// Makes a vendor key (`ed25519` or `p256`) with OpenSSL; returns the
/// public key.
fn vendor_key(dir: &Path, kind: &str) -> VendorKey {
    match kind {
        "ed25519" => openssl(
            dir,
            &["genpkey", "-algorithm", "ed25519", "-out", "vendor.key"],
        ),
        _ => openssl(
            dir,
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                "vendor.key",
            ],
        ),
    };
    openssl(
        dir,
        &["pkey", "-in", "vendor.key", "-pubout", "-out", "vendor.pub"],
    );
    VendorKey::from_pem(&std::fs::read(dir.join("vendor.pub")).unwrap()).unwrap()
}

/// Signs `manifest.json` in `dir` the way the format says.
fn sign(dir: &Path, kind: &str) -> Vec<u8> {
    match kind {
        "ed25519" => openssl(
            dir,
            &[
                "pkeyutl",
                "-sign",
                "-rawin",
                "-inkey",
                "vendor.key",
                "-in",
                "manifest.json",
                "-out",
                "manifest.sig",
            ],
        ),
        _ => openssl(
            dir,
            &[
                "dgst",
                "-sha256",
                "-sign",
                "vendor.key",
                "-out",
                "manifest.sig",
                "manifest.json",
            ],
        ),
    };
    std::fs::read(dir.join("manifest.sig")).unwrap()
}

#[test]
fn openssl_signed_manifests_verify_and_a_flipped_byte_does_not() {
    for kind in ["ed25519", "p256"] {
        let dir = temp_dir();
        let key = vendor_key(dir.path(), kind);
        assert_eq!(key.algorithm().as_str(), kind);
        let text = manifest(&[entry("ATM-1", PIN_A), entry("ATM-2", PIN_B)].join(","));
        std::fs::write(dir.path().join("manifest.json"), &text).unwrap();
        let signature = sign(dir.path(), kind);
        let parsed = UnverifiedManifest::parse(text.as_bytes()).unwrap();
        assert_eq!(parsed.vendor(), "acme");
        let verified = parsed.verify(&key, &signature).unwrap();
        let listed: Vec<_> = verified
            .terminals()
            .map(|(t, p)| (t.serial.clone(), p.to_hex()))
            .collect();
        assert_eq!(
            listed,
            [
                ("ATM-1".into(), PIN_A.into()),
                ("ATM-2".into(), PIN_B.to_owned())
            ]
        );
        assert_eq!(verified.vendor_key(), &key.pin());

        // One flipped byte in the file (still valid JSON), or the signature.
        let flipped = text.replace("ATM-2", "ATM-3");
        let err = UnverifiedManifest::parse(flipped.as_bytes())
            .unwrap()
            .verify(&key, &signature)
            .unwrap_err();
        assert_eq!(err, ManifestError::BadSignature("acme".into()));
        let mut bad = signature.clone();
        if let Some(b) = bad.last_mut() {
            *b ^= 1;
        }
        assert!(
            UnverifiedManifest::parse(text.as_bytes())
                .unwrap()
                .verify(&key, &bad)
                .is_err()
        );
        // Another vendor's key.
        let other = temp_dir();
        let other_key = vendor_key(other.path(), kind);
        assert!(
            UnverifiedManifest::parse(text.as_bytes())
                .unwrap()
                .verify(&other_key, &signature)
                .is_err()
        );
        // The stored PEM reads back as the same key.
        assert_eq!(VendorKey::from_pem(key.to_pem().as_bytes()).unwrap(), key);
    }
}

#[test]
fn vendor_keys_other_than_ed25519_and_p256_are_refused() {
    let dir = temp_dir();
    let d = dir.path();
    for (name, args) in [
        (
            "rsa",
            vec![
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
                "k",
            ],
        ),
        (
            "p384",
            vec![
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-384",
                "-out",
                "k",
            ],
        ),
    ] {
        openssl(d, &args);
        openssl(d, &["pkey", "-in", "k", "-pubout", "-out", "k.pub"]);
        let err = VendorKey::from_pem(&std::fs::read(d.join("k.pub")).unwrap()).unwrap_err();
        assert!(matches!(err, ManifestError::Key(_)), "{name}: {err}");
    }
    // A private key is not what `--key` takes.
    let err = VendorKey::from_pem(&std::fs::read(d.join("k")).unwrap()).unwrap_err();
    assert!(err.to_string().contains("PRIVATE KEY"), "{err}");
    assert!(VendorKey::from_pem(b"not pem").is_err());
    // Raw Ed25519 bytes: 32 of them, the same key as its PEM.
    assert!(VendorKey::ed25519(&[7; 31]).is_err());
    let raw = VendorKey::ed25519(&[7; 32]).unwrap();
    assert_eq!(VendorKey::from_pem(raw.to_pem().as_bytes()).unwrap(), raw);
}

#[test]
fn the_format_rules_refuse_before_any_signature_check() {
    let cases = [
        (
            manifest(&[entry("ATM-1", PIN_A), entry("ATM-1", PIN_B)].join(",")),
            "two different keys",
        ),
        (
            manifest(&[entry("ATM-1", PIN_A), entry("ATM-2", PIN_A)].join(",")),
            "two serials",
        ),
        (
            manifest(&entry("ATM-1", &PIN_A.to_uppercase())),
            "lowercase",
        ),
        (manifest(&entry("ATM-1", &PIN_A[..62])), "lowercase"),
        (manifest(""), "1 to"),
        (
            manifest(&entry("ATM-1", PIN_A)).replace("\"version\": 1", "\"version\": 2"),
            "version 2",
        ),
        (
            manifest(&entry("ATM-1", PIN_A)).replace("2026-11-30T10:00:00Z", "yesterday"),
            "RFC 3339",
        ),
        (
            manifest(&entry("ATM-1", PIN_A)).replace("\"m-1\"", "\"\""),
            "manifest_id",
        ),
        (
            manifest(&entry("ATM-1", PIN_A)).replace("\"version\"", "\"extra\": 0, \"version\""),
            "unknown field",
        ),
        ("[]".to_owned(), "not the manifest JSON"),
    ];
    for (text, says) in cases {
        let err = UnverifiedManifest::parse(text.as_bytes()).unwrap_err();
        assert!(err.to_string().contains(says), "{text}\n→ {err}");
    }
    // The same serial twice with the same key is one terminal.
    let twice = manifest(&[entry("ATM-1", PIN_A), entry("ATM-1", PIN_A)].join(","));
    assert!(UnverifiedManifest::parse(twice.as_bytes()).is_ok());
}
