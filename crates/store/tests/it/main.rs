//! Store tests, each run on SQLite and on PostgreSQL (a fresh database in
//! the throwaway cluster scripts/test starts).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod accounts;
mod audit;
mod bounds;
mod clones;
mod cluster;
mod disk_full;
mod manifests;
mod pairing;
mod request_pages;
mod step_up;
mod support;
mod terminals;
mod vpn;
