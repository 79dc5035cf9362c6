//! Status codes, the per-thread last error message, and the guard every
//! exported function runs its body in: no panic crosses into C.

use std::cell::RefCell;
use std::ffi::{CString, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};

use pairgate_terminal::TerminalError;

/// The outcome of every libpairgate call. The numbers are stable: a
/// code keeps its number in every later version, and new codes are
/// appended. `pairgate_last_error()` has the message of a failed call.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PairgateStatus {
    /// Success.
    Ok = 0,
    /// A required pointer was NULL, a string was not UTF-8, or a value was
    /// out of range.
    InvalidArgument = 1,
    /// The key store failed (wrong PIN or passphrase, token missing, …).
    KeyStore = 2,
    /// A TLS or HTTPS failure other than a server key mismatch.
    Tls = 3,
    /// The server presented a key that is not the pinned one; the message
    /// names both. Never retried.
    ServerKeyMismatch = 4,
    /// A certificate could not be made or read.
    Certificate = 5,
    /// The state directory could not be read or written.
    Io = 6,
    /// The terminal has no identity yet: call `pairgate_agent_init`.
    NotInitialised = 7,
    /// The identity has no certificate yet (CSR mode, before the CA's
    /// certificate was imported).
    NoCertificate = 8,
    /// The terminal is not paired: call `pairgate_agent_pair`.
    NotPaired = 9,
    /// The server key is pinned for another gate address.
    OtherGate = 10,
    /// The gate refused or answered something unexpected.
    Gate = 11,
    /// The pairing request was rejected, expired or superseded.
    PairingEnded = 12,
    /// The wait for approval ran out; the request stays open and a later
    /// `pairgate_agent_pair` resumes it (the same code).
    StillWaiting = 13,
    /// A stream operation on a closed or failed connection.
    Closed = 14,
    /// The master refused a request of the agent's own protocol (a
    /// re-key); the message has its `PG-…` code.
    MasterRefused = 15,
    /// A bug in libpairgate (a caught panic). The agent may be used again.
    Internal = 99,
}

/// A failed call: its status and the message for `pairgate_last_error`.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) status: PairgateStatus,
    pub(crate) message: String,
}

impl Failure {
    /// A failure with `status` and `message`.
    pub(crate) fn new(status: PairgateStatus, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// A NULL, non-UTF-8 or out-of-range argument.
    pub(crate) fn argument(message: impl Into<String>) -> Self {
        Self::new(PairgateStatus::InvalidArgument, message)
    }
}

impl From<TerminalError> for Failure {
    fn from(e: TerminalError) -> Self {
        let status = match &e {
            TerminalError::KeyStore(_) => PairgateStatus::KeyStore,
            TerminalError::Tls(pairgate_tls::TlsError::PinMismatch(_))
            | TerminalError::ServerKey(_) => PairgateStatus::ServerKeyMismatch,
            TerminalError::Tls(_) => PairgateStatus::Tls,
            TerminalError::Certificate(_) => PairgateStatus::Certificate,
            TerminalError::Io(_) | TerminalError::NotFresh(_) | TerminalError::RestorePoint(_) => {
                PairgateStatus::Io
            }
            TerminalError::NotInitialised => PairgateStatus::NotInitialised,
            TerminalError::NoCertificate(_) => PairgateStatus::NoCertificate,
            TerminalError::NotPaired => PairgateStatus::NotPaired,
            TerminalError::OtherGate { .. } => PairgateStatus::OtherGate,
            TerminalError::Gate(_) => PairgateStatus::Gate,
            TerminalError::Master { .. } => PairgateStatus::MasterRefused,
            TerminalError::PairingEnded { .. } => PairgateStatus::PairingEnded,
            TerminalError::StillWaiting(_) => PairgateStatus::StillWaiting,
        };
        Self::new(status, e.to_string())
    }
}

impl From<pairgate_keystore::KeyStoreError> for Failure {
    fn from(e: pairgate_keystore::KeyStoreError) -> Self {
        Self::new(PairgateStatus::KeyStore, e.to_string())
    }
}

thread_local! {
    static LAST_ERROR: RefCell<Option<CString>> = const { RefCell::new(None) };
}

fn set_last_error(message: Option<String>) {
    let text = message.map(|m| {
        // A message with a NUL in it still reaches C, cut at nothing.
        CString::new(m.replace('\0', " ")).unwrap_or_default()
    });
    LAST_ERROR.with(|cell| *cell.borrow_mut() = text);
}

/// Runs an exported function's body: its failure becomes a status and the
/// thread's last error; a panic becomes `Internal` instead of unwinding
/// into C. A success clears the last error.
pub(crate) fn guard(body: impl FnOnce() -> Result<(), Failure>) -> PairgateStatus {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => {
            set_last_error(None);
            PairgateStatus::Ok
        }
        Ok(Err(failure)) => {
            set_last_error(Some(failure.message));
            failure.status
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".to_owned());
            set_last_error(Some(format!("internal error in libpairgate: {what}")));
            PairgateStatus::Internal
        }
    }
}

/// The message of the last failed call on this thread, or NULL when the
/// last call succeeded.
///
/// Ownership: the string belongs to libpairgate; it stays valid until the
/// next libpairgate call on the same thread. Do not free it.
#[unsafe(no_mangle)]
pub extern "C" fn pairgate_last_error() -> *const c_char {
    LAST_ERROR.with(|cell| {
        cell.borrow()
            .as_ref()
            .map_or(std::ptr::null(), |s| s.as_ptr())
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;

    fn last() -> Option<String> {
        let ptr = pairgate_last_error();
        if ptr.is_null() {
            return None;
        }
        // SAFETY: a non-NULL pointer from pairgate_last_error is a valid
        // NUL-terminated string until the next call on this thread.
        let text = unsafe { std::ffi::CStr::from_ptr(ptr) };
        Some(text.to_str().unwrap().to_owned())
    }

    #[test]
    fn a_panic_becomes_internal_and_a_success_clears_the_message() {
        let status = guard(|| panic!("boom"));
        assert_eq!(status, PairgateStatus::Internal);
        assert_eq!(last().unwrap(), "internal error in libpairgate: boom");
        assert_eq!(guard(|| Ok(())), PairgateStatus::Ok);
        assert_eq!(last(), None);
    }

    #[test]
    fn a_failure_keeps_its_status_and_message() {
        let status = guard(|| Err(TerminalError::NotPaired.into()));
        assert_eq!(status, PairgateStatus::NotPaired);
        assert!(last().unwrap().contains("not paired"));
        let status = guard(|| Err(Failure::argument("state_dir is NULL\0x")));
        assert_eq!(status, PairgateStatus::InvalidArgument);
        assert_eq!(last().unwrap(), "state_dir is NULL x");
    }
}
