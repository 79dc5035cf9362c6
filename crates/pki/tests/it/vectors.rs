//! The published pairing-code vectors in `tests/vectors/`, computed by an
//! independent implementation, must match ours bit for bit.

use pairgate_pki::{Commitment, Nonce, PairingCode, SpkiPin, TerminalFingerprint};

#[test]
fn pairing_code_vectors_match() {
    let text = include_str!("../vectors/pairing-code-v1.json");
    let doc: serde_json::Value = serde_json::from_str(text).unwrap();
    let vectors = doc["vectors"].as_array().unwrap();
    assert!(vectors.len() >= 10);
    for v in vectors {
        let terminal: TerminalFingerprint =
            v["terminal_cert_fp"].as_str().unwrap().parse().unwrap();
        let server: SpkiPin = v["server_spki_fp"].as_str().unwrap().parse().unwrap();
        let tn: Nonce = v["terminal_nonce"].as_str().unwrap().parse().unwrap();
        let sn: Nonce = v["server_nonce"].as_str().unwrap().parse().unwrap();
        let code = PairingCode::derive(&terminal, &server, &tn, &sn);
        assert_eq!(
            code.to_string(),
            v["code"].as_str().unwrap(),
            "{}",
            v["description"]
        );
        let commitment: Commitment = v["terminal_commitment"].as_str().unwrap().parse().unwrap();
        assert!(commitment.opens_to(&tn));
        assert_eq!(tn.commitment(), commitment);
    }
}

#[test]
fn any_changed_input_changes_the_code() {
    let t = TerminalFingerprint::from_bytes([1; 32]);
    let s = SpkiPin::from_bytes([2; 32]);
    let tn = Nonce::from_bytes([3; 32]);
    let sn = Nonce::from_bytes([4; 32]);
    let base = PairingCode::derive(&t, &s, &tn, &sn);
    // A relay presents its own certificate to each side: either fingerprint
    // differs, and so does the code.
    let mut other = [1u8; 32];
    other[31] = 0;
    assert!(!base.matches(&PairingCode::derive(
        &TerminalFingerprint::from_bytes(other),
        &s,
        &tn,
        &sn
    )));
    assert!(!base.matches(&PairingCode::derive(
        &t,
        &SpkiPin::from_bytes([9; 32]),
        &tn,
        &sn
    )));
    assert!(!base.matches(&PairingCode::derive(&t, &s, &sn, &tn)));
}
