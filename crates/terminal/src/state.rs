//! The terminal's state file, `<state dir>/state.json`: which alias is the
//! identity, the server pin per gate address, a pairing in progress (so a
//! restarted agent resumes it), and the paired configuration. Every write
//! replaces the file atomically (mode 0600), so a crash leaves the old or
//! the new state, never half of one.

use std::path::{Path, PathBuf};

use crate::TerminalError;

/// File name inside the state directory.
pub const STATE_FILE: &str = "state.json";

/// A pairing the agent has started and not finished.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PendingPairing {
    /// Gate address (`host:port`).
    pub gate: String,
    /// Serial asked for.
    pub serial: String,
    /// The terminal nonce (hex): kept so that a restart sends the same
    /// commitment and gets the same request back.
    pub terminal_nonce: String,
    /// The request id, once the gate answered.
    pub request_id: Option<String>,
}

/// What pairing gave the terminal.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PairedConfig {
    /// The serial it is paired as.
    pub serial: String,
    /// The gate it paired through.
    pub gate: String,
    /// The master URL.
    pub master_url: String,
    /// SPKI pins (hex) of the server keys.
    pub server_pins: Vec<String>,
    /// VPN profile text, without a private key (the server's).
    pub vpn_profile: String,
    /// The VPN the server offers, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpn: Option<pairgate_proto::VpnType>,
    /// The server takes a heartbeat counter.
    #[serde(default)]
    pub heartbeat_counter: bool,
    /// The server is trusted by the terminal's trust store (its
    /// certificate is there or chains to an entry), not by pins.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub trust_store: bool,
    /// The server key rotation the first pin came from (0: the key paired
    /// with).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub server_key_seq: u64,
    /// Pins (hex) of the operator's offline recovery keys: a rotation one
    /// of them signs is followed like one a pinned server key signs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recovery_pins: Vec<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The whole state.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// Key alias of the identity, once initialised.
    pub alias: Option<String>,
    /// The gate address and the server pin learned there.
    pub gate_pin: Option<GatePin>,
    /// A pairing in progress.
    pub pending: Option<PendingPairing>,
    /// The paired configuration.
    pub paired: Option<PairedConfig>,
    /// The last heartbeat counter sent: one higher each heartbeat, kept
    /// here (and so in a restore point), so that a copy restored beside
    /// the original shows itself by repeating or going back.
    #[serde(default)]
    pub heartbeat_counter: u64,
    /// A re-key in progress: the new key is made and may have been
    /// recorded by the server; the next `rekey` finds out which.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rekey: Option<PendingRekey>,
    /// The VPN credential and profile the server gave (no private key):
    /// `vpn up` uses it without asking the master, which may be
    /// reachable only through the VPN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpn: Option<pairgate_proto::VpnStatus>,
    /// The key-store alias of the OpenVPN key in use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpn_alias: Option<String>,
}

/// A new key made for a re-key that has not been switched to yet.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PendingRekey {
    /// Its alias in the key store (the master knows it, if at all, by
    /// the certificate under that alias).
    pub alias: String,
}

/// A server pin learned at a gate address.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GatePin {
    /// `host:port`.
    pub gate: String,
    /// SPKI pin (hex).
    pub pin: String,
}

/// The state file of a state directory.
#[derive(Clone, Debug)]
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    /// The state file in `dir` (created 0700 when missing).
    pub fn new(dir: &Path) -> Result<Self, TerminalError> {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(dir)
            .map_err(|e| TerminalError::Io(format!("creating {}: {e}", dir.display())))?;
        Ok(Self {
            path: dir.join(STATE_FILE),
        })
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    /// Reads the state; a missing file is the empty state.
    pub fn load(&self) -> Result<State, TerminalError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| TerminalError::Io(format!("{} is damaged: {e}", self.path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(TerminalError::Io(format!(
                "reading {}: {e}",
                self.path.display()
            ))),
        }
    }

    /// Replaces the state atomically.
    pub fn save(&self, state: &State) -> Result<(), TerminalError> {
        let bytes = serde_json::to_vec_pretty(state)
            .map_err(|e| TerminalError::Io(format!("encoding the state: {e}")))?;
        pairgate_keystore::write_atomic(&self.path, &bytes)?;
        Ok(())
    }

    /// Removes the state file.
    pub fn remove(&self) -> Result<(), TerminalError> {
        match std::fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(TerminalError::Io(format!(
                "removing {}: {e}",
                self.path.display()
            ))),
        }
    }
}
