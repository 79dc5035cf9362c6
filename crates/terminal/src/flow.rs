//! The terminal's pairing flow as pure decisions over its saved state:
//! where to start (pin, resumed request), what the gate's first answer
//! means, what each status answer means, and what is kept once paired.
//! [`crate::Agent::pair`] does the I/O between them and saves the state
//! each returns, so a crash at any point resumes with the same
//! commitment (the gate then returns the same request and the code on the
//! screen stays the same). Unit tests drive it without a network.

use pairgate_pki::{Nonce, SpkiPin};
use pairgate_proto::{PairingStatus, RequestStatus, TerminalConfig};

use crate::TerminalError;
use crate::gate::Answer;
use crate::state::{GatePin, PairedConfig, PendingPairing, State};

/// Where a pairing starts.
#[derive(Debug)]
pub(crate) struct Start {
    /// The state to save before anything is sent.
    pub state: State,
    /// The server key pinned for this gate, if one is.
    pub known_pin: Option<SpkiPin>,
    /// The terminal nonce (the one of an interrupted pairing, resumed).
    pub nonce: Nonce,
}

/// Decides where a pairing with `gate` for `serial` starts. A pin learned
/// at another gate address is refused unless `forget_pin`; a pairing
/// interrupted earlier for the same gate and serial keeps its nonce;
/// otherwise `fresh` draws one.
pub(crate) fn start(
    mut state: State,
    gate: &str,
    serial: &str,
    forget_pin: bool,
    fresh: impl FnOnce() -> Nonce,
) -> Result<Start, TerminalError> {
    let known_pin = match &state.gate_pin {
        Some(gp) if gp.gate == gate => Some(
            gp.pin
                .parse::<SpkiPin>()
                .map_err(|_| TerminalError::Io("the stored server pin is damaged".into()))?,
        ),
        Some(gp) if !forget_pin => {
            return Err(TerminalError::OtherGate {
                pinned: gp.gate.clone(),
                asked: gate.to_owned(),
            });
        }
        _ => None,
    };
    if known_pin.is_none() {
        state.gate_pin = None;
    }
    let nonce = match &state.pending {
        Some(p) if p.gate == gate && p.serial == serial => p
            .terminal_nonce
            .parse::<Nonce>()
            .map_err(|_| TerminalError::Io("the stored pairing nonce is damaged".into()))?,
        _ => fresh(),
    };
    state.pending = Some(PendingPairing {
        gate: gate.to_owned(),
        serial: serial.to_owned(),
        terminal_nonce: nonce.to_hex(),
        request_id: None,
    });
    Ok(Start {
        state,
        known_pin,
        nonce,
    })
}

/// What to do after the gate's first answer.
#[derive(Debug)]
pub(crate) enum AfterHello {
    /// Already paired: finish with this configuration.
    Paired(TerminalConfig),
    /// Reveal the nonce for this request.
    Reveal {
        /// The request.
        request_id: String,
        /// The gate's nonce, for the code.
        server_nonce: Nonce,
    },
}

/// Takes the gate's answer, which came over a connection whose server key
/// was `seen`: with no pin yet, that key is pinned (trust on first use,
/// confirmed by the code), even when the gate refused; the request id is
/// remembered for resuming.
pub(crate) fn on_hello(
    state: &mut State,
    gate: &str,
    known_pin: Option<SpkiPin>,
    seen: SpkiPin,
    answer: Result<Answer, TerminalError>,
) -> Result<AfterHello, TerminalError> {
    if known_pin.is_none() {
        state.gate_pin = Some(GatePin {
            gate: gate.to_owned(),
            pin: seen.to_hex(),
        });
    }
    Ok(match answer? {
        Answer::Paired(config) => AfterHello::Paired(config),
        Answer::Pending {
            request_id,
            server_nonce,
        } => {
            if let Some(p) = state.pending.as_mut() {
                p.request_id = Some(request_id.clone());
            }
            AfterHello::Reveal {
                request_id,
                server_nonce,
            }
        }
    })
}

/// The gate refused the reveal: that request is over.
pub(crate) fn on_reveal_refused(state: &mut State) {
    state.pending = None;
}

/// What a status answer means.
#[derive(Debug)]
pub(crate) enum Poll {
    /// Still waiting for an operator.
    Wait,
    /// Approved: finish with this configuration.
    Paired(TerminalConfig),
}

/// Takes a status answer for request `id`. An ended request (rejected,
/// expired, superseded, or approved without a configuration) clears the
/// pending pairing and is an error saying what to do.
pub(crate) fn on_status(
    state: &mut State,
    id: &str,
    answer: RequestStatus,
) -> Result<Poll, TerminalError> {
    let status = match answer.status {
        PairingStatus::Pending => return Ok(Poll::Wait),
        PairingStatus::Approved => match answer.config {
            Some(config) => return Ok(Poll::Paired(config)),
            None => {
                return Err(TerminalError::Gate(
                    "the gate approved the request but sent no configuration".into(),
                ));
            }
        },
        other => other,
    };
    state.pending = None;
    let hint = match status {
        PairingStatus::Superseded => ": another key asked to pair this serial; ask the operator",
        PairingStatus::Expired => ": nobody approved it in time; pair again",
        _ => ": ask the operator, then pair again",
    };
    Err(TerminalError::PairingEnded {
        id: id.to_owned(),
        status: status.as_str().to_owned(),
        hint,
    })
}

/// Keeps a configuration: the terminal is paired with `serial` through
/// `gate`. Refused (state unchanged) when the configuration lacks an
/// HTTPS master or pins.
pub(crate) fn finish(
    state: &mut State,
    gate: &str,
    serial: &str,
    config: &TerminalConfig,
) -> Result<PairedConfig, TerminalError> {
    if !config.is_usable() {
        return Err(TerminalError::Gate(
            "the configuration lacks a master URL or server pins".into(),
        ));
    }
    let paired = PairedConfig {
        serial: serial.to_owned(),
        gate: gate.to_owned(),
        master_url: config.master_url.clone(),
        server_pins: config.server_pins.iter().map(SpkiPin::to_hex).collect(),
        vpn_profile: config.vpn_profile.clone(),
        vpn: config.vpn,
        heartbeat_counter: config.heartbeat_counter,
        trust_store: false,
        server_key_seq: 0,
        recovery_pins: config.recovery_pins.iter().map(SpkiPin::to_hex).collect(),
    };
    state.pending = None;
    state.paired = Some(paired.clone());
    // A new pairing revokes the VPN credential of the one before.
    state.vpn = None;
    Ok(paired)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GATE: &str = "gate.example:7741";

    fn pin(byte: u8) -> SpkiPin {
        SpkiPin::from_bytes([byte; 32])
    }

    fn nonce(byte: u8) -> Nonce {
        Nonce::from_bytes([byte; 32])
    }

    fn config() -> TerminalConfig {
        TerminalConfig {
            master_url: "https://master:7743".into(),
            server_pins: vec![pin(9)],
            recovery_pins: Vec::new(),
            vpn_profile: String::new(),
            vpn: None,
            heartbeat_counter: true,
        }
    }

    fn status(status: PairingStatus, config: Option<TerminalConfig>) -> RequestStatus {
        RequestStatus {
            status,
            request_id: "r1".into(),
            expires_at: String::new(),
            config,
        }
    }

    #[test]
    fn first_contact_pins_the_key_it_saw_and_a_crash_resumes_the_same_request() {
        let s = start(State::default(), GATE, "ATM-1", false, || nonce(1)).unwrap();
        assert_eq!(s.known_pin, None);
        let mut state = s.state;
        let answer = Answer::Pending {
            request_id: "r1".into(),
            server_nonce: nonce(2),
        };
        let next = on_hello(&mut state, GATE, None, pin(5), Ok(answer)).unwrap();
        assert!(matches!(next, AfterHello::Reveal { ref request_id, .. } if request_id == "r1"));
        assert_eq!(state.gate_pin.as_ref().unwrap().pin, pin(5).to_hex());
        // The process dies here; the saved state resumes with the same
        // nonce (so the same commitment) and the pin learned.
        let again = start(state, GATE, "ATM-1", false, || nonce(7)).unwrap();
        assert_eq!(again.nonce, nonce(1));
        assert_eq!(again.known_pin, Some(pin(5)));
        // Another serial draws a fresh nonce.
        let other = start(again.state, GATE, "ATM-2", false, || nonce(7)).unwrap();
        assert_eq!(other.nonce, nonce(7));
    }

    #[test]
    fn a_pin_from_another_gate_is_refused_unless_forgotten() {
        let state = State {
            gate_pin: Some(GatePin {
                gate: "old:7741".into(),
                pin: pin(5).to_hex(),
            }),
            ..State::default()
        };
        let e = start(state.clone(), GATE, "ATM-1", false, || nonce(1)).unwrap_err();
        assert!(matches!(e, TerminalError::OtherGate { .. }), "{e:?}");
        let s = start(state, GATE, "ATM-1", true, || nonce(1)).unwrap();
        assert_eq!((s.known_pin, s.state.gate_pin), (None, None));
        // A known pin is used, not replaced by what a connection shows.
        let pinned = State {
            gate_pin: Some(GatePin {
                gate: GATE.into(),
                pin: pin(5).to_hex(),
            }),
            ..State::default()
        };
        let s = start(pinned, GATE, "ATM-1", false, || nonce(1)).unwrap();
        let mut state = s.state;
        on_hello(
            &mut state,
            GATE,
            s.known_pin,
            pin(6),
            Ok(Answer::Paired(config())),
        )
        .unwrap();
        assert_eq!(state.gate_pin.unwrap().pin, pin(5).to_hex());
        // A refusal still pins the first key seen.
        let s = start(State::default(), GATE, "ATM-1", false, || nonce(1)).unwrap();
        let mut state = s.state;
        let refused = Err(TerminalError::Gate("403 PG-UNKNOWN-SERIAL".into()));
        assert!(on_hello(&mut state, GATE, None, pin(6), refused).is_err());
        assert_eq!(state.gate_pin.unwrap().pin, pin(6).to_hex());
    }

    #[test]
    fn each_status_means_what_the_protocol_says() {
        let mut state = start(State::default(), GATE, "ATM-1", false, || nonce(1))
            .unwrap()
            .state;
        assert!(matches!(
            on_status(&mut state, "r1", status(PairingStatus::Pending, None)),
            Ok(Poll::Wait)
        ));
        assert!(state.pending.is_some());
        assert!(matches!(
            on_status(
                &mut state,
                "r1",
                status(PairingStatus::Approved, Some(config()))
            ),
            Ok(Poll::Paired(_))
        ));
        assert!(on_status(&mut state, "r1", status(PairingStatus::Approved, None)).is_err());
        for (ended, hint) in [
            (PairingStatus::Rejected, "ask the operator"),
            (PairingStatus::Expired, "in time"),
            (PairingStatus::Superseded, "another key"),
        ] {
            let mut state = start(State::default(), GATE, "ATM-1", false, || nonce(1))
                .unwrap()
                .state;
            let e = on_status(&mut state, "r1", status(ended, None)).unwrap_err();
            assert!(e.to_string().contains(hint), "{e}");
            assert!(state.pending.is_none(), "{ended:?} ends the request");
        }
    }

    #[test]
    fn only_a_usable_configuration_is_kept() {
        let mut state = start(State::default(), GATE, "ATM-1", false, || nonce(1))
            .unwrap()
            .state;
        let mut bad = config();
        bad.master_url = "http://plain".into();
        assert!(finish(&mut state, GATE, "ATM-1", &bad).is_err());
        assert!(state.paired.is_none() && state.pending.is_some());
        let paired = finish(&mut state, GATE, "ATM-1", &config()).unwrap();
        assert_eq!(paired.server_pins, [pin(9).to_hex()]);
        assert!(state.pending.is_none());
        assert_eq!(state.paired, Some(paired));
    }
}
