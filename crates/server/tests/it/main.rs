//! Server tests on 127.0.0.1 with ports the tests pick themselves, each on
//! SQLite and on PostgreSQL (a fresh database in the throwaway cluster
//! scripts/test starts).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod accounts;
mod bad_input;
mod blocked;
mod browser;
mod bulk;
mod cas;
mod certificate;
mod clones;
mod cluster;
mod fleet;
mod fuzz;
mod hostile;
mod keepalive;
mod manifests;
mod master;
mod metrics;
mod outage;
mod pairing;
mod proxy;
mod rekey;
mod support;
mod vpn;
mod web;
