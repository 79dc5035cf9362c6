//! The pairing verbs' decisions as pure functions over the rows a verb
//! read and the clock's `at` (Unix ms): what opening, revealing and
//! approving do to a request. The verbs in `open.rs` and `mod.rs` read
//! the rows, ask here, and write what was decided in one transaction;
//! the unit tests below drive every branch without a database.

use pairgate_pki::{Nonce, PairingCode, TerminalFingerprint};

use super::{MAX_CODE_ATTEMPTS, PairingAttempt, PairingRequest, PairingState};
use crate::{Terminal, TerminalState};

/// An open request past its expiry: it is to be marked expired before
/// anything else is done with it.
pub(crate) fn is_due(req: &PairingRequest, at: i64) -> bool {
    req.state.is_open() && req.expires_at <= at
}

/// The asking fingerprint is the one the terminal is paired with: the
/// gate answers with the terminal, and nothing is opened.
pub(crate) fn already_paired(terminal: &Terminal, fingerprint: &TerminalFingerprint) -> bool {
    terminal.state == TerminalState::Paired
        && terminal.paired_fingerprint.as_ref() == Some(fingerprint)
}

/// What a pairing attempt does, given the serial's request that is still
/// open (after the due ones expired).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum OnOpen {
    /// The same key and commitment again: the same request.
    Again,
    /// The same key with a new commitment (the terminal restarted): the
    /// request is renewed with a fresh server nonce.
    Renew,
    /// Another key: the open request is superseded (within the limits)
    /// and a new, flagged one is opened.
    Supersede,
    /// Nothing is open: a new request (within the quotas).
    New,
}

/// Decides a pairing attempt against the serial's open request.
pub(crate) fn on_open(open: Option<&PairingRequest>, attempt: &PairingAttempt) -> OnOpen {
    match open {
        None => OnOpen::New,
        Some(req) if req.fingerprint != attempt.fingerprint => OnOpen::Supersede,
        Some(req) if req.commitment == attempt.commitment => OnOpen::Again,
        Some(_) => OnOpen::Renew,
    }
}

/// A new request is flagged for the operator when it superseded another
/// key's request, or when the terminal is paired with another key.
pub(crate) fn flagged(superseded: bool, terminal: &Terminal) -> bool {
    superseded || terminal.paired_fingerprint.is_some()
}

/// The deadlines of a new request opened at `at`: the reveal within
/// `reveal_ttl` and the decision within `ttl`, the first never past the
/// second. Returns `(reveal_by, decide_by)`.
pub(crate) fn deadlines(at: i64, reveal_ttl: i64, ttl: i64) -> (i64, i64) {
    let decide_by = at.saturating_add(ttl);
    (at.saturating_add(reveal_ttl).min(decide_by), decide_by)
}

/// What revealing `nonce` does to a request of the revealing key.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum OnReveal {
    /// Past its expiry: expire it.
    Expire,
    /// Revealed before with this nonce: answer as before.
    Repeat,
    /// Revealed before with another nonce: a conflict, nothing changes.
    OtherNonce,
    /// Closed in this state: nothing changes.
    Closed(PairingState),
    /// The nonce does not open the commitment: the request fails.
    Mismatch,
    /// The nonce opens the commitment: the request waits for an operator.
    Accept,
}

/// Decides a reveal.
pub(crate) fn on_reveal(req: &PairingRequest, nonce: &Nonce, at: i64) -> OnReveal {
    if is_due(req, at) {
        return OnReveal::Expire;
    }
    match req.state {
        PairingState::AwaitingReveal if req.commitment.opens_to(nonce) => OnReveal::Accept,
        PairingState::AwaitingReveal => OnReveal::Mismatch,
        PairingState::Pending if req.terminal_nonce.as_ref() == Some(nonce) => OnReveal::Repeat,
        PairingState::Pending => OnReveal::OtherNonce,
        state => OnReveal::Closed(state),
    }
}

/// What an operator's code does to a request.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum OnApprove {
    /// Past its expiry: expire it.
    Expire,
    /// Closed in this state: nothing changes.
    Closed(PairingState),
    /// The terminal has not revealed its nonce, so there is no code yet.
    NotRevealed,
    /// A wrong code: the attempt is counted; the last allowed one ends
    /// the request.
    WrongCode {
        /// Wrong codes so far, this one included.
        attempts: i64,
        /// This one ends the request.
        ends: bool,
    },
    /// The right code: pair the terminal with the request's key.
    Pair,
}

/// Decides an approval by `code`.
pub(crate) fn on_approve(req: &PairingRequest, code: &PairingCode, at: i64) -> OnApprove {
    if is_due(req, at) {
        return OnApprove::Expire;
    }
    if !req.state.is_open() {
        return OnApprove::Closed(req.state);
    }
    let Some(expected) = req.code() else {
        return OnApprove::NotRevealed;
    };
    if expected.matches(code) {
        return OnApprove::Pair;
    }
    let attempts = req.failed_attempts.saturating_add(1);
    OnApprove::WrongCode {
        attempts,
        ends: attempts >= MAX_CODE_ATTEMPTS,
    }
}

#[cfg(test)]
mod tests;
