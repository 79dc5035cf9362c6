//! The `pairgate` command. Every subcommand prints plain text for people
//! or, with `--json`, one JSON document for scripts. Errors go to stderr
//! (as `{"error": {"message": …}}` with `--json`) with exit status 1.

#![forbid(unsafe_code)]

mod admin;
mod admin_audit;
mod admin_identity;
mod admin_keys;
mod admin_operators;
mod admin_pairing;
mod admin_recovery;
mod admin_rotation;
mod admin_terminal_ca;
mod admin_tokens;
mod admin_vendors;
mod ca;
mod server;
mod vpn;
mod vpn_server;

use clap::{Parser, Subcommand};
use pairgate_agent::Output;

/// mimalloc instead of glibc's malloc: under kept-alive load, perf showed
/// a quarter of the server's CPU in glibc's `_int_malloc`, `_int_free`
/// and `malloc_consolidate` (see docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// pairgate: hardware-backed identity and pairing for unattended terminals.
#[derive(Parser, Debug)]
#[command(name = "pairgate", version, about, propagate_version = true)]
struct Cli {
    /// Print one JSON document instead of text.
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Gate (7741), master (7743) and CAS (7780), or the ones `--services`
    /// names, on the embedded defaults or the given settings; `server
    /// init` sets up the identity without serving.
    Server(server::ServerArgs),
    /// Operators, terminals, pairing approvals, unpair, audit log.
    Admin(admin::AdminArgs),
    /// Terminal side: key store, certificates, trust store.
    Terminal(pairgate_agent::TerminalArgs),
    /// A development certificate authority in the acquirer's role.
    Ca(ca::CaArgs),
    /// The VPN server's side of terminals' VPN profiles: keys, its
    /// configuration, and keeping it current from the store.
    Vpn(vpn::VpnArgs),
    /// Benchmarks, each beside a peer or ceiling measured in the same run.
    Bench(pairgate_bench::BenchArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let out = Output::new(cli.json);
    let result = match cli.command {
        Command::Server(args) => server::run(args, &out),
        Command::Admin(args) => admin::run(args, &out),
        Command::Terminal(args) => pairgate_agent::run(args, &out),
        Command::Ca(args) => ca::run(args, &out),
        Command::Vpn(args) => vpn::run(args, &out),
        Command::Bench(args) => pairgate_bench::run(args, &BenchOutput(&out)),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            out.error(&e);
            std::process::ExitCode::FAILURE
        }
    }
}

/// The bench's output trait over the command's [`Output`].
struct BenchOutput<'a>(&'a Output);

impl pairgate_bench::Output for BenchOutput<'_> {
    fn print(&self, text: &str, value: serde_json::Value) {
        self.0.print(text, value);
    }
}
