//! `libpairgate`: the pairgate terminal agent for firmware written in C.
//! Open an agent on a state directory and a key store, make its identity,
//! pair (a callback shows the code), call the master, or take a mutual-TLS
//! stream to it; enrol a VPN key and write its profile; factory reset. The header is `include/pairgate.h`,
//! generated from this crate with cbindgen (the crate's tests check that
//! it is current).
//!
//! The rules of the boundary, stated once and in the header:
//! - every function returns a [`PairgateStatus`] (stable numbers) and
//!   leaves the message of a failure in `pairgate_last_error()`;
//! - no panic crosses into C: each body runs under `catch_unwind`, and a
//!   panic is reported as `PAIRGATE_STATUS_INTERNAL`;
//! - what libpairgate allocates, the caller frees with the matching
//!   `…_free` function; what the caller passes is only read during the
//!   call;
//! - this is the workspace's one crate with `unsafe` code: each block
//!   says why it is sound, and each `unsafe fn` states its contract.

mod agent;
mod error;
mod stream;
mod text;
mod vpn;

pub use agent::{
    PairgateAgent, PairgateCodeCallback, pairgate_agent_call, pairgate_agent_factory_reset,
    pairgate_agent_free, pairgate_agent_init, pairgate_agent_open, pairgate_agent_pair,
    pairgate_agent_status,
};
pub use error::{PairgateStatus, pairgate_last_error};
pub use stream::{
    PairgateStream, pairgate_agent_connect, pairgate_stream_free, pairgate_stream_read,
    pairgate_stream_write,
};
pub use text::{PairgateBytes, pairgate_bytes_free, pairgate_string_free};
pub use vpn::{pairgate_agent_vpn_enrol, pairgate_agent_vpn_profile};

/// The library's version, e.g. `"0.1.0"`.
///
/// Ownership: a static string; do not free it.
#[unsafe(no_mangle)]
pub extern "C" fn pairgate_version() -> *const std::ffi::c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}
