//! Integration tests of the pure PKI rules, with OpenSSL as the peer that
//! checks what we make and makes what we must refuse.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod ca;
mod fuzz;
mod issued;
mod manifest;
mod trust;
mod vectors;
