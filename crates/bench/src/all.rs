//! `pairgate bench all`: every published figure in one run. It starts a
//! `pairgate server` on its embedded SQLite and Debian's nginx, pins them
//! to the server core and itself to the client core, pairs a fleet of
//! simulated terminals through the real protocol, loads both servers with
//! the same client code, then starts two instances on one PostgreSQL for
//! unpair-to-reject latency, and ends with `openssl speed` on the same
//! machine. Figures are per server CPU-second where the load generator,
//! not the server, is the limit.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use pairgate_store::Store;
use pairgate_tls::client::TlsClient;
use pairgate_tls::{KeyExchange, TlsPolicy};

use super::fleet::{Approvers, BenchCa, BenchTerminal, enrol, register, wait_paired};
use super::load::{self, Idle, Run, Target};
use super::nginx::{Nginx, Tls, find_nginx};
use super::parse_duration;
use super::peers::{PairgateServer, Postgres};
use super::procs;
use super::proxy::{self, ProxyFigures, Upstreams};
use super::revocation::{self, Instance, Revocation};
use super::wire::Request;
use crate::output::Output;

mod report;
use report::Report;

/// `pairgate bench all` options.
#[derive(Args, Debug)]
pub struct AllArgs {
    /// How long each throughput case runs (e.g. 10s for a quick look,
    /// 60s for the published table).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Connection loops of the handshake and gate cases.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Kept-alive connections, and paired terminals in the fleet.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// How long the sustained proxy run lasts (its errors and the
    /// TIME_WAIT sockets towards the upstream are reported).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    sustained: Duration,
    /// Idle connections held for the memory figure.
    #[arg(long, default_value_t = 10_000)]
    idle: usize,
    /// Registered terminals that ask to pair in the gate case.
    #[arg(long, default_value_t = 256)]
    gate_terminals: usize,
    /// Unpair rounds (one terminal each) of the revocation case.
    #[arg(long, default_value_t = 20)]
    rounds: usize,
    /// The core the servers (pairgate, nginx, PostgreSQL) run on.
    #[arg(long, default_value_t = 0)]
    server_cpu: usize,
    /// The core the load generator runs on.
    #[arg(long, default_value_t = 1)]
    client_cpu: usize,
    /// nginx to compare with (default: nginx on PATH or /usr/sbin/nginx).
    #[arg(long, value_name = "PATH")]
    nginx: Option<PathBuf>,
    /// An empty PostgreSQL database for the two-instance case (default:
    /// a throwaway cluster started with Debian's initdb and pg_ctl).
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
}

/// The load generator is one source address holding thousands of
/// connections (the idle case) and renewing hundreds of pairing requests
/// (the gate case); the per-address and per-request bounds, made for the
/// Internet, would measure themselves instead of the server.
const CAPACITY: &[&str] = &[
    "max_connections_per_address=1000000",
    "max_open_per_address=1000000",
    "max_renewals=1000000000",
];

/// Runs `pairgate bench all`.
pub fn run(args: AllArgs, out: &dyn Output) -> Result<()> {
    check_limits(&args)?;
    let nginx = find_nginx(args.nginx.as_deref())?;
    let cpus = procs::machine_cpus();
    let server_cpu = procs::split_cores(args.server_cpu, args.client_cpu)?;
    let pinning = server_cpu.is_some();
    let dir = tempfile::Builder::new()
        .prefix("pairgate-bench-")
        .tempdir()?;
    // One thread: the load generator has one core, and a single-threaded
    // runtime spends all of it on the clients.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client_cpu = server_cpu.map(|_| args.client_cpu);
    let figures = runtime.block_on(measure(&args, &nginx, dir.path(), (server_cpu, client_cpu)))?;
    let seconds = u32::try_from(args.duration.as_secs().clamp(1, 3)).unwrap_or(1);
    let speed = super::tls::openssl_speed(seconds, "ecdhx25519")?;
    let report = Report {
        args: &args,
        pinning,
        cpus,
        figures,
        speed,
    };
    out.print(&report.text(), report.json());
    Ok(())
}

/// Refuses an idle count the file-descriptor limit cannot hold.
fn check_limits(args: &AllArgs) -> Result<()> {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let soft = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|n| n.parse::<usize>().ok());
    if let Some(soft) = soft
        && args.idle + args.connections + args.concurrency + 256 > soft
    {
        bail!(
            "--idle {} needs more open files than this shell allows ({soft}): raise it with ulimit -n, or hold fewer",
            args.idle
        );
    }
    if args.connections == 0
        || args.concurrency == 0
        || args.gate_terminals == 0
        || args.rounds == 0
    {
        bail!("--connections, --concurrency, --gate-terminals and --rounds must be at least 1");
    }
    Ok(())
}

/// Everything measured against servers.
struct Figures {
    full: Run,
    full_classical: Run,
    full_nginx: Run,
    resumed: Run,
    resumed_nginx: Run,
    kept_alive: Run,
    kept_alive_nginx: Run,
    proxy: ProxyFigures,
    idle: Idle,
    idle_nginx: Idle,
    gate: Run,
    revocation: Revocation,
    database: &'static str,
}

/// Clients of `terminals` trusting `pin`, resumption on.
fn clients(
    terminals: &[BenchTerminal],
    pin: pairgate_pki::SpkiPin,
    policy: &TlsPolicy,
) -> Result<Vec<TlsClient>> {
    terminals.iter().map(|t| t.client(pin, policy)).collect()
}

fn full(clients: &[TlsClient]) -> Vec<TlsClient> {
    clients.iter().map(TlsClient::without_resumption).collect()
}

async fn measure(
    args: &AllArgs,
    nginx_bin: &std::path::Path,
    dir: &std::path::Path,
    (server_cpu, client_cpu): (Option<usize>, Option<usize>),
) -> Result<Figures> {
    let ca = BenchCa::new()?;
    let upstreams = Upstreams::start(nginx_bin, dir, client_cpu)?;
    let upstream_url = format!("upstream_url=http://{}", upstreams.pairgate.addr);
    let settings: Vec<&str> = CAPACITY
        .iter()
        .copied()
        .chain([upstream_url.as_str()])
        .collect();
    let server = PairgateServer::start(&dir.join("server"), None, server_cpu, &settings)?;
    let store = Store::open_data_dir(&dir.join("server")).await?;
    let fleet = ca.terminals("bench-t", args.connections)?;
    let mut approvers = Approvers::new("bench-op");
    enrol(&store, &mut approvers, &server.gate, server.pin, &fleet).await?;
    if let Some(last) = fleet.last() {
        wait_paired(&server.master, server.pin, last).await?;
    }
    let gate_fleet = ca.terminals("bench-g", args.gate_terminals)?;
    register(&store, &gate_fleet).await?;
    let identity = ca.server_identity()?;
    let ca_pem = ca.certificate_pem();
    let tls = Tls {
        identity: &identity,
        client_ca_pem: &ca_pem,
    };
    let nginx = Nginx::start(nginx_bin, &dir.join("nginx"), &tls, server_cpu)?;
    let front = proxy::start_front(
        nginx_bin,
        &dir.join("nginx-front"),
        &tls,
        server_cpu,
        &fleet,
        &upstreams.nginx,
    )?;
    let peers = Peers {
        server: &server,
        nginx: &nginx,
        front: &front,
        upstreams: &upstreams,
        identity_pin: identity.pin,
    };
    let mut figures = compare(args, &peers, &fleet, &gate_fleet).await?;
    drop((nginx, front, server, store, upstreams));
    (figures.revocation, figures.database) = two_instances(args, &ca, dir, server_cpu).await?;
    Ok(figures)
}

/// The servers of the comparison.
struct Peers<'a> {
    server: &'a PairgateServer,
    nginx: &'a Nginx,
    front: &'a Nginx,
    upstreams: &'a Upstreams,
    identity_pin: pairgate_pki::SpkiPin,
}

/// Every case against pairgate and nginx, and the gate's; the
/// two-instance case is left to the caller.
async fn compare(
    args: &AllArgs,
    peers: &Peers<'_>,
    fleet: &[BenchTerminal],
    gate_fleet: &[BenchTerminal],
) -> Result<Figures> {
    let target = |addr: &str, pids: Vec<u32>| Target {
        addr: addr.to_owned(),
        pids,
    };
    let master = target(&peers.server.master, vec![peers.server.process.pid()]);
    let peer = target(&peers.nginx.addr, peers.nginx.pids());
    let front = target(&peers.front.addr, peers.front.pids());
    let me = Request::get("/v1/me");
    let hybrid = TlsPolicy::default();
    let classical = TlsPolicy {
        key_exchange: KeyExchange::Classical,
        ..TlsPolicy::default()
    };
    let (d, conc, n) = (args.duration, args.concurrency, args.connections);
    let ours = clients(fleet, peers.server.pin, &hybrid)?;
    let theirs = clients(fleet, peers.identity_pin, &hybrid)?;
    let ours_classical = full(&clients(fleet, peers.server.pin, &classical)?);
    Ok(Figures {
        full: load::connections(&master, &full(&ours), &me, 200, d, conc).await,
        full_classical: load::connections(&master, &ours_classical, &me, 200, d, conc).await,
        full_nginx: load::connections(&peer, &full(&theirs), &me, 200, d, conc).await,
        resumed: load::connections(&master, &ours, &me, 200, d, conc).await,
        resumed_nginx: load::connections(&peer, &theirs, &me, 200, d, conc).await,
        kept_alive: load::kept_alive(&master, &full(&ours), &me, d, n).await,
        kept_alive_nginx: load::kept_alive(&peer, &full(&theirs), &me, d, n).await,
        idle: load::idle(&master, &full(&ours), &me, args.idle).await,
        idle_nginx: load::idle(&peer, &full(&theirs), &me, args.idle).await,
        proxy: proxy::measure(
            &master,
            &full(&ours),
            &front,
            &full(&theirs),
            peers.upstreams,
            (d, args.sustained, n),
        )
        .await,
        gate: gate_pairing(peers.server, gate_fleet, &hybrid, d, conc).await?,
        revocation: Revocation::default(),
        database: "",
    })
}

/// Pairing requests at the gate, each on a new connection with a full
/// handshake.
async fn gate_pairing(
    server: &PairgateServer,
    fleet: &[BenchTerminal],
    policy: &TlsPolicy,
    duration: Duration,
    concurrency: usize,
) -> Result<Run> {
    let clients: Vec<(TlsClient, String)> = fleet
        .iter()
        .map(|t| {
            Ok((
                t.client(server.pin, policy)?.without_resumption(),
                t.serial.clone(),
            ))
        })
        .collect::<Result<_>>()?;
    let gate = Target {
        addr: server.gate.clone(),
        pids: vec![server.process.pid()],
    };
    Ok(load::pairing_requests(&gate, &clients, duration, concurrency).await)
}

/// Two instances on one PostgreSQL: pair `rounds` terminals through the
/// first, then measure unpair-to-reject on both.
async fn two_instances(
    args: &AllArgs,
    ca: &BenchCa,
    dir: &std::path::Path,
    server_cpu: Option<usize>,
) -> Result<(Revocation, &'static str)> {
    let (cluster, url, database) = match &args.database_url {
        Some(url) => (None, url.clone(), "PostgreSQL (--database-url)"),
        None => {
            let pg = Postgres::start(&dir.join("pg"), server_cpu)
                .context("starting a throwaway PostgreSQL")?;
            let url = pg.url.clone();
            (Some(pg), url, "PostgreSQL (throwaway cluster)")
        }
    };
    let a = PairgateServer::start(&dir.join("a"), Some(&url), server_cpu, CAPACITY)?;
    // The second instance presents the first one's identity, as a
    // cluster's instances do (the store refuses any other).
    let a_data = dir.join("a");
    let shared = [
        format!(
            "identity_keystore=file:{}",
            a_data.join("identity").display()
        ),
        format!(
            "identity_passphrase_file={}",
            a_data.join("identity.passphrase").display()
        ),
    ];
    let b_settings: Vec<&str> = CAPACITY
        .iter()
        .copied()
        .chain(shared.iter().map(String::as_str))
        .collect();
    let b = PairgateServer::start(&dir.join("b"), Some(&url), server_cpu, &b_settings)?;
    let store = Store::open(&url).await?;
    let terminals = ca.terminals("bench-r", args.rounds)?;
    let mut approvers = Approvers::new("bench-rev");
    enrol(&store, &mut approvers, &a.gate, a.pin, &terminals).await?;
    if let Some(last) = terminals.last() {
        wait_paired(&a.master, a.pin, last).await?;
        wait_paired(&b.master, b.pin, last).await?;
    }
    let instances = [
        Instance {
            master: a.master.clone(),
            pin: a.pin,
        },
        Instance {
            master: b.master.clone(),
            pin: b.pin,
        },
    ];
    let revocation = revocation::measure(&store, &instances, &terminals).await?;
    drop((a, b, store));
    drop(cluster);
    Ok((revocation, database))
}
