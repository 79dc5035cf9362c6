//! `pairgate bench hostile`: a genuine paired terminal's latency at the
//! master with and without issue 12's hostile mix at full scale, against
//! a `pairgate server` this command starts (embedded SQLite), pinned to
//! its own core. The mix, all at once from 127.0.0.0/8: thousands of
//! connections that never finish a handshake, spread over source
//! addresses; full handshakes with certificates at and over the size cap
//! and a CA certificate; unknown-serial floods; fresh keys superseding a
//! registered serial; CAS logins with wrong passwords. Reported: the
//! genuine terminal's p50/p99 on a kept-alive connection and on new
//! connections, each phase, their ratio, and what the attack did to the
//! server (memory, database, audit records, answers it got).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Args;
use pairgate_store::Store;
use pairgate_tls::TlsPolicy;
use pairgate_tls::client::TlsClient;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;

use super::fleet::{Approvers, BenchCa, BenchTerminal, enrol, register, wait_paired};
use super::load::{hello, percentile_ms};
use super::peers::PairgateServer;
use super::procs;
use super::wire::{Request, exchange};
use crate::output::Output;

/// `pairgate bench hostile`.
#[derive(Args, Debug)]
pub struct HostileArgs {
    /// How long each phase (quiet, then under attack) runs.
    #[arg(long, default_value = "10s", value_parser = super::parse_duration)]
    duration: Duration,
    /// Connections that never finish a handshake, held at once.
    #[arg(long, default_value_t = 4000)]
    slow: usize,
    /// CPU for the server.
    #[arg(long, default_value_t = 0)]
    server_cpu: usize,
    /// CPU for the load generator (this process).
    #[arg(long, default_value_t = 1)]
    client_cpu: usize,
}

/// Connections per source address of the slow attackers, half at the
/// gate and half at the master (the server's default cap is 512 per
/// address and listener: each address goes over it).
const SLOW_PER_ADDRESS: usize = 1200;

/// Answers the attackers got, by kind.
#[derive(Default)]
struct Tally(Mutex<BTreeMap<String, u64>>);

impl Tally {
    fn count(&self, what: impl Into<String>) {
        if let Ok(mut map) = self.0.lock() {
            *map.entry(what.into()).or_default() += 1;
        }
    }

    fn to_json(&self) -> Value {
        self.0.lock().map(|m| json!(*m)).unwrap_or(Value::Null)
    }
}

/// The genuine terminal's latencies in one phase.
#[derive(Default)]
struct Probe {
    kept_us: Vec<u32>,
    fresh_us: Vec<u32>,
    errors: u64,
    first_error: Option<String>,
}

impl Probe {
    fn error(&mut self, e: impl std::fmt::Display) {
        self.errors += 1;
        self.first_error.get_or_insert_with(|| e.to_string());
    }

    fn to_json(&self) -> Value {
        json!({
            "kept_alive_requests": self.kept_us.len(),
            "kept_alive_p50_ms": percentile_ms(&self.kept_us, 50.0),
            "kept_alive_p99_ms": percentile_ms(&self.kept_us, 99.0),
            "new_connections": self.fresh_us.len(),
            "new_connection_p50_ms": percentile_ms(&self.fresh_us, 50.0),
            "new_connection_p99_ms": percentile_ms(&self.fresh_us, 99.0),
            "errors": self.errors,
            "first_error": self.first_error,
        })
    }
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

/// The genuine terminal for `duration`: `GET /v1/me` every 10 ms on one
/// kept-alive connection, and every 100 ms on a new one (full handshake).
async fn probe(master: &str, client: &TlsClient, duration: Duration) -> Probe {
    let me = Request::get("/v1/me");
    let end = Instant::now() + duration;
    let mut out = Probe::default();
    let mut kept = None;
    let mut buf = Vec::new();
    let mut next_fresh = Instant::now();
    while Instant::now() < end {
        let started = Instant::now();
        if kept.is_none() {
            match client.connect(master, Some("localhost")).await {
                Ok(s) => kept = Some(s),
                Err(e) => out.error(e),
            }
        }
        if let Some(stream) = kept.as_mut() {
            match exchange(stream, &me, &mut buf).await {
                Ok(r) if r.status == 200 => out.kept_us.push(micros(started.elapsed())),
                Ok(r) => out.error(format!("kept-alive answer {}", r.status)),
                Err(e) => {
                    out.error(format!("kept-alive: {e}"));
                    kept = None;
                }
            }
        }
        if Instant::now() >= next_fresh {
            next_fresh += Duration::from_millis(100);
            let started = Instant::now();
            let fresh = client.without_resumption();
            match fresh.connect(master, Some("localhost")).await {
                Ok(mut s) => match exchange(&mut s, &me, &mut buf).await {
                    Ok(r) if r.status == 200 => out.fresh_us.push(micros(started.elapsed())),
                    Ok(r) => out.error(format!("new connection answer {}", r.status)),
                    Err(e) => out.error(format!("new connection: {e}")),
                },
                Err(e) => out.error(e),
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    out
}

/// Holds a TCP connection from `source` that never starts TLS, again
/// whenever the server closes it; counts how it ended.
async fn slow(addr: String, source: IpAddr, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    let Ok(target) = addr.parse::<std::net::SocketAddr>() else {
        return;
    };
    while !stop.load(Ordering::Relaxed) {
        let Ok(socket) = tokio::net::TcpSocket::new_v4() else {
            return;
        };
        if socket.bind((source, 0).into()).is_err() {
            return;
        }
        let Ok(mut tcp) = socket.connect(target).await else {
            tally.count("slow: connect failed");
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let opened = Instant::now();
        let mut byte = [0u8; 1];
        tokio::select! {
            _ = tcp.read(&mut byte) => {
                tally.count(if opened.elapsed() < Duration::from_millis(500) {
                    "slow: closed at once (over a cap)"
                } else {
                    "slow: closed after the handshake timeout"
                });
            }
            () = async { while !stop.load(Ordering::Relaxed) { tokio::time::sleep(Duration::from_millis(100)).await; } } => return,
        }
    }
}

/// Repeats `request` on new connections of fresh or fixed clients until
/// `stop`, counting the answers as `name: status`.
async fn flood(
    name: &'static str,
    addr: String,
    clients: Vec<TlsClient>,
    request: impl Fn() -> Request,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) {
    let mut buf = Vec::new();
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let Some(client) = clients.get(i % clients.len().max(1)) else {
            return;
        };
        i += 1;
        match client.connect(&addr, Some("localhost")).await {
            Ok(mut s) => match exchange(&mut s, &request(), &mut buf).await {
                Ok(r) => tally.count(format!("{name}: {}", r.status)),
                Err(_) => tally.count(format!("{name}: closed")),
            },
            Err(_) => tally.count(format!("{name}: handshake refused")),
        }
        tokio::task::yield_now().await;
    }
}

/// Logins with wrong passwords at CAS until `stop`.
async fn logins(cas: String, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    let Some(addr) = cas.strip_prefix("http://").map(str::to_owned) else {
        return;
    };
    let mut buf = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut tcp) = tokio::net::TcpStream::connect(&addr).await else {
            tally.count("cas login: connect failed");
            continue;
        };
        // The login form's CSRF token is a double-submit cookie, which
        // any client can set to a value of its own.
        let form = "csrf=bench&username=admin&password=wrong-guess";
        let request = Request::form("/login", form, "pg_login=bench");
        match exchange(&mut tcp, &request, &mut buf).await {
            Ok(r) => tally.count(format!("cas login: {}", r.status)),
            Err(_) => tally.count("cas login: closed"),
        }
        tokio::task::yield_now().await;
    }
}

/// What the server holds, for before/after.
async fn footprint(server: &PairgateServer, data: &std::path::Path, store: &Store) -> Value {
    let db: u64 = ["pairgate.db", "pairgate.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(data.join(f)).ok())
        .map(|m| m.len())
        .sum();
    json!({
        "rss_bytes": procs::rss_bytes(server.process.pid()),
        "database_bytes": db,
        "audit_records": store.audit_records(10_000_000).await.map(|r| r.len()).unwrap_or(0),
        "pairing_requests": store.pairing_requests(false, 10_000_000).await.map(|r| r.len()).unwrap_or(0),
    })
}

/// A terminal whose certificate carries `pad` bytes of extension.
fn padded(ca: &BenchCa, name: &str, pad: usize) -> Result<TlsClient> {
    let t = ca.padded_terminal(name, pad)?;
    t.client_any()
}

/// `n` slow clients, half at the gate and half at the master, spread over
/// 127.0.1.x source addresses.
fn slow_clients(
    server: &PairgateServer,
    n: usize,
    stop: &Arc<AtomicBool>,
    tally: &Arc<Tally>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..n)
        .map(|i| {
            let source = IpAddr::from([
                127,
                0,
                1,
                u8::try_from(i / SLOW_PER_ADDRESS % 250 + 2).unwrap_or(2),
            ]);
            let addr = if i % 2 == 0 {
                &server.gate
            } else {
                &server.master
            };
            tokio::spawn(slow(addr.clone(), source, stop.clone(), tally.clone()))
        })
        .collect()
}

/// The floods: unknown serials, requests superseding `victim`'s, big
/// certificates at the gate, and CAS logins.
fn floods(
    server: &PairgateServer,
    ca: &BenchCa,
    victim: String,
    stop: &Arc<AtomicBool>,
    tally: &Arc<Tally>,
) -> Result<Vec<tokio::task::JoinHandle<()>>> {
    let fresh = |prefix: &str, n: usize| -> Result<Vec<TlsClient>> {
        ca.terminals(prefix, n)?
            .iter()
            .map(BenchTerminal::client_any)
            .collect()
    };
    let unknown = fresh("flood", 8)?;
    let superseders = fresh("evil", 32)?;
    let big = vec![
        padded(ca, "big", 14_000)?,
        padded(ca, "huge", 60_000)?,
        ca.ca_terminal("ca")?.client_any()?,
    ];
    let ask =
        |serial: String| move || Request::post_json("/v1/pairing", &hello(serial.clone(), "", ""));
    let g = &server.gate;
    Ok(vec![
        tokio::spawn(flood(
            "gate unknown serial",
            g.clone(),
            unknown,
            ask("NOPE-1".into()),
            stop.clone(),
            tally.clone(),
        )),
        tokio::spawn(flood(
            "gate supersede",
            g.clone(),
            superseders,
            ask(victim),
            stop.clone(),
            tally.clone(),
        )),
        tokio::spawn(flood(
            "gate big certificate",
            g.clone(),
            big,
            || Request::get("/v1/pairing/00"),
            stop.clone(),
            tally.clone(),
        )),
        tokio::spawn(logins(server.cas.clone(), stop.clone(), tally.clone())),
    ])
}

async fn measure(args: &HostileArgs, dir: &std::path::Path, cpu: Option<usize>) -> Result<Figures> {
    let data = dir.join("server");
    // Default settings: the bounds under test are the shipped ones.
    let server = PairgateServer::start(&data, None, cpu, &[])?;
    let store = Store::open_data_dir(&data).await?;
    let ca = BenchCa::new()?;
    let genuine = ca.terminals("genuine", 1)?;
    let mut approvers = Approvers::new("bench-op");
    enrol(&store, &mut approvers, &server.gate, server.pin, &genuine).await?;
    let Some(terminal) = genuine.first() else {
        bail!("no genuine terminal");
    };
    wait_paired(&server.master, server.pin, terminal).await?;
    let victims = ca.terminals("victim", 1)?;
    register(&store, &victims).await?;
    let client = terminal.client(server.pin, &TlsPolicy::default())?;

    let before = footprint(&server, &data, &store).await;
    let quiet = probe(&server.master, &client, args.duration).await;

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let mut tasks = slow_clients(&server, args.slow, &stop, &tally);
    let victim = victims
        .first()
        .map(|v| v.serial.clone())
        .unwrap_or_default();
    tasks.extend(floods(&server, &ca, victim, &stop, &tally)?);
    // Let the slow connections pile up before measuring.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let loud = probe(&server.master, &client, args.duration).await;
    let during = footprint(&server, &data, &store).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    Ok(Figures {
        duration: args.duration,
        slow: args.slow,
        quiet,
        loud,
        answers: tally.to_json(),
        before,
        during,
    })
}

/// What one run measured.
struct Figures {
    duration: Duration,
    slow: usize,
    quiet: Probe,
    loud: Probe,
    answers: Value,
    before: Value,
    during: Value,
}

impl Figures {
    /// Under attack over quiet, for the kept-alive percentile `p`.
    fn ratio(&self, p: f64) -> Option<f64> {
        let q = percentile_ms(&self.quiet.kept_us, p)?;
        let l = percentile_ms(&self.loud.kept_us, p)?;
        (q > 0.0).then(|| l / q)
    }

    fn json(&self) -> Value {
        json!({
            "duration_s": self.duration.as_secs_f64(),
            "slow_connections": self.slow,
            "quiet": self.quiet.to_json(),
            "under_attack": self.loud.to_json(),
            "kept_alive_p50_ratio": self.ratio(50.0),
            "kept_alive_p99_ratio": self.ratio(99.0),
            "attack_answers": self.answers,
            "server_before": self.before,
            "server_under_attack": self.during,
        })
    }

    fn text(&self) -> String {
        let ms = |v: Option<f64>| v.map_or("-".to_owned(), |x| format!("{x:.2} ms"));
        let secs = self.duration.as_secs_f64();
        let mut out = format!(
            "pairgate bench hostile: a genuine terminal at the master, {secs} s quiet, then {secs} s beside the hostile mix ({} slow connections)\n  {:<28} {:>10} {:>14}\n",
            self.slow, "", "quiet", "under attack"
        );
        for (name, samples, p) in [
            ("kept-alive /v1/me p50", 0, 50.0),
            ("kept-alive /v1/me p99", 0, 99.0),
            ("new connection p50", 1, 50.0),
            ("new connection p99", 1, 99.0),
        ] {
            let pick = |probe: &Probe| {
                percentile_ms(
                    if samples == 0 {
                        &probe.kept_us
                    } else {
                        &probe.fresh_us
                    },
                    p,
                )
            };
            out.push_str(&format!(
                "  {name:<28} {:>10} {:>14}\n",
                ms(pick(&self.quiet)),
                ms(pick(&self.loud))
            ));
        }
        out.push_str(&format!(
            "  kept-alive ratio (under attack / quiet): p50 {}, p99 {}\n  errors: {} quiet, {} under attack\n  server before: {}\n  server under attack: {}\n  attack answers: {}\n",
            self.ratio(50.0).map_or("-".into(), |r| format!("{r:.2}x")),
            self.ratio(99.0).map_or("-".into(), |r| format!("{r:.2}x")),
            self.quiet.errors,
            self.loud.errors,
            self.before,
            self.during,
            self.answers
        ));
        out
    }
}

/// Runs `pairgate bench hostile`.
pub fn run(args: HostileArgs, out: &dyn Output) -> Result<()> {
    let server_cpu = procs::split_cores(args.server_cpu, args.client_cpu)?;
    let dir = tempfile::Builder::new()
        .prefix("pairgate-bench-")
        .tempdir()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let figures = runtime.block_on(measure(&args, dir.path(), server_cpu))?;
    out.print(&figures.text(), figures.json());
    Ok(())
}
