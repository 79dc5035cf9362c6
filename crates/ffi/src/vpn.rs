//! The terminal's VPN for C firmware (docs/protocol.md, "VPN"): enrol a
//! new VPN key made on the terminal (OpenVPN's in the key store, so on the
//! token with PKCS#11; WireGuard's in a 0600 file in the state
//! directory), and write the profile, completed with the key's place,
//! for the firmware's VPN client.

use std::ffi::c_char;
use std::path::Path;

use pairgate_terminal::vpn::{Fallback, Via, write_profile};

use crate::agent::{PairgateAgent, handle};
use crate::error::{Failure, PairgateStatus, guard};
use crate::text::{put_string, required};

fn internal(e: serde_json::Error) -> Failure {
    Failure::new(PairgateStatus::Internal, e.to_string())
}

/// Makes a new VPN key and enrols it: at the gate when `via_gate` is 1
/// (right after pairing, when the master is reachable only through the
/// VPN), else at the master. The server revokes the credential it
/// replaces. `*result_json` gets `{"type", "enrolled", "address",
/// "server_address", "certificate"?, "profile"}` (the profile holds no
/// private key).
///
/// Ownership: `*result_json` is a new string; free it with
/// `pairgate_string_free`.
///
/// # Safety
/// `agent` is a live handle; `result_json` is valid for one write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pairgate_agent_vpn_enrol(
    agent: *const PairgateAgent,
    via_gate: u8,
    result_json: *mut *mut c_char,
) -> PairgateStatus {
    guard(|| {
        // SAFETY: the caller's contract.
        let handle = unsafe { handle(agent) }?;
        let agent = handle.lock();
        let via = if via_gate == 1 {
            Via::Gate
        } else {
            Via::Master
        };
        let status = handle.runtime.block_on(agent.vpn_enrol(via))?;
        // SAFETY: the caller's contract.
        unsafe {
            put_string(
                result_json,
                serde_json::to_string(&status).map_err(internal)?,
                "result_json",
            )
        }
    })
}

/// Writes the VPN profile to `out_path` (mode 0600, replaced atomically):
/// the master's (enrolling a new key first when the server no longer
/// admits the terminal's credential), or the one the server gave last
/// when the master cannot be reached. WireGuard: a wg-quick file with the
/// terminal's private key, which leaves the terminal nowhere else.
/// OpenVPN: an `.ovpn` naming the key on the token (`pkcs11-providers`,
/// `pkcs11-id`); the firmware's OpenVPN asks for the token's PIN.
/// `*result_json` gets `{"type", "address", "server_address"}`.
///
/// Ownership: `out_path` is only read during the call; `*result_json` is
/// a new string; free it with `pairgate_string_free`.
///
/// # Safety
/// `agent` is a live handle; `out_path` is NUL-terminated; `result_json`
/// is valid for one write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pairgate_agent_vpn_profile(
    agent: *const PairgateAgent,
    out_path: *const c_char,
    result_json: *mut *mut c_char,
) -> PairgateStatus {
    guard(|| {
        // SAFETY: the caller's contract.
        let handle = unsafe { handle(agent) }?;
        // SAFETY: the caller's contract.
        let out = Path::new(unsafe { required(out_path, "out_path") }?);
        let agent = handle.lock();
        let profile = handle.runtime.block_on(agent.vpn_profile(Fallback::Held))?;
        write_profile(out, &profile)?;
        let shown = serde_json::json!({
            "type": profile.vpn_type, "address": profile.address,
            "server_address": profile.server_address,
        });
        // SAFETY: the caller's contract.
        unsafe { put_string(result_json, shown.to_string(), "result_json") }
    })
}
