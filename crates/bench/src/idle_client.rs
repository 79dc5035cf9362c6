//! The client side of `pairgate bench idle`: one process holding its
//! share of the idle terminals (`pairgate bench idle-client`, started by
//! the benchmark, never by hand). A process may hold 20,000 descriptors
//! here, so the terminals are spread over several, each from its own
//! 127.0.0.x source address to its own master.
//!
//! It speaks to the benchmark in lines: it makes its terminals' keys and
//! prints their fingerprints as one JSON line, then on `connect PERCENT`
//! opens connections until that share of its terminals is held (one
//! `GET /v1/me` each) and reports; each connection is then held, and
//! opened again (after a jittered pause) whenever the master drops it.
//! On `await` it reports once every held connection is open again, on
//! `quit` it exits.

use std::io::BufRead;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use pairgate_pki::SpkiPin;
use pairgate_tls::TlsPolicy;
use pairgate_tls::client::TlsClient;
use serde_json::json;
use tokio::io::AsyncReadExt;
use tokio::sync::Semaphore;

use crate::wire::{Request, exchange};

/// `pairgate bench idle-client` (started by `pairgate bench idle`).
#[derive(Args, Debug)]
pub struct ClientArgs {
    /// Terminals (connections) this process holds.
    #[arg(long)]
    count: usize,
    /// Serial prefix of its terminals.
    #[arg(long)]
    prefix: String,
    /// The master, `host:port`.
    #[arg(long)]
    master: String,
    /// The server's SPKI pin.
    #[arg(long)]
    pin: SpkiPin,
    /// Local address the connections come from.
    #[arg(long)]
    source: IpAddr,
    /// Handshakes in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
}

/// How long no connection may open before a wait gives up.
const STALL: Duration = Duration::from_secs(30);

/// Connections open now, and failures seen.
#[derive(Default)]
struct Counts {
    live: AtomicU64,
    failures: AtomicU64,
}

/// Opens one terminal's connection: handshake and `GET /v1/me` (200).
async fn open(
    client: &TlsClient,
    master: &str,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let mut stream = client.connect(master, Some("localhost")).await?;
    let mut buf = Vec::new();
    let answer = exchange(&mut stream, &Request::get("/v1/me"), &mut buf).await?;
    anyhow::ensure!(
        answer.status == 200,
        "the master answered {}",
        answer.status
    );
    Ok(stream)
}

/// Holds one terminal's connection for the life of the process, opening
/// it again whenever it closes.
async fn hold(client: TlsClient, master: Arc<str>, gate: Arc<Semaphore>, counts: Arc<Counts>) {
    let mut failures = 0u32;
    loop {
        let opened = {
            let _turn = gate.acquire().await;
            open(&client, &master).await
        };
        match opened {
            Ok(mut stream) => {
                failures = 0;
                counts.live.fetch_add(1, Ordering::Relaxed);
                // Idle: the only thing to read is the close.
                let mut byte = [0u8; 1];
                let _ = stream.read(&mut byte).await;
                counts.live.fetch_sub(1, Ordering::Relaxed);
            }
            Err(_) => {
                counts.failures.fetch_add(1, Ordering::Relaxed);
                failures = failures.saturating_add(1);
            }
        }
        // Jittered back-off, as terminals spread their reconnects: up to
        // half a second after a close, doubling per failure to 8 s.
        let ceiling = 500u64 << failures.min(4);
        let mut jitter = [0u8; 2];
        let _ = aws_lc_rs::rand::fill(&mut jitter);
        let pause = u64::from(u16::from_le_bytes(jitter)) % ceiling + 10;
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}

/// Waits until `count` connections are open, or until none more has
/// opened for `stall` (then some cannot: the report says how many are).
async fn all_live(counts: &Counts, count: usize, stall: Duration) -> Duration {
    let started = Instant::now();
    let (mut seen, mut moved) = (0, Instant::now());
    loop {
        let live = counts.live.load(Ordering::Relaxed);
        if live >= count as u64 || moved.elapsed() > stall {
            return started.elapsed();
        }
        if live != seen {
            (seen, moved) = (live, Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs the client: see the module documentation.
pub fn run(args: ClientArgs) -> Result<()> {
    let terminals: Vec<_> = (0..args.count)
        .map(|i| crate::fleet::self_signed_terminal(&format!("{}-{i:06}", args.prefix)))
        .collect::<Result<_>>()?;
    let fingerprints: Vec<String> = terminals.iter().map(|t| t.fingerprint.to_hex()).collect();
    println!("{}", json!({ "fingerprints": fingerprints }));
    let policy = TlsPolicy::default();
    let clients: Vec<TlsClient> = terminals
        .iter()
        .map(|t| Ok(t.client(args.pin, &policy)?.from_source(args.source)))
        .collect::<Result<_>>()?;
    drop(terminals);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let counts = Arc::new(Counts::default());
    let gate = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let master: Arc<str> = Arc::from(args.master.as_str());
    let mut waiting = clients.into_iter();
    let mut held = 0;
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        match line.trim().split_once(' ').unwrap_or((line.trim(), "")) {
            ("connect", share) => {
                // `connect PERCENT`: hold that share of this process's
                // terminals in all (the rest stay for a later connect).
                let percent: usize = share.parse().unwrap_or(100).min(100);
                let target = args.count * percent / 100;
                let started = Instant::now();
                for client in waiting.by_ref().take(target.saturating_sub(held)) {
                    runtime.spawn(hold(client, master.clone(), gate.clone(), counts.clone()));
                    held += 1;
                }
                let took = runtime.block_on(all_live(&counts, held, STALL));
                let report = json!({
                    "live": counts.live.load(Ordering::Relaxed),
                    "failures": counts.failures.load(Ordering::Relaxed),
                    "seconds": took.as_secs_f64(),
                    "since_start_seconds": started.elapsed().as_secs_f64(),
                    "rss_bytes": crate::procs::rss_bytes(std::process::id()),
                });
                println!("{report}");
            }
            ("await", _) => {
                let took = runtime.block_on(all_live(&counts, held, STALL));
                let report = json!({
                    "live": counts.live.load(Ordering::Relaxed),
                    "failures": counts.failures.load(Ordering::Relaxed),
                    "seconds": took.as_secs_f64(),
                });
                println!("{report}");
            }
            ("quit", _) => break,
            _ => anyhow::bail!("idle-client: unknown command {line:?}"),
        }
    }
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}
