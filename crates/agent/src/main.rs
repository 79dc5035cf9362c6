//! `pairgate-agent`: the terminal side of pairgate as a binary of its own,
//! for firmware that shells out to it. `pairgate-agent ARGS` does what
//! `pairgate terminal ARGS` does, without the server, database and web UI
//! linked in.

#![forbid(unsafe_code)]

use clap::Parser;
use pairgate_agent::{Output, TerminalArgs};

/// pairgate-agent: the terminal's key store, pairing and master calls.
#[derive(Parser, Debug)]
#[command(name = "pairgate-agent", version, about)]
struct Cli {
    /// Print one JSON document instead of text.
    #[arg(long, global = true)]
    json: bool,

    #[command(flatten)]
    terminal: TerminalArgs,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let out = Output::new(cli.json);
    match pairgate_agent::run(cli.terminal, &out) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            out.error(&e);
            std::process::ExitCode::FAILURE
        }
    }
}
