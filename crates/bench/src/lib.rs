//! `pairgate bench`: load generators and peer comparisons, in a crate of
//! their own so that nothing a terminal links carries them; the `pairgate`
//! binary hands them its argument parser and its output.
//!
//! - `bench tls`: the TLS provider alone, client and server in one process.
//! - `bench all`: a real `pairgate server` (and a second instance on a
//!   shared PostgreSQL for revocation latency) beside Debian's nginx, under
//!   the same load from this process, each pinned to its own core, with
//!   the `openssl speed` ceiling measured in the same run.
//! - `bench hostile`: a genuine terminal's latency with and without
//!   issue 12's hostile-client mix at full scale.
//! - `bench audit`: an audit view on a long, signed log beside the
//!   whole-chain re-hash views used to do.
//! - `bench onboard`: terminals from a signed vendor manifest pairing with
//!   no operator, beside the gate's rate of new connections.
//! - `bench fleet`: the CAS dashboard's fleet view at 100,000 terminals,
//!   beside the dashboard before it.

mod all;
mod audit;
mod fleet;
mod fleetview;
mod hostile;
mod idle;
mod idle_client;
mod load;
mod nginx;
mod onboard;
mod output;
mod peers;
mod procs;
mod proxy;
mod revocation;
mod tls;
mod wire;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::{Args, Subcommand};

pub use crate::output::Output;
pub use crate::peers::Postgres;

/// `pairgate bench …`
#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Subcommand, Debug)]
enum BenchCommand {
    /// Full and resumed mutual-TLS handshakes per second on loopback.
    Tls {
        /// How long each measurement runs (e.g. 10s, 500ms, 1m).
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        duration: Duration,
        /// Concurrent client connections.
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
        /// PKCS#11 module for the HSM-key rows (SoftHSM2 by default). When
        /// SOFTHSM2_CONF is unset, a throwaway SoftHSM2 token directory is
        /// used.
        #[arg(long, default_value = "/usr/lib/softhsm/libsofthsm2.so")]
        pkcs11_module: PathBuf,
    },
    /// Every figure once: master and gate under load beside nginx,
    /// idle-connection memory, and unpair-to-reject latency across two
    /// instances, against servers this command starts itself.
    All(all::AllArgs),
    /// A genuine terminal's latency at the master with and without the
    /// hostile-client mix (slow connections, large and CA certificates,
    /// unknown-serial and supersede floods, CAS login floods).
    Hostile(hostile::HostileArgs),
    /// The time per audit view at 100,000 records with signed checkpoints,
    /// beside re-hashing the whole chain.
    Audit(audit::AuditArgs),
    /// Pairings per second of terminals a signed vendor manifest vouches
    /// for (no operator), beside new connections per second to the gate.
    Onboard(onboard::OnboardArgs),
    /// The CAS dashboard's fleet view (charts and alerts) for a large
    /// fleet, beside the dashboard before it.
    Fleet(fleetview::FleetArgs),
    /// Idle paired terminals held at once by several masters over
    /// PostgreSQL: memory per connection, and the time for all of them to
    /// reconnect after the masters restart.
    Idle(idle::IdleArgs),
    /// One client process of `bench idle` (started by it).
    #[command(hide = true)]
    IdleClient(idle_client::ClientArgs),
}

/// Parses `10s`, `500ms`, `2m`.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(text.len()),
    );
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 10s or 500ms"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" | "" => value,
        "m" => value * 60.0,
        _ => return Err(format!("unknown unit in {text:?}: use ms, s or m")),
    };
    if !(0.01..=3600.0).contains(&seconds) {
        return Err(format!("{text:?} is outside 10ms..1h"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// `10s` or `250ms`.
pub(crate) fn humanize(d: Duration) -> String {
    if d.as_millis().is_multiple_of(1000) {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// Runs `pairgate bench …`.
pub fn run(args: BenchArgs, out: &dyn Output) -> Result<()> {
    match args.command {
        BenchCommand::Tls {
            duration,
            concurrency,
            pkcs11_module,
        } => tls::run(duration, concurrency, &pkcs11_module, out),
        BenchCommand::All(args) => all::run(args, out),
        BenchCommand::Hostile(args) => hostile::run(args, out),
        BenchCommand::Audit(args) => audit::run(args, out),
        BenchCommand::Onboard(args) => onboard::run(args, out),
        BenchCommand::Fleet(args) => fleetview::run(args, out),
        BenchCommand::Idle(args) => idle::run(args, out),
        BenchCommand::IdleClient(args) => idle_client::run(args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("5h").is_err());
        assert!(parse_duration("0s").is_err());
        assert_eq!(humanize(Duration::from_millis(1500)), "1500ms");
    }
}
