//! Following the server's key (docs/protocol.md, "Server key rotation"):
//! [`Agent::follow_server_keys`] (which `pairgate terminal heartbeat` runs
//! after each heartbeat) asks the master for its keys and pins the next
//! key once a chain of statements from a pin it holds announces it;
//! a master presenting a key the agent does not pin (it slept through the
//! announcement) sends it to the gate for the chain, and the key is
//! accepted only if every link, starting at a held pin, verifies. In
//! trust-store mode none of this applies: the trust store decides.

use pairgate_pki::SpkiPin;
use pairgate_pki::rotation::{PinSet, SignedRotation, advance};
use pairgate_proto::server_keys::ServerKeys;
use pairgate_tls::client::ServerTrust;
use pairgate_tls::https::HttpsResponse;

use crate::{Agent, TerminalError};

fn parsed(pins: &[String]) -> Vec<SpkiPin> {
    pins.iter().filter_map(|p| p.parse().ok()).collect()
}

/// The pins a chain may start from: the server keys held and the
/// operator's recovery keys, at the rotation the terminal follows.
fn held(paired: &crate::PairedConfig) -> PinSet {
    let mut pins = parsed(&paired.server_pins);
    pins.extend(parsed(&paired.recovery_pins));
    PinSet {
        pins,
        seq: paired.server_key_seq,
    }
}

impl Agent {
    /// Asks the master for the server's keys and pins what the rotation
    /// statements allow; `true` when the pins changed.
    pub async fn follow_server_keys(&self) -> Result<bool, TerminalError> {
        let (paired, trust) = self.paired()?;
        if paired.trust_store {
            return Ok(false);
        }
        let url = format!("{}/v1/server-keys", paired.master_url.trim_end_matches('/'));
        let r = self.https(trust)?.request("GET", &url, &[], None).await?;
        self.adopt(&r, None)
    }

    /// After the master presented `presented`, which no held pin names:
    /// the chain of statements from the gate (trusting its answer only as
    /// far as the statements verify from a held pin).
    pub(crate) async fn recover_server_key(&self, presented: SpkiPin) -> Result<(), TerminalError> {
        let (paired, _) = self.paired()?;
        let url = format!("https://{}/v1/server-keys", paired.gate);
        let r = self
            .https(ServerTrust::FirstContact)?
            .request("GET", &url, &[], None)
            .await?;
        if r.server_pin != Some(presented) {
            return Err(TerminalError::Gate(format!(
                "the gate presents another key than the master ({presented}); not following it"
            )));
        }
        self.adopt(&r, Some(presented)).map(|_| ())
    }

    /// Pins what `r` (a `GET /v1/server-keys` answer) allows from the
    /// pins held; with `presented`, the answer must name that key current.
    fn adopt(&self, r: &HttpsResponse, presented: Option<SpkiPin>) -> Result<bool, TerminalError> {
        if r.status != 200 {
            return Err(crate::rekey::refusal(r));
        }
        let keys: ServerKeys = serde_json::from_slice(&r.body)
            .map_err(|e| TerminalError::Io(format!("the server's keys do not read: {e}")))?;
        if let Some(presented) = presented
            && keys.current != presented
        {
            return Err(TerminalError::Gate(format!(
                "the server presents {presented} but names {} its key",
                keys.current
            )));
        }
        let rotations = keys
            .rotations
            .iter()
            .map(|r| r.signed())
            .collect::<Result<Vec<SignedRotation>, String>>()
            .map_err(TerminalError::Io)?;
        let mut state = self.state.load()?;
        let paired = state.paired.as_mut().ok_or(TerminalError::NotPaired)?;
        let after = advance(&held(paired), keys.current, keys.next, &rotations)?;
        let pins: Vec<String> = after.pins.iter().map(SpkiPin::to_hex).collect();
        // Recovery pins are learned only from the master over a pinned
        // connection (not from a gate met after a key change), and add to
        // those held; none is dropped.
        let mut recovery = paired.recovery_pins.clone();
        let learned = if presented.is_none() {
            keys.recovery.as_slice()
        } else {
            &[]
        };
        for pin in learned.iter().map(SpkiPin::to_hex) {
            if !recovery.contains(&pin) {
                recovery.push(pin);
            }
        }
        let changed = pins != paired.server_pins
            || after.seq != paired.server_key_seq
            || recovery != paired.recovery_pins;
        if changed {
            paired.server_pins = pins;
            paired.server_key_seq = after.seq;
            paired.recovery_pins = recovery;
            self.state.save(&state)?;
        }
        Ok(changed)
    }
}
