//! Chains of rotation statements as a terminal meets them.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};

use rcgen::PublicKeyData;

use super::*;

struct Key {
    pair: EcdsaKeyPair,
    spki: Vec<u8>,
}

impl Key {
    fn new() -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref()).unwrap();
        let spki = rcgen::KeyPair::try_from(pkcs8.as_ref())
            .unwrap()
            .subject_public_key_info();
        Self { pair, spki }
    }

    fn pin(&self) -> SpkiPin {
        SpkiPin::of_spki(&self.spki)
    }

    /// This key announces `next` as rotation `seq`.
    fn announce(&self, seq: u64, next: &Key) -> SignedRotation {
        let statement = RotationStatement {
            seq,
            previous_spki: self.spki.clone(),
            next_spki: next.spki.clone(),
            not_before: 1_800_000_000,
        };
        let signature = self
            .pair
            .sign(&SystemRandom::new(), &statement.message())
            .unwrap()
            .as_ref()
            .to_vec();
        SignedRotation {
            statement,
            signature,
        }
    }
}

fn held(keys: &[&Key], seq: u64) -> PinSet {
    PinSet {
        pins: keys.iter().map(|k| k.pin()).collect(),
        seq,
    }
}

#[test]
fn a_terminal_follows_two_rotations_it_slept_through() {
    let (k0, k1, k2) = (Key::new(), Key::new(), Key::new());
    let chain = [k0.announce(1, &k1), k1.announce(2, &k2)];
    let after = advance(&held(&[&k0], 0), k2.pin(), None, &chain).unwrap();
    assert_eq!(after, held(&[&k2], 2));
    // Announced but not yet served: the next key is pinned beside.
    let announced = advance(&held(&[&k0], 0), k0.pin(), Some(k1.pin()), &chain[..1]).unwrap();
    assert_eq!(announced, held(&[&k0, &k1], 0));
    // Then served: the old pin is dropped.
    let switched = advance(&announced, k1.pin(), None, &chain[..1]).unwrap();
    assert_eq!(switched, held(&[&k1], 1));
    // A retired key is never reached again, with the whole chain shown.
    let back = advance(&switched, k0.pin(), None, &chain);
    assert!(
        matches!(back, Err(RotationError::UnknownKey { .. })),
        "{back:?}"
    );
}

#[test]
fn bad_signatures_gaps_strangers_and_unannounced_keys_are_refused() {
    let (k0, k1, k2, stranger) = (Key::new(), Key::new(), Key::new(), Key::new());
    let start = held(&[&k0], 0);
    let mut forged = k0.announce(1, &k1);
    forged.signature[10] ^= 1;
    assert_eq!(
        advance(&start, k1.pin(), None, &[forged]),
        Err(RotationError::BadSignature(1))
    );
    // Signed by the next key instead of the current one.
    let mut swapped = k1.announce(1, &k2);
    swapped.statement.previous_spki = k0.spki.clone();
    assert_eq!(
        advance(&start, k2.pin(), None, &[swapped]),
        Err(RotationError::BadSignature(1))
    );
    // A gap: k1 → k2 with no k0 → k1.
    let gap = advance(&start, k2.pin(), None, &[k1.announce(2, &k2)]);
    assert!(
        matches!(gap, Err(RotationError::UnknownKey { .. })),
        "{gap:?}"
    );
    // A signer the terminal never pinned.
    let strange = advance(&start, k2.pin(), None, &[stranger.announce(1, &k2)]);
    assert!(
        matches!(strange, Err(RotationError::UnknownKey { .. })),
        "{strange:?}"
    );
    // A key nobody announced.
    let unannounced = advance(&start, stranger.pin(), None, &[k0.announce(1, &k1)]);
    assert!(matches!(unannounced, Err(RotationError::UnknownKey { .. })));
    // An announced next key that is not reached is not pinned.
    let kept = advance(&start, k0.pin(), Some(k2.pin()), &[k0.announce(1, &k1)]).unwrap();
    assert_eq!(kept, start);
}

#[test]
fn the_statement_binds_every_field() {
    let (k0, k1) = (Key::new(), Key::new());
    let good = k0.announce(1, &k1);
    assert!(good.verify().is_ok());
    for tamper in [
        |s: &mut RotationStatement| s.seq = 2,
        |s: &mut RotationStatement| s.not_before += 1,
        |s: &mut RotationStatement| s.next_spki = s.previous_spki.clone(),
    ] {
        let mut bad = good.clone();
        tamper(&mut bad.statement);
        assert!(bad.verify().is_err());
    }
    assert!(good.statement.message().starts_with(CONTEXT));
}
