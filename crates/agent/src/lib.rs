//! The terminal's command layer, shared by two binaries: the lean
//! `pairgate-agent` (this crate's binary, built from pki, keystore, tls,
//! terminal and proto alone) and `pairgate terminal …` in the full
//! `pairgate` command. Both take the same arguments and print the same
//! text and JSON, because both run [`run`].
//!
//! This crate is the front end of binaries, so its errors are `anyhow`
//! errors with context for people; the typed errors live in the crates
//! it calls.

#![forbid(unsafe_code)]

mod agent;
pub mod output;
pub mod terminal;
mod vpn;

pub use crate::output::Output;
pub use crate::terminal::{TerminalArgs, run};
