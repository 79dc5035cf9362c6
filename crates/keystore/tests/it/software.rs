//! What is particular to the software store: the passphrase, damaged
//! files, file modes, and crash safety.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use pairgate_keystore::software::SoftwareKeyStore;
use pairgate_keystore::{Alias, KeyStore, KeyStoreError, Passphrase, self_signed_certificate};
use pairgate_pki::{KeyAlgorithm, SignatureScheme, Subject};
use pairgate_testkit::temp_dir;

use crate::support::{passphrase, software_store};

#[test]
fn default_kdf_wrong_passphrase_and_missing_store() {
    let dir = temp_dir();
    let keys = dir.path().join("keys");
    assert!(matches!(
        SoftwareKeyStore::open(&keys, passphrase()),
        Err(KeyStoreError::NotFound(_))
    ));
    let store = SoftwareKeyStore::open_or_create(&keys, passphrase()).unwrap();
    store
        .generate_key(&Alias::new("t").unwrap(), KeyAlgorithm::P256)
        .unwrap();
    drop(store);
    let err = SoftwareKeyStore::open(&keys, Passphrase::new("wrong").unwrap()).unwrap_err();
    assert!(matches!(err, KeyStoreError::WrongPassphrase(_)), "{err}");
    assert!(err.to_string().contains("wrong passphrase"));
    let again = SoftwareKeyStore::open(&keys, passphrase()).unwrap();
    assert_eq!(again.aliases().unwrap().len(), 1);
}

#[test]
fn files_are_private_and_hold_no_clear_private_key() {
    let (store, dir) = software_store();
    let alias = Alias::new("t").unwrap();
    store.generate_key(&alias, KeyAlgorithm::P256).unwrap();
    let keys = dir.path().join("keys");
    assert_eq!(
        std::fs::metadata(&keys).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let file = keys.join("keystore.json");
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains("correct horse"), "passphrase on disk");
    // A P-256 PKCS#8 document starts 30 81 87 02 01 00 30 13 06 07 2a 86 48 ce 3d 02 01.
    assert!(
        !text.contains("308187020100301306072a8648ce3d0201"),
        "clear PKCS#8 on disk"
    );
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["format"], "pairgate-keystore/1");
    assert_eq!(doc["kdf"]["algorithm"], "argon2id");
}

#[test]
fn damaged_files_give_clear_errors() {
    let (store, dir) = software_store();
    let (a, b) = (Alias::new("a").unwrap(), Alias::new("b").unwrap());
    store.generate_key(&a, KeyAlgorithm::P256).unwrap();
    store.generate_key(&b, KeyAlgorithm::P256).unwrap();
    drop(store);
    let file = dir.path().join("keys/keystore.json");
    let original = std::fs::read_to_string(&file).unwrap();

    // Swap the sealed keys of two aliases: the binding to alias and public
    // key catches it.
    let mut doc: serde_json::Value = serde_json::from_str(&original).unwrap();
    let sealed_a = doc["keys"]["a"]["sealed_private_key"].clone();
    doc["keys"]["a"]["sealed_private_key"] = doc["keys"]["b"]["sealed_private_key"].clone();
    doc["keys"]["b"]["sealed_private_key"] = sealed_a;
    std::fs::write(&file, serde_json::to_vec(&doc).unwrap()).unwrap();
    let store = SoftwareKeyStore::open(&dir.path().join("keys"), passphrase()).unwrap();
    let err = store
        .sign(&a, SignatureScheme::EcdsaP256Sha256, b"m")
        .unwrap_err();
    assert!(matches!(err, KeyStoreError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("does not authenticate"), "{err}");
    drop(store);

    for (damage, expect) in [
        ("{not json".to_owned(), "corrupt"),
        (
            original.replace("pairgate-keystore/1", "other/9"),
            "unknown format",
        ),
        (
            original.replace("\"memory_kib\": 64", "\"memory_kib\": 99999999"),
            "out of range",
        ),
        (original[..original.len() / 2].to_owned(), "corrupt"),
        (bad_hex(&original, "public_key"), "should be hex"),
        (bad_hex(&original, "salt"), "should be hex"),
    ] {
        std::fs::write(&file, damage).unwrap();
        let err = SoftwareKeyStore::open(&dir.path().join("keys"), passphrase()).unwrap_err();
        assert!(matches!(err, KeyStoreError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains(expect), "{err}");
    }
}

/// The document with the first `field` of key `a` (or the KDF's salt)
/// made into text that is not hex.
fn bad_hex(original: &str, field: &str) -> String {
    let mut doc: serde_json::Value = serde_json::from_str(original).unwrap();
    let slot = if field == "salt" {
        &mut doc["kdf"]["salt"]
    } else {
        &mut doc["keys"]["a"][field]
    };
    *slot = serde_json::Value::String("zz-not-hex".into());
    serde_json::to_string(&doc).unwrap()
}

#[test]
fn two_handles_see_each_others_changes() {
    let (first, dir) = software_store();
    let second = SoftwareKeyStore::open(&dir.path().join("keys"), passphrase()).unwrap();
    let alias = Alias::new("shared").unwrap();
    first.generate_key(&alias, KeyAlgorithm::P256).unwrap();
    let sig = second
        .sign(&alias, SignatureScheme::EcdsaP256Sha256, b"m")
        .unwrap();
    first
        .public_key(&alias)
        .unwrap()
        .verify(SignatureScheme::EcdsaP256Sha256, b"m", &sig)
        .unwrap();
    second.delete(&alias).unwrap();
    assert!(first.aliases().unwrap().is_empty());
}

const CRASH_CHILD_ENV: &str = "PAIRGATE_TEST_CRASH_CHILD_DIR";

/// The writer a crash test kills: changes the store as fast as it can.
fn crash_child(dir: &std::path::Path) -> ! {
    let store = SoftwareKeyStore::open(dir, passphrase()).unwrap();
    let subject = Subject::common_name("crash").unwrap();
    let prefix = format!("p{}", std::process::id());
    for i in 0u64.. {
        let alias = Alias::new(&format!("{prefix}k{i}")).unwrap();
        store.generate_key(&alias, KeyAlgorithm::P256).unwrap();
        self_signed_certificate(&store, &alias, &subject, SystemTime::now(), 1).unwrap();
        if i >= 3 {
            store
                .delete(&Alias::new(&format!("{prefix}k{}", i - 3)).unwrap())
                .unwrap();
        }
    }
    unreachable!()
}

#[test]
fn killed_writer_leaves_a_readable_store() {
    if let Some(dir) = std::env::var_os(CRASH_CHILD_ENV) {
        crash_child(std::path::Path::new(&dir));
    }
    let (store, dir) = software_store();
    store
        .generate_key(&Alias::new("base").unwrap(), KeyAlgorithm::P256)
        .unwrap();
    drop(store);
    let keys = dir.path().join("keys");
    let exe = std::env::current_exe().unwrap();
    let mut states = std::collections::BTreeSet::new();
    let mut seed = 0x9e37_79b9_u64;
    for _round in 0..16 {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "software::killed_writer_leaves_a_readable_store",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CRASH_CHILD_ENV, &keys)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        // Lets the writer process (outside this one) get part-way before
        // it is killed, at a different point each round.
        std::thread::sleep(Duration::from_millis(60 + seed % 120));
        let deadline = Instant::now() + Duration::from_secs(5);
        if child.try_wait().unwrap().is_some() {
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            panic!("the writer stopped on its own: {err}");
        }
        child.kill().unwrap(); // SIGKILL: no destructor, no flush runs
        child.wait().unwrap();
        assert!(Instant::now() < deadline);

        // Whatever moment the kill hit, the store opens and every key in it
        // is whole: it signs, and its certificate matches it.
        let store = SoftwareKeyStore::open(&keys, passphrase()).unwrap();
        let entries = store.aliases().unwrap();
        for entry in &entries {
            let public = store.public_key(&entry.alias).unwrap();
            let sig = store
                .sign(
                    &entry.alias,
                    SignatureScheme::EcdsaP256Sha256,
                    b"after crash",
                )
                .unwrap();
            public
                .verify(SignatureScheme::EcdsaP256Sha256, b"after crash", &sig)
                .unwrap();
            if let Some(cert) = store.certificate_chain(&entry.alias).unwrap().first() {
                store
                    .set_certificate_chain(&entry.alias, std::slice::from_ref(cert))
                    .unwrap();
            }
        }
        states.insert(
            entries
                .iter()
                .map(|e| e.alias.to_string())
                .collect::<Vec<_>>()
                .join(","),
        );
    }
    // The writer made progress between kills, so kills landed on live writes.
    assert!(
        states.len() >= 4,
        "writer made too little progress: {states:?}"
    );
    let leftovers: Vec<_> = std::fs::read_dir(&keys)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    // A temporary file may survive the last kill; the next write removes it.
    assert!(leftovers.len() <= 1, "{leftovers:?}");
}

#[test]
fn a_sealed_copy_restores_the_same_keys_and_nothing_else() {
    let (store, dir) = software_store();
    let alias = Alias::new("terminal").unwrap();
    let public = store.generate_key(&alias, KeyAlgorithm::P256).unwrap();
    let subject = Subject::common_name("terminal").unwrap();
    self_signed_certificate(&store, &alias, &subject, SystemTime::now(), 30).unwrap();
    let copy = store.sealed_copy().unwrap().unwrap();
    // Sealed: no private key in the clear.
    assert!(!String::from_utf8_lossy(&copy).contains("PRIVATE"));

    let target = dir.path().join("restored");
    // A wrong passphrase writes nothing.
    let err =
        SoftwareKeyStore::restore(&target, &copy, Passphrase::new("wrong").unwrap()).unwrap_err();
    assert!(matches!(err, KeyStoreError::WrongPassphrase(_)), "{err}");
    assert!(!target.join("keystore.json").exists());
    // A damaged copy writes nothing.
    let err = SoftwareKeyStore::restore(&target, b"{\"not\": 1}", passphrase()).unwrap_err();
    assert!(matches!(err, KeyStoreError::BadSealedCopy(_)), "{err}");
    let mut altered: serde_json::Value = serde_json::from_slice(&copy).unwrap();
    let sealed = altered["keys"]["terminal"]["sealed_private_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let flipped = format!(
        "{}{}",
        if sealed.starts_with('0') { "1" } else { "0" },
        &sealed[1..]
    );
    altered["keys"]["terminal"]["sealed_private_key"] = flipped.into();
    let err = SoftwareKeyStore::restore(&target, altered.to_string().as_bytes(), passphrase())
        .unwrap_err();
    assert!(matches!(err, KeyStoreError::Corrupt { .. }), "{err}");
    assert!(!target.join("keystore.json").exists());

    let restored = SoftwareKeyStore::restore(&target, &copy, passphrase()).unwrap();
    assert_eq!(restored.public_key(&alias).unwrap(), public);
    assert_eq!(
        restored.certificate_chain(&alias).unwrap(),
        store.certificate_chain(&alias).unwrap()
    );
    let signature = restored
        .sign(&alias, SignatureScheme::EcdsaP256Sha256, b"m")
        .unwrap();
    public
        .verify(SignatureScheme::EcdsaP256Sha256, b"m", &signature)
        .unwrap();
    drop(restored);
    // Reopened from disk with the same passphrase.
    let reopened = SoftwareKeyStore::open(&target, passphrase()).unwrap();
    assert_eq!(reopened.aliases().unwrap().len(), 1);
    // A store that holds keys is never overwritten.
    let err = SoftwareKeyStore::restore(&target, &copy, passphrase()).unwrap_err();
    assert!(matches!(err, KeyStoreError::NotEmpty(_)), "{err}");
}
