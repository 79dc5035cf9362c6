//! End-to-end tests of the `pairgate` binary: the terminal key store and
//! the development CA, checked by OpenSSL, on the software store and on a
//! real SoftHSM2 token; the server and admin commands on SQLite and
//! PostgreSQL.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod admin;
mod agent;
mod bench;
mod ca;
mod clones;
mod cluster;
mod firmware;
mod keys;
mod manifests;
mod netns;
mod operations;
mod rekey;
mod rotation;
mod support;
mod trust_store;
mod vpn;
