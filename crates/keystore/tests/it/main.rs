//! Key store tests: one conformance suite run against the software store
//! and a real SoftHSM2 token, then what is particular to each backend.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod conformance;
mod fuzz;
#[cfg(feature = "pkcs11")]
mod pkcs11;
mod software;
mod support;
