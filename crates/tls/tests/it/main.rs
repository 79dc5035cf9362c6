//! TLS provider tests on 127.0.0.1 with ports the OS picks: mutual TLS
//! with software and SoftHSM2 keys under every version policy, what our
//! server refuses, pinning and trust-store errors, resumption lifetime and
//! handshake timeouts.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod interop;
mod mutual;
mod refusals;
mod resumption;
mod support;
