//! Vendor keys and manifests: an import registers its terminals in one
//! transaction and is idempotent; conflicting vouches import nothing; a
//! revealed request whose key matches is approved by rule `manifest` with
//! one audit record naming it; another key is flagged and waits; the rule
//! switched off, or the vendor removed, leaves the request to operators.

use std::time::SystemTime;

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use pairgate_pki::{
    Nonce, SpkiPin, TerminalFingerprint, UnverifiedManifest, VendorKey, VerifiedManifest,
};
use pairgate_store::{
    AdminAction, ApprovalRules, Changer, PairingAttempt, PairingLimits, PairingState, Serial,
    Store, StoreError, TerminalState,
};

/// A vendor's Ed25519 key pair.
struct Vendor {
    pair: Ed25519KeyPair,
}

impl Vendor {
    fn new() -> Self {
        Self {
            pair: Ed25519KeyPair::generate().unwrap(),
        }
    }

    fn public(&self) -> VendorKey {
        VendorKey::ed25519(self.pair.public_key().as_ref()).unwrap()
    }

    /// A manifest `id` of `(serial, pin)`, signed.
    fn manifest(&self, id: &str, terminals: &[(&str, &SpkiPin)]) -> (Vec<u8>, Vec<u8>) {
        let list: Vec<_> = terminals
            .iter()
            .map(|(s, p)| serde_json::json!({ "serial": s, "model": "X9", "spki_pin": p.to_hex() }))
            .collect();
        let doc = serde_json::json!({
            "version": 1, "manifest_id": id, "vendor": "acme",
            "issued_at": "2026-11-30T10:00:00Z", "terminals": list,
        });
        let bytes = serde_json::to_vec_pretty(&doc).unwrap();
        let sig = self.pair.sign(&bytes).as_ref().to_vec();
        (bytes, sig)
    }

    fn verified(&self, id: &str, terminals: &[(&str, &SpkiPin)]) -> VerifiedManifest {
        let (bytes, sig) = self.manifest(id, terminals);
        UnverifiedManifest::parse(&bytes)
            .unwrap()
            .verify(&self.public(), &sig)
            .unwrap()
    }
}

/// A terminal's self-signed certificate and its key's pin.
fn terminal_cert() -> (Vec<u8>, SpkiPin) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(Vec::<String>::new())
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let pin = SpkiPin::of_certificate(cert.der()).unwrap();
    (cert.der().to_vec(), pin)
}

fn admin() -> AdminAction {
    AdminAction::local("admin")
}

fn importer() -> Changer {
    Changer::local("admin")
}

/// Opens and reveals a request for `serial` with certificate `cert`.
async fn ask(store: &Store, serial: &str, cert: &[u8]) -> pairgate_store::PairingRequest {
    let nonce = Nonce::random();
    let attempt = PairingAttempt {
        serial: Serial::new(serial).unwrap(),
        fingerprint: TerminalFingerprint::of_certificate(cert),
        certificate: cert.to_vec(),
        remote_address: "127.0.0.1:5000".into(),
        model: "X9".into(),
        firmware: "1.0".into(),
        commitment: nonce.commitment(),
        server_pin: SpkiPin::from_bytes([0x22; 32]),
    };
    let req = match store
        .open_pairing_request(&attempt, &PairingLimits::default(), SystemTime::now())
        .await
        .unwrap()
    {
        pairgate_store::Opened::Pending(req) => req,
        other => panic!("{other:?}"),
    };
    store
        .reveal_pairing_nonce(&req.id, &attempt.fingerprint, &nonce, SystemTime::now())
        .await
        .unwrap()
}

async fn actions(store: &Store, action: &str) -> Vec<pairgate_store::AuditRecord> {
    store
        .audit_records(10_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.action == action)
        .collect()
}

async fn an_import_registers_its_terminals_once(store: &Store) {
    let vendor = Vendor::new();
    store
        .add_vendor("acme", &vendor.public(), &admin(), SystemTime::now())
        .await
        .unwrap();
    assert!(matches!(
        store
            .add_vendor("acme", &vendor.public(), &admin(), SystemTime::now())
            .await,
        Err(StoreError::AlreadyExists(_))
    ));
    let (_, a) = terminal_cert();
    let (_, b) = terminal_cert();
    let m = vendor.verified("m-1", &[("ATM-1", &a), ("ATM-2", &b)]);
    let done = store
        .import_manifest(&m, &importer(), SystemTime::now())
        .await
        .unwrap();
    assert_eq!(
        (done.terminals, done.registered, done.unchanged),
        (2, 2, false)
    );
    let t = store
        .terminal(&Serial::new("ATM-1").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(t.state, TerminalState::Registered);
    // The same file again changes nothing.
    let again = store
        .import_manifest(&m, &importer(), SystemTime::now())
        .await
        .unwrap();
    assert!(again.unchanged);
    assert_eq!(actions(store, "manifest.import").await.len(), 1);
    assert_eq!(actions(store, "manifest.vouch").await.len(), 2);
    // The same id with other contents, a serial with another key, a key
    // for another serial: refused, nothing imported.
    let (_, c) = terminal_cert();
    for (id, list) in [
        ("m-1", vec![("ATM-3", &c)]),
        ("m-2", vec![("ATM-3", &c), ("ATM-1", &b)]),
        ("m-3", vec![("ATM-3", &c), ("ATM-4", &a)]),
    ] {
        let m = vendor.verified(id, &list);
        let err = store
            .import_manifest(&m, &importer(), SystemTime::now())
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{id}: {err}");
    }
    // A serial with spaces around it is no serial (and not "ATM-1" under
    // another key): refused, nothing imported.
    let (_, d) = terminal_cert();
    let m = vendor.verified("m-5", &[("ATM-3", &c), (" ATM-1", &d)]);
    let err = store
        .import_manifest(&m, &importer(), SystemTime::now())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    assert!(
        store
            .terminal(&Serial::new("ATM-3").unwrap())
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(store.manifests().await.unwrap().len(), 1);
    // A larger list re-issued under a new id adds only what is new.
    let m = vendor.verified("m-4", &[("ATM-1", &a), ("ATM-3", &c)]);
    let done = store
        .import_manifest(&m, &importer(), SystemTime::now())
        .await
        .unwrap();
    assert_eq!((done.terminals, done.registered), (2, 1));
}

async fn a_matching_key_is_approved_by_rule_and_another_is_flagged(store: &Store) {
    let vendor = Vendor::new();
    store
        .add_vendor("acme", &vendor.public(), &admin(), SystemTime::now())
        .await
        .unwrap();
    let (cert, pin) = terminal_cert();
    let (other_cert, _) = terminal_cert();
    let (_, later_pin) = terminal_cert();
    let m = vendor.verified("m-1", &[("ATM-1", &pin), ("ATM-2", &later_pin)]);
    store
        .import_manifest(&m, &importer(), SystemTime::now())
        .await
        .unwrap();

    // The manifest's key: paired at the reveal, by the rule.
    let req = ask(store, "ATM-1", &cert).await;
    assert_eq!(req.state, PairingState::Approved);
    let t = store
        .terminal(&Serial::new("ATM-1").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(t.state, TerminalState::Paired);
    assert_eq!(t.paired_by.as_deref(), Some("rule:manifest"));
    let approvals = actions(store, "pairing.approve").await;
    assert_eq!(approvals.len(), 1);
    let detail: serde_json::Value = serde_json::from_str(&approvals[0].detail).unwrap();
    assert_eq!(detail["rule"], "manifest");
    assert_eq!(detail["manifest"], "m-1");
    assert_eq!(detail["vendor"], "acme");

    // Another key for a listed serial: flagged, waits for a person.
    let req = ask(store, "ATM-2", &other_cert).await;
    assert_eq!(req.state, PairingState::Pending);
    assert!(req.flagged);
    let flags = actions(store, "pairing.flag").await;
    let detail: serde_json::Value = serde_json::from_str(&flags[0].detail).unwrap();
    assert_eq!(detail["reason"], "manifest_key_mismatch");
    assert_eq!(detail["manifest_spki_pin"], later_pin.to_hex());
    assert_eq!(actions(store, "pairing.approve").await.len(), 1);
}

async fn the_rule_off_or_the_vendor_gone_leaves_requests_to_operators(store: &Store) {
    let vendor = Vendor::new();
    store
        .add_vendor("acme", &vendor.public(), &admin(), SystemTime::now())
        .await
        .unwrap();
    let (cert_a, pin_a) = terminal_cert();
    let (cert_b, pin_b) = terminal_cert();
    let m = vendor.verified("m-1", &[("ATM-1", &pin_a), ("ATM-2", &pin_b)]);
    store
        .import_manifest(&m, &importer(), SystemTime::now())
        .await
        .unwrap();

    let off = store.clone().with_approval_rules(ApprovalRules {
        manifest: false,
        ..ApprovalRules::default()
    });
    let req = ask(&off, "ATM-1", &cert_a).await;
    assert_eq!(req.state, PairingState::Pending);
    assert!(!req.flagged);

    store
        .remove_vendor("acme", &admin(), SystemTime::now())
        .await
        .unwrap();
    let req = ask(store, "ATM-2", &cert_b).await;
    assert_eq!(req.state, PairingState::Pending);
    assert!(!req.flagged);
    assert!(matches!(
        store.vendor_key("acme").await,
        Err(StoreError::NotFound(_))
    ));
    assert!(actions(store, "pairing.approve").await.is_empty());
}

async fn rules_approve_only_within_their_bounds(store: &Store) {
    let vendor = Vendor::new();
    store
        .add_vendor("acme", &vendor.public(), &admin(), SystemTime::now())
        .await
        .unwrap();
    let certs: Vec<_> = (0..4).map(|_| terminal_cert()).collect();
    let serials = ["ATM-1", "ATM-2", "ATM-3", "ATM-4"];
    let list: Vec<_> = serials
        .iter()
        .zip(&certs)
        .map(|(s, (_, p))| (*s, p))
        .collect();
    store
        .import_manifest(
            &vendor.verified("m-1", &list),
            &importer(),
            SystemTime::now(),
        )
        .await
        .unwrap();
    let hour = |h: u8| {
        let now = u8::try_from(
            (SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_secs()
                / 3600)
                % 24,
        )
        .unwrap();
        (now + h) % 24
    };
    // The requests come from 127.0.0.1, at this hour, for model X9.
    let cases = [
        (
            ApprovalRules {
                networks: vec!["10.0.0.0/8".parse().unwrap()],
                ..ApprovalRules::default()
            },
            "networks",
        ),
        (
            ApprovalRules {
                hours: Some((hour(1), hour(2))),
                ..ApprovalRules::default()
            },
            "hours",
        ),
        (
            ApprovalRules {
                models: vec!["Y1".into()],
                ..ApprovalRules::default()
            },
            "models",
        ),
    ];
    for ((rules, why), ((cert, _), serial)) in cases.into_iter().zip(certs.iter().zip(serials)) {
        let bounded = store.clone().with_approval_rules(rules);
        let req = ask(&bounded, serial, cert).await;
        assert_eq!(req.state, PairingState::Pending, "{why}");
    }
    let skipped = actions(store, "pairing.rule_not_applied").await;
    assert_eq!(skipped.len(), 3);
    assert!(
        skipped
            .iter()
            .any(|r| r.detail.contains("outside the rule's networks"))
    );
    // Inside every bound: approved.
    let inside = ApprovalRules {
        networks: vec!["127.0.0.0/8".parse().unwrap()],
        hours: Some((hour(0), hour(1))),
        models: vec!["X9".into()],
        ..ApprovalRules::default()
    };
    let req = ask(
        &store.clone().with_approval_rules(inside),
        serials[3],
        &certs[3].0,
    )
    .await;
    assert_eq!(req.state, PairingState::Approved);
}

async fn rule_ca_approves_a_certificate_issued_to_the_serial(store: &Store) {
    use pairgate_testkit::{OpensslCa, P256, temp_dir};
    let dir = temp_dir();
    let acquirer = OpensslCa::new(dir.path(), "acquirer");
    let der = |path: std::path::PathBuf| {
        let certs =
            pairgate_pki::certificate::parse_certificates(&std::fs::read(path).unwrap()).unwrap();
        certs[0].to_vec()
    };
    let cas = pairgate_pki::FirmwareRoots::from_pem(&std::fs::read(acquirer.cert_path()).unwrap())
        .unwrap();
    let rules = ApprovalRules {
        ca: Some(cas),
        ..ApprovalRules::default()
    };
    let with_ca = store.clone().with_approval_rules(rules);
    for serial in ["ATM-9", "ATM-8", "ATM-7"] {
        with_ca
            .register_terminal(
                &pairgate_store::NewTerminal {
                    serial: serial.into(),
                    ..Default::default()
                },
                &importer(),
                SystemTime::now(),
            )
            .await
            .unwrap();
    }
    // Issued to ATM-9: approved by rule ca, the CA named in the audit.
    let issued = der(acquirer.issue("ATM-9", P256, "sha256"));
    let req = ask(&with_ca, "ATM-9", &issued).await;
    assert_eq!(req.state, PairingState::Approved);
    let approval = &actions(store, "pairing.approve").await[0];
    assert_eq!(approval.actor, "rule:ca");
    assert!(
        approval.detail.contains("\"rule\":\"ca\""),
        "{}",
        approval.detail
    );
    // Issued to ATM-8, asking as ATM-7: waits, and the audit says why.
    let other = der(acquirer.issue("ATM-8", P256, "sha256"));
    let req = ask(&with_ca, "ATM-7", &other).await;
    assert_eq!(req.state, PairingState::Pending);
    let skipped = actions(store, "pairing.rule_not_applied").await;
    assert!(
        skipped[0].detail.contains("not serial ATM-7"),
        "{}",
        skipped[0].detail
    );
    // A self-signed certificate is an ordinary request.
    let (own, _) = terminal_cert();
    let req = ask(&with_ca, "ATM-8", &own).await;
    assert_eq!(req.state, PairingState::Pending);
}

crate::on_both_backends!(
    rule_ca_approves_a_certificate_issued_to_the_serial,
    rules_approve_only_within_their_bounds,
    an_import_registers_its_terminals_once,
    a_matching_key_is_approved_by_rule_and_another_is_flagged,
    the_rule_off_or_the_vendor_gone_leaves_requests_to_operators,
);
