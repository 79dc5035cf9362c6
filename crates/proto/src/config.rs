//! What a paired terminal receives from the gate: where the master is,
//! which server keys to pin, and its VPN profile.

use pairgate_pki::SpkiPin;

/// The configuration of a paired terminal.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TerminalConfig {
    /// `https://host:port` of the master service.
    pub master_url: String,
    /// SPKI pins of the server keys (64 hex digits each on the wire).
    pub server_pins: Vec<SpkiPin>,
    /// Pins of the operator's offline recovery keys, which may sign a
    /// rotation when the server key is lost or stolen.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recovery_pins: Vec<SpkiPin>,
    /// VPN profile text, without a private key (empty until the terminal
    /// has enrolled; see [`crate::vpn`]).
    #[serde(default)]
    pub vpn_profile: String,
    /// The VPN the server offers, if any: the terminal makes its key and
    /// enrols with `POST /v1/vpn` (at the gate right after pairing, or at
    /// the master).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpn: Option<crate::vpn::VpnType>,
    /// The server takes a `counter` in heartbeats (see docs/protocol.md):
    /// the terminal keeps one and sends it one higher each time.
    #[serde(default)]
    pub heartbeat_counter: bool,
}

impl TerminalConfig {
    /// Whether a terminal can use it: a master over HTTPS and at least
    /// one pin.
    pub fn is_usable(&self) -> bool {
        self.master_url.starts_with("https://") && !self.server_pins.is_empty()
    }
}
