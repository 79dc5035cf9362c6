//! What is particular to the PKCS#11 store on a real SoftHSM2 token: the
//! private key objects really are sensitive and non-extractable, the PIN
//! is checked, and the token keeps keys across sessions.

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use pairgate_keystore::pkcs11::Pkcs11KeyStore;
use pairgate_keystore::{Alias, KeyStore, KeyStoreError, Pkcs11Uri};
use pairgate_pki::{KeyAlgorithm, SignatureScheme};

use crate::support::{USER_PIN, pkcs11_module, softhsm_uri};

/// A logged-in session on the test's token, opened without pairgate's
/// code: what another application on the same HSM has.
fn user_session(uri: &Pkcs11Uri) -> Session {
    let ctx = Pkcs11::new(pkcs11_module()).unwrap();
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => panic!("{e}"),
    }
    let slot = ctx
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| {
            // Other tests create and delete tokens in the same directory.
            ctx.get_token_info(*s)
                .is_ok_and(|info| info.label().trim_end() == uri.token)
        })
        .unwrap();
    let session = ctx.open_rw_session(slot).unwrap();
    match session.login(UserType::User, Some(&AuthPin::new(USER_PIN.into()))) {
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
        Err(e) => panic!("{e}"),
    }
    session
}

/// A P-256 key pair made on the token by another program, with `id` and
/// `label`.
fn foreign_key_pair(session: &Session, id: &[u8], label: &str) -> ObjectHandle {
    let (_, private) = session
        .generate_key_pair(
            &Mechanism::EccKeyPairGen,
            &[
                Attribute::Token(true),
                Attribute::Id(id.to_vec()),
                Attribute::Label(label.as_bytes().to_vec()),
                Attribute::EcParams(pairgate_pki::der::p256_ec_params()),
                Attribute::Verify(true),
            ],
            &[
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Sign(true),
                Attribute::Id(id.to_vec()),
                Attribute::Label(label.as_bytes().to_vec()),
            ],
        )
        .unwrap();
    private
}

fn ids_of(session: &Session, class: ObjectClass) -> Vec<Vec<u8>> {
    session
        .find_objects(&[Attribute::Class(class)])
        .unwrap()
        .into_iter()
        .map(|h| {
            session
                .get_attributes(h, &[AttributeType::Id])
                .unwrap()
                .into_iter()
                .find_map(|a| {
                    if let Attribute::Id(id) = a {
                        Some(id)
                    } else {
                        None
                    }
                })
                .unwrap_or_default()
        })
        .collect()
}

/// Issue 13, finding 6: the payment application's key on the same HSM
/// survives pairgate's factory reset, and still signs.
#[test]
fn a_factory_reset_leaves_other_applications_keys() {
    let (uri, _dir) = softhsm_uri();
    let store = Pkcs11KeyStore::open(&uri).unwrap();
    let session = user_session(&uri);
    let payment = foreign_key_pair(&session, &[0x01], "payment-key");
    let alias = Alias::new("identity").unwrap();
    store.generate_key(&alias, KeyAlgorithm::P256).unwrap();
    pairgate_keystore::self_signed_certificate(
        &store,
        &alias,
        &pairgate_pki::Subject::common_name("ATM-1").unwrap(),
        std::time::SystemTime::now(),
        30,
    )
    .unwrap();
    // pairgate does not list the other key as one of its aliases.
    let listed: Vec<String> = store
        .aliases()
        .unwrap()
        .into_iter()
        .map(|e| e.alias.to_string())
        .collect();
    assert_eq!(listed, ["identity"]);
    store.factory_reset().unwrap();
    assert!(store.aliases().unwrap().is_empty());
    assert!(matches!(
        store.public_key(&alias),
        Err(KeyStoreError::NoSuchAlias(_))
    ));
    for class in [ObjectClass::PRIVATE_KEY, ObjectClass::PUBLIC_KEY] {
        assert_eq!(ids_of(&session, class), [vec![0x01]], "{class:?}");
    }
    assert!(ids_of(&session, ObjectClass::CERTIFICATE).is_empty());
    let digest = [7u8; 32];
    let signature = session.sign(&Mechanism::Ecdsa, payment, &digest).unwrap();
    assert_eq!(signature.len(), 64);
}

/// Keys written under the old scheme (the bare alias as id and label)
/// are renamed into pairgate's when the store opens, keep signing, and
/// go with a factory reset.
#[test]
fn keys_under_the_bare_alias_scheme_are_renamed_on_open() {
    let (uri, _dir) = softhsm_uri();
    let session = user_session(&uri);
    foreign_key_pair(&session, b"legacy", "legacy");
    foreign_key_pair(&session, &[0x02], "payment-key");
    let store = Pkcs11KeyStore::open(&uri).unwrap();
    let alias = Alias::new("legacy").unwrap();
    assert_eq!(store.aliases().unwrap().len(), 1);
    let public = store.public_key(&alias).unwrap();
    let signature = store
        .sign(&alias, SignatureScheme::EcdsaP256Sha256, b"still mine")
        .unwrap();
    assert!(
        public
            .verify(SignatureScheme::EcdsaP256Sha256, b"still mine", &signature)
            .is_ok()
    );
    let mut ids = ids_of(&session, ObjectClass::PRIVATE_KEY);
    ids.sort();
    assert_eq!(ids, [vec![0x02], b"pairgate:legacy".to_vec()]);
    store.factory_reset().unwrap();
    assert_eq!(ids_of(&session, ObjectClass::PRIVATE_KEY), [vec![0x02]]);
}

#[test]
fn private_keys_are_sensitive_and_not_extractable() {
    let (uri, _dir) = softhsm_uri();
    let store = Pkcs11KeyStore::open(&uri).unwrap();
    for algorithm in KeyAlgorithm::ALL {
        let alias = Alias::new(&format!("k-{algorithm}")).unwrap();
        store.generate_key(&alias, algorithm).unwrap();
        let p = store.key_protection(&alias).unwrap();
        assert!(
            p.sensitive
                && !p.extractable
                && p.always_sensitive
                && p.never_extractable
                && p.on_token,
            "{p:?}"
        );
    }

    // Independently of our code: ask the token for the private values.
    let session = user_session(&uri);
    let keys = session
        .find_objects(&[Attribute::Class(ObjectClass::PRIVATE_KEY)])
        .unwrap();
    assert_eq!(keys.len(), 3);
    for key in keys {
        let attrs = session
            .get_attributes(key, &[AttributeType::Sensitive, AttributeType::Extractable])
            .unwrap();
        assert!(attrs.contains(&Attribute::Sensitive(true)), "{attrs:?}");
        assert!(attrs.contains(&Attribute::Extractable(false)), "{attrs:?}");
        // The secret parts cannot be read: the token answers "sensitive"
        // and cryptoki leaves them out.
        for secret in [AttributeType::Value, AttributeType::PrivateExponent] {
            let got = session.get_attributes(key, &[secret]).unwrap_or_default();
            assert!(
                !got.iter().any(|a| matches!(a, Attribute::Value(v) | Attribute::PrivateExponent(v) if !v.is_empty())),
                "token revealed {secret:?}"
            );
        }
    }
}

#[test]
fn keys_persist_across_store_handles() {
    let (uri, _dir) = softhsm_uri();
    let alias = Alias::new("identity").unwrap();
    let public = Pkcs11KeyStore::open(&uri)
        .unwrap()
        .generate_key(&alias, KeyAlgorithm::P256)
        .unwrap();
    let again = Pkcs11KeyStore::open(&uri).unwrap();
    assert_eq!(again.public_key(&alias).unwrap(), public);
    let sig = again
        .sign(&alias, SignatureScheme::EcdsaP256Sha256, b"m")
        .unwrap();
    public
        .verify(SignatureScheme::EcdsaP256Sha256, b"m", &sig)
        .unwrap();
}

#[test]
fn wrong_pin_and_unknown_token_are_clear_errors() {
    let (uri, dir) = softhsm_uri();
    let bad_pin = dir.path().join("bad-pin");
    std::fs::write(&bad_pin, "000000").unwrap();
    let wrong = Pkcs11Uri {
        pin_source: Some(bad_pin),
        ..uri.clone()
    };
    let err = Pkcs11KeyStore::open(&wrong).unwrap_err();
    assert!(err.to_string().contains("wrong PIN"), "{err}");
    let missing = Pkcs11Uri {
        token: "no-such-token".into(),
        ..uri
    };
    let err = Pkcs11KeyStore::open(&missing).unwrap_err();
    assert!(matches!(err, KeyStoreError::Pkcs11(_)));
    assert!(
        err.to_string()
            .contains("no token labelled \"no-such-token\""),
        "{err}"
    );
}

#[test]
fn concurrent_signing_from_many_threads() {
    let (uri, _dir) = softhsm_uri();
    let store = Pkcs11KeyStore::open(&uri).unwrap();
    let alias = Alias::new("busy").unwrap();
    let public = store.generate_key(&alias, KeyAlgorithm::P256).unwrap();
    std::thread::scope(|s| {
        for t in 0..4 {
            let (store, alias, public) = (&store, &alias, &public);
            s.spawn(move || {
                for i in 0..25 {
                    let msg = format!("{t}-{i}");
                    let sig = store
                        .sign(alias, SignatureScheme::EcdsaP256Sha256, msg.as_bytes())
                        .unwrap();
                    public
                        .verify(SignatureScheme::EcdsaP256Sha256, msg.as_bytes(), &sig)
                        .unwrap();
                }
            });
        }
    });
}

#[test]
fn a_key_replaced_by_another_handle_is_found_again() {
    let (uri, _dir) = softhsm_uri();
    let alias = Alias::new("rotating").unwrap();
    let signer = Pkcs11KeyStore::open(&uri).unwrap();
    let other = Pkcs11KeyStore::open(&uri).unwrap();
    signer.generate_key(&alias, KeyAlgorithm::P256).unwrap();
    // Warm the signer's handle cache.
    signer
        .sign(&alias, SignatureScheme::EcdsaP256Sha256, b"m")
        .unwrap();

    // Another handle (another process on a real terminal) replaces the key.
    other.delete(&alias).unwrap();
    let replacement = other.generate_key(&alias, KeyAlgorithm::P256).unwrap();
    let sig = signer
        .sign(&alias, SignatureScheme::EcdsaP256Sha256, b"after")
        .unwrap();
    replacement
        .verify(SignatureScheme::EcdsaP256Sha256, b"after", &sig)
        .unwrap();

    // And one it deleted is reported as gone, not as a token failure.
    other.delete(&alias).unwrap();
    assert!(matches!(
        signer.sign(&alias, SignatureScheme::EcdsaP256Sha256, b"gone"),
        Err(KeyStoreError::NoSuchAlias(_))
    ));
}

#[test]
fn a_token_gives_no_copy_of_its_keys() {
    let (store, _dir) = crate::support::softhsm_store();
    store
        .generate_key(&Alias::new("t").unwrap(), KeyAlgorithm::P256)
        .unwrap();
    assert!(store.sealed_copy().unwrap().is_none());
}
