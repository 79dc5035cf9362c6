//! The agent handle: open, init, pair (with a code callback), status,
//! calls to the master, factory reset.

use std::ffi::{CString, c_char, c_void};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use pairgate_keystore::{KeyStoreUri, Passphrase};
use pairgate_terminal::{Agent, IdentityMode, Init, PairOptions, PairingDisplay};
use pairgate_tls::TlsPolicy;

use crate::error::{Failure, PairgateStatus, guard};
use crate::text::{PairgateBytes, bytes, optional, put_string, required};

/// Environment variable holding the software key store's passphrase, as
/// for `pairgate-agent`.
const PASSPHRASE_ENV: &str = "PAIRGATE_KEYSTORE_PASSPHRASE";

/// A terminal agent on a state directory and a key store. Opaque.
///
/// Thread safety: a handle may be used from any thread; calls on one
/// handle are serialised (a pairing in progress holds it until it
/// returns). Handles on different state directories are independent.
pub struct PairgateAgent {
    agent: Mutex<Agent>,
    pub(crate) runtime: Arc<tokio::runtime::Runtime>,
}

impl PairgateAgent {
    /// The agent, locked for one call.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Agent> {
        // A panic while locked is caught at the boundary; the agent keeps
        // no in-memory state a panic could leave half-done.
        self.agent
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Called with the pairing code as soon as it is known: show `code`
/// (`NNNN-NNNN`) on the screen for the location contact to read out.
/// Both strings are valid during the call only. `user_data` is the
/// pointer given to `pairgate_agent_pair`. Called on the thread that
/// called `pairgate_agent_pair`, before that returns; it must not call
/// libpairgate with the same agent (that call would wait for the pairing,
/// which waits for the callback).
pub type PairgateCodeCallback = Option<
    unsafe extern "C" fn(user_data: *mut c_void, request_id: *const c_char, code: *const c_char),
>;

/// The C callback as the agent's display.
struct CallbackDisplay {
    callback: PairgateCodeCallback,
    user_data: *mut c_void,
}

// SAFETY: the agent calls the display only inside the pairing future,
// which `block_on` polls on the thread that called pairgate_agent_pair;
// the pointer never reaches another thread.
unsafe impl Send for CallbackDisplay {}
// SAFETY: as for Send; the display is never shared across threads.
unsafe impl Sync for CallbackDisplay {}

impl PairingDisplay for CallbackDisplay {
    fn show_code(&self, request_id: &str, code: &pairgate_pki::PairingCode) {
        let (Some(callback), Ok(id), Ok(code)) = (
            self.callback,
            CString::new(request_id),
            CString::new(code.to_string()),
        ) else {
            return;
        };
        // SAFETY: the callback is the caller's function with the documented
        // signature; both strings live until it returns.
        unsafe { callback(self.user_data, id.as_ptr(), code.as_ptr()) };
    }
}

/// Reads the handle behind `agent`.
///
/// # Safety
/// `agent` is NULL or a live handle from `pairgate_agent_open`.
pub(crate) unsafe fn handle<'a>(agent: *const PairgateAgent) -> Result<&'a PairgateAgent, Failure> {
    // SAFETY: the caller's contract.
    unsafe { agent.as_ref() }.ok_or_else(|| Failure::argument("agent is NULL"))
}

/// Opens an agent on `state_dir` (created if missing) with its identity
/// in `keystore_uri`: `file:/dir` (the encrypted software store) or
/// `pkcs11:token=…?module-path=…&pin-source=file:…`; NULL means
/// `file:<state_dir>/keys`. The key alias is the URI's `object=`, else
/// `terminal`. `passphrase` unlocks a software store; NULL reads
/// `PAIRGATE_KEYSTORE_PASSPHRASE`.
///
/// Ownership: on success `*out` is a new handle the caller frees with
/// `pairgate_agent_free`. The strings are only read during the call.
///
/// # Safety
/// The strings are NULL or NUL-terminated; `out` is valid for one write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pairgate_agent_open(
    state_dir: *const c_char,
    keystore_uri: *const c_char,
    passphrase: *const c_char,
    out: *mut *mut PairgateAgent,
) -> PairgateStatus {
    guard(|| {
        if out.is_null() {
            return Err(Failure::argument("out is NULL"));
        }
        // SAFETY: the caller's contract for each string.
        let state_dir = Path::new(unsafe { required(state_dir, "state_dir") }?);
        // SAFETY: as above.
        let uri: KeyStoreUri = match unsafe { optional(keystore_uri, "keystore_uri") }? {
            Some(text) => text.parse()?,
            None => KeyStoreUri::File(state_dir.join("keys")),
        };
        let passphrase = match &uri {
            KeyStoreUri::Pkcs11(_) => None,
            // SAFETY: as above.
            KeyStoreUri::File(_) => match unsafe { optional(passphrase, "passphrase") }? {
                Some(text) => Some(Passphrase::new(text)?),
                None => Passphrase::from_env(PASSPHRASE_ENV)?,
            },
        };
        let store = pairgate_keystore::open(&uri, passphrase, true)?;
        let alias = uri.alias(None)?;
        let agent = Agent::new(state_dir, Arc::from(store), alias, TlsPolicy::default())?;
        // Multi-threaded: HSM signing runs under block_in_place.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| {
                Failure::new(
                    PairgateStatus::Internal,
                    format!("starting the runtime: {e}"),
                )
            })?;
        let handle = Box::new(PairgateAgent {
            agent: Mutex::new(agent),
            runtime: Arc::new(runtime),
        });
        // SAFETY: checked non-NULL above; writable by the caller's contract.
        unsafe { out.write(Box::into_raw(handle)) };
        Ok(())
    })
}

/// Frees an agent. NULL is ignored. Streams opened from it stay usable
/// until they are freed.
///
/// # Safety
/// `agent` is NULL or a handle from `pairgate_agent_open` not yet freed,
/// and no other thread is using it.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pairgate_agent_free(agent: *mut PairgateAgent) {
    if !agent.is_null() {
        // SAFETY: made by Box::into_raw in pairgate_agent_open, freed once.
        drop(unsafe { Box::from_raw(agent) });
    }
}

/// First boot: a P-256 key made inside the key store and a self-signed
/// certificate; `*out` gets its Terminal Certificate Fingerprint (64 hex
/// digits). With `csr_subject` (e.g. `"CN=ATM-0042, O=Operator"`),
/// a CSR signed inside the key store instead; `*out` gets its PEM. Run
/// again, it keeps an existing key.
///
/// Ownership: `*out` is a new string; free it with `pairgate_string_free`.
///
/// # Safety
/// `agent` is a live handle; `csr_subject` is NULL or NUL-terminated;
/// `out` is valid for one write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pairgate_agent_init(
    agent: *const PairgateAgent,
    csr_subject: *const c_char,
    out: *mut *mut c_char,
) -> PairgateStatus {
    guard(|| {
        // SAFETY: the caller's contract.
        let handle = unsafe { handle(agent) }?;
        // SAFETY: the caller's contract.
        let mode = match unsafe { optional(csr_subject, "csr_subject") }? {
            Some(text) => IdentityMode::Csr(
                text.parse()
                    .map_err(|e| Failure::argument(format!("csr_subject: {e}")))?,
            ),
            None => IdentityMode::SelfSigned,
        };
        let made = handle.lock().init(&mode, SystemTime::now())?;
        let text = match made {
            Init::Certified(fp) => fp.to_hex(),
            Init::Csr(pem) => pem,
        };
        // SAFETY: the caller's contract.
        unsafe { put_string(out, text, "out") }
    })
}

/// Pairs with the server through its gate at `gate` (`host:port`) as
/// `serial` (`model` and `firmware` may be NULL). `on_code` is called with
/// the code to show as soon as it is known; the call then waits for an
/// operator's approval, at most `timeout_secs` seconds (0: until approved
/// or ended). On success `*config_json` (if `config_json` is not NULL)
/// gets the paired configuration as JSON. A call interrupted or timed out
/// (`STILL_WAITING`) resumes the same request, with the same code.
///
/// Ownership: `*config_json` is a new string; free it with
/// `pairgate_string_free`.
///
/// # Safety
/// `agent` is a live handle; the strings are NULL or NUL-terminated;
/// `config_json` is NULL or valid for one write; `on_code` is NULL or a
/// function with the documented signature.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pairgate_agent_pair(
    agent: *const PairgateAgent,
    gate: *const c_char,
    serial: *const c_char,
    model: *const c_char,
    firmware: *const c_char,
    timeout_secs: u32,
    on_code: PairgateCodeCallback,
    user_data: *mut c_void,
    config_json: *mut *mut c_char,
) -> PairgateStatus {
    guard(|| {
        // SAFETY: the caller's contract for the handle and each string.
        let (handle, gate, serial, model, firmware) = unsafe {
            (
                handle(agent)?,
                required(gate, "gate")?,
                required(serial, "serial")?,
                optional(model, "model")?.unwrap_or_default(),
                optional(firmware, "firmware")?.unwrap_or_default(),
            )
        };
        let options = PairOptions {
            gate: gate.to_owned(),
            serial: serial.to_owned(),
            model: model.to_owned(),
            firmware: firmware.to_owned(),
            forget_pin: false,
            poll_wait: Duration::from_secs(25),
            give_up_after: (timeout_secs > 0).then(|| Duration::from_secs(timeout_secs.into())),
            trust_store: false,
        };
        let display = CallbackDisplay {
            callback: on_code,
            user_data,
        };
        let agent = handle.lock();
        let paired = handle.runtime.block_on(agent.pair(&options, &display))?;
        if !config_json.is_null() {
            let json = serde_json::to_string(&paired)
                .map_err(|e| Failure::new(PairgateStatus::Internal, e.to_string()))?;
            // SAFETY: non-NULL, writable by the caller's contract.
            unsafe { put_string(config_json, json, "config_json") }?;
        }
        Ok(())
    })
}

/// The agent's identity, pin and pairing state as JSON (the document
/// `pairgate-agent --json status` prints).
///
/// Ownership: `*status_json` is a new string; free it with
/// `pairgate_string_free`.
///
/// # Safety
/// `agent` is a live handle; `status_json` is valid for one write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pairgate_agent_status(
    agent: *const PairgateAgent,
    status_json: *mut *mut c_char,
) -> PairgateStatus {
    guard(|| {
        // SAFETY: the caller's contract.
        let handle = unsafe { handle(agent) }?;
        let status = handle.lock().status()?;
        let json = serde_json::to_string(&status)
            .map_err(|e| Failure::new(PairgateStatus::Internal, e.to_string()))?;
        // SAFETY: the caller's contract.
        unsafe { put_string(status_json, json, "status_json") }
    })
}

/// Replaces the agent's key over the master (docs/protocol.md, "Re-key"):
/// a new key made in the key store and proven with the current one; the
/// master then refuses the old key, which is deleted. With
/// `renew_before_secs` above 0, only when the certificate ends within
/// that many seconds (less a jitter fixed by its fingerprint, so a fleet
/// does not re-key at once); with 0, at once. Call it from the firmware's
/// daily housekeeping.
///
/// `*result_json` gets `{"alias", "fingerprint", "previous_fingerprint",
/// "previous_alias"}`, or `null` when the certificate was not due.
///
/// Ownership: `*result_json` is a new string; free it with
/// `pairgate_string_free`.
///
/// # Safety
/// `agent` is a live handle; `result_json` is valid for one write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pairgate_agent_rekey(
    agent: *const PairgateAgent,
    renew_before_secs: u64,
    result_json: *mut *mut c_char,
) -> PairgateStatus {
    guard(|| {
        // SAFETY: the caller's contract.
        let handle = unsafe { handle(agent) }?;
        let agent = handle.lock();
        let now = std::time::SystemTime::now();
        let done = match renew_before_secs {
            0 => Some(handle.runtime.block_on(agent.rekey(now))?),
            secs => {
                let window = std::time::Duration::from_secs(secs);
                handle.runtime.block_on(agent.rekey_if_due(now, window))?
            }
        };
        let json = serde_json::to_string(&done)
            .map_err(|e| Failure::new(PairgateStatus::Internal, e.to_string()))?;
        // SAFETY: the caller's contract.
        unsafe { put_string(result_json, json, "result_json") }
    })
}

/// Asks the master for the server's keys and pins an announced next key
/// when a chain of rotation statements from a held pin allows it (what
/// `pairgate-agent heartbeat` does after each heartbeat; docs/protocol.md,
/// "Server key rotation"). `*changed` is 1 when the pins changed. A
/// terminal that never calls it still follows a rotation, from the gate,
/// when a call meets the new key.
///
/// # Safety
/// `agent` is a live handle; `changed` is NULL or valid for one write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pairgate_agent_follow_server_keys(
    agent: *const PairgateAgent,
    changed: *mut u8,
) -> PairgateStatus {
    guard(|| {
        // SAFETY: the caller's contract.
        let handle = unsafe { handle(agent) }?;
        let agent = handle.lock();
        let moved = handle.runtime.block_on(agent.follow_server_keys())?;
        if !changed.is_null() {
            // SAFETY: non-NULL, writable by the caller's contract.
            unsafe { changed.write(u8::from(moved)) };
        }
        Ok(())
    })
}

/// Calls the master over mutual TLS with the paired server pins: `method`
/// (`GET`, `POST`, …) on `path` (e.g. `/v1/me`) with `body_len` bytes of
/// JSON body (none when 0). A call that reached the master succeeds
/// whatever its HTTP status: `*http_status` gets it and `*response` the
/// body.
///
/// Ownership: `body` is only read during the call; `*response` is new
/// bytes, freed with `pairgate_bytes_free`.
///
/// # Safety
/// `agent` is a live handle; the strings are NUL-terminated; `body` is
/// NULL or `body_len` readable bytes; `http_status` and `response` are
/// valid for one write each.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pairgate_agent_call(
    agent: *const PairgateAgent,
    method: *const c_char,
    path: *const c_char,
    body: *const u8,
    body_len: usize,
    http_status: *mut u16,
    response: *mut PairgateBytes,
) -> PairgateStatus {
    guard(|| {
        if http_status.is_null() || response.is_null() {
            return Err(Failure::argument("http_status or response is NULL"));
        }
        // SAFETY: the caller's contract for the handle, strings and body.
        let (handle, method, path, body) = unsafe {
            (
                handle(agent)?,
                required(method, "method")?,
                required(path, "path")?,
                bytes(body, body_len, "body")?,
            )
        };
        if !path.starts_with('/') {
            return Err(Failure::argument(format!(
                "path {path:?} does not start with /"
            )));
        }
        let body = (!body.is_empty()).then(|| body.to_vec());
        let agent = handle.lock();
        let answer = handle.runtime.block_on(agent.call(method, path, body))?;
        // SAFETY: both checked non-NULL above, writable by the caller's
        // contract.
        unsafe {
            http_status.write(answer.status);
            response.write(PairgateBytes::from_vec(answer.body));
        }
        Ok(())
    })
}

/// Wipes the terminal's keys, certificates, trust store, pins and pairing
/// state. The handle stays open, with no identity.
///
/// # Safety
/// `agent` is a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pairgate_agent_factory_reset(
    agent: *const PairgateAgent,
) -> PairgateStatus {
    guard(|| {
        // SAFETY: the caller's contract.
        let handle = unsafe { handle(agent) }?;
        Ok(handle.lock().factory_reset()?)
    })
}
