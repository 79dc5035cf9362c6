//! What is particular to the PKCS#11 store on a real SoftHSM2 token: the
//! private key objects really are sensitive and non-extractable, the PIN
//! is checked, and the token keeps keys across sessions.

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::object::{Attribute, AttributeType, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use pairgate_keystore::pkcs11::Pkcs11KeyStore;
use pairgate_keystore::{Alias, KeyStore, KeyStoreError, Pkcs11Uri};
use pairgate_pki::{KeyAlgorithm, SignatureScheme};

use crate::support::{USER_PIN, pkcs11_module, softhsm_uri};

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
    let session = ctx.open_ro_session(slot).unwrap();
    match session.login(UserType::User, Some(&AuthPin::new(USER_PIN.into()))) {
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
        Err(e) => panic!("{e}"),
    }
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
