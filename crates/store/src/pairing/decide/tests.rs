//! Every branch of the pairing decisions, on requests built in memory.

use pairgate_pki::{Commitment, Nonce, PairingCode, SpkiPin, TerminalFingerprint};

use super::*;
use crate::{Serial, Terminal, TerminalState};

const AT: i64 = 1_000_000;

fn key(n: u8) -> TerminalFingerprint {
    TerminalFingerprint::from_bytes([n; 32])
}

fn request(state: PairingState, nonce: &Nonce, revealed: bool) -> PairingRequest {
    PairingRequest {
        id: "0".repeat(32),
        serial: Serial::new("ATM-1").unwrap(),
        fingerprint: key(1),
        certificate: Vec::new(),
        remote_address: "127.0.0.1:1".into(),
        model: String::new(),
        firmware: String::new(),
        commitment: nonce.commitment(),
        terminal_nonce: revealed.then_some(*nonce),
        server_nonce: Nonce::random(),
        server_pin: SpkiPin::from_bytes([9; 32]),
        state,
        flagged: false,
        supersedes: None,
        failed_attempts: 0,
        created_at: AT - 10,
        expires_at: AT + 10,
        decided_at: None,
        decided_by: None,
    }
}

fn attempt(fingerprint: TerminalFingerprint, commitment: Commitment) -> PairingAttempt {
    PairingAttempt {
        serial: Serial::new("ATM-1").unwrap(),
        fingerprint,
        certificate: Vec::new(),
        remote_address: "127.0.0.1:1".into(),
        model: String::new(),
        firmware: String::new(),
        commitment,
        server_pin: SpkiPin::from_bytes([9; 32]),
    }
}

fn terminal(state: TerminalState, paired: Option<TerminalFingerprint>) -> Terminal {
    Terminal {
        serial: Serial::new("ATM-1").unwrap(),
        name: String::new(),
        location: String::new(),
        contact_name: String::new(),
        contact_phone: String::new(),
        state,
        paired_fingerprint: paired,
        paired_at: None,
        paired_by: None,
        last_seen_at: None,
        last_seen_address: None,
        firmware: None,
        vpn_profile: String::new(),
        created_at: 0,
        suspended_at: None,
        suspended_by: None,
        suspected_clone: false,
        clone_evidence: None,
        successor_fingerprint: None,
        successor_until: None,
    }
}

/// A code that is not `right`.
fn wrong(right: PairingCode) -> PairingCode {
    let text = if right.to_string() == "0000-0000" {
        "0000-0001"
    } else {
        "0000-0000"
    };
    text.parse().unwrap()
}

#[test]
fn open_request_is_due_at_its_expiry_and_closed_ones_never() {
    let nonce = Nonce::random();
    let mut req = request(PairingState::Pending, &nonce, true);
    assert!(!is_due(&req, AT + 9));
    assert!(is_due(&req, AT + 10));
    req.state = PairingState::Approved;
    assert!(!is_due(&req, AT + 1_000));
}

#[test]
fn only_the_paired_key_of_a_paired_terminal_is_already_paired() {
    assert!(already_paired(
        &terminal(TerminalState::Paired, Some(key(1))),
        &key(1)
    ));
    assert!(!already_paired(
        &terminal(TerminalState::Paired, Some(key(2))),
        &key(1)
    ));
    assert!(!already_paired(
        &terminal(TerminalState::Unpaired, None),
        &key(1)
    ));
}

#[test]
fn open_is_again_renew_supersede_or_new() {
    let nonce = Nonce::random();
    let req = request(PairingState::AwaitingReveal, &nonce, false);
    assert_eq!(
        on_open(None, &attempt(key(1), nonce.commitment())),
        OnOpen::New
    );
    assert_eq!(
        on_open(Some(&req), &attempt(key(1), nonce.commitment())),
        OnOpen::Again
    );
    assert_eq!(
        on_open(Some(&req), &attempt(key(1), Nonce::random().commitment())),
        OnOpen::Renew
    );
    assert_eq!(
        on_open(Some(&req), &attempt(key(2), nonce.commitment())),
        OnOpen::Supersede
    );
}

#[test]
fn a_new_request_is_flagged_when_it_superseded_or_the_terminal_has_a_key() {
    let fresh = terminal(TerminalState::Registered, None);
    assert!(!flagged(false, &fresh));
    assert!(flagged(true, &fresh));
    assert!(flagged(
        false,
        &terminal(TerminalState::Paired, Some(key(2)))
    ));
}

#[test]
fn the_reveal_deadline_never_passes_the_decision_deadline() {
    assert_eq!(deadlines(AT, 300, 3_600), (AT + 300, AT + 3_600));
    assert_eq!(deadlines(AT, 7_200, 3_600), (AT + 3_600, AT + 3_600));
    assert_eq!(deadlines(i64::MAX - 1, 300, 3_600), (i64::MAX, i64::MAX));
}

#[test]
fn reveal_accepts_only_the_committed_nonce() {
    let nonce = Nonce::random();
    let req = request(PairingState::AwaitingReveal, &nonce, false);
    assert_eq!(on_reveal(&req, &nonce, AT), OnReveal::Accept);
    assert_eq!(on_reveal(&req, &Nonce::random(), AT), OnReveal::Mismatch);
    assert_eq!(on_reveal(&req, &nonce, AT + 10), OnReveal::Expire);
}

#[test]
fn a_second_reveal_repeats_or_conflicts_and_closed_requests_stay_closed() {
    let nonce = Nonce::random();
    let req = request(PairingState::Pending, &nonce, true);
    assert_eq!(on_reveal(&req, &nonce, AT), OnReveal::Repeat);
    assert_eq!(on_reveal(&req, &Nonce::random(), AT), OnReveal::OtherNonce);
    for state in [
        PairingState::Approved,
        PairingState::Rejected,
        PairingState::Expired,
        PairingState::Superseded,
        PairingState::Failed,
    ] {
        let closed = request(state, &nonce, true);
        assert_eq!(on_reveal(&closed, &nonce, AT), OnReveal::Closed(state));
    }
}

#[test]
fn approve_pairs_only_an_open_revealed_request_with_the_right_code() {
    let nonce = Nonce::random();
    let req = request(PairingState::Pending, &nonce, true);
    let right = req.code().unwrap();
    assert_eq!(on_approve(&req, &right, AT), OnApprove::Pair);
    assert_eq!(on_approve(&req, &right, AT + 10), OnApprove::Expire);
    let unrevealed = request(PairingState::AwaitingReveal, &nonce, false);
    assert_eq!(on_approve(&unrevealed, &right, AT), OnApprove::NotRevealed);
    let rejected = request(PairingState::Rejected, &nonce, true);
    assert_eq!(
        on_approve(&rejected, &right, AT),
        OnApprove::Closed(PairingState::Rejected)
    );
}

#[test]
fn wrong_codes_count_and_the_last_allowed_one_ends_the_request() {
    let nonce = Nonce::random();
    let mut req = request(PairingState::Pending, &nonce, true);
    let bad = wrong(req.code().unwrap());
    for attempts in 1..=MAX_CODE_ATTEMPTS {
        assert_eq!(
            on_approve(&req, &bad, AT),
            OnApprove::WrongCode {
                attempts,
                ends: attempts == MAX_CODE_ATTEMPTS
            }
        );
        req.failed_attempts = attempts;
    }
}
