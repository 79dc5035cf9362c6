//! Fuzz target (stable harness, `pairgate_testkit::fuzz`) for key-store
//! URIs, which come from configuration files, flags and the environment:
//! `file:` paths and RFC 7512 `pkcs11:` URIs. Parsing never panics, a
//! `pin-value` is never accepted, and what parses prints back to a URI
//! that parses the same.

use pairgate_keystore::{KeyStoreUri, Pkcs11Uri};
use pairgate_testkit::fuzz::{config, inputs};
use proptest::prelude::*;

#[test]
fn fuzz_key_store_uris() {
    let seeds = vec![
        b"file:/var/lib/pairgate/keys".to_vec(),
        b"pkcs11:token=pairgate;object=terminal;manufacturer=SoftHSM%20project?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/pairgate/pin".to_vec(),
        b"pkcs11:token=a%2Fb;serial=0123?pin-source=file:%2Ftmp%2Fpin".to_vec(),
    ];
    proptest!(config(), |(input in inputs(seeds.clone()))| {
        let text = String::from_utf8_lossy(&input);
        if let Ok(uri) = text.parse::<Pkcs11Uri>() {
            prop_assert!(!text.contains("pin-value"), "{text}");
            let again = uri.to_string().parse::<Pkcs11Uri>();
            prop_assert!(again.is_ok(), "{uri} from {text}");
            prop_assert_eq!(again.ok().map(|u| u.to_string()), Some(uri.to_string()));
        }
        if let Ok(uri) = text.parse::<KeyStoreUri>() {
            let again = uri.to_string().parse::<KeyStoreUri>();
            prop_assert!(again.is_ok(), "{uri} from {text}");
        }
    });
}
