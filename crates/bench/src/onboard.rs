//! `pairgate bench onboard`: terminals by the thousand with no operator. A
//! vendor key is registered, a manifest of N terminals' key pins is signed
//! and imported, and N terminals pair through a real `pairgate server`'s
//! gate with the protocol's own calls (ask, reveal, status), approved by
//! rule `manifest` at the reveal. The peer, measured in the same run at the
//! same concurrency: the same number of new mutual-TLS connections to the
//! gate, each carrying one small request, so that a pairing's cost reads
//! in connections (a pairing opens three).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use clap::Args;
use pairgate_pki::{Nonce, SpkiPin, VendorKey};
use pairgate_proto::{PairingStatus, RequestStatus};
use pairgate_store::{AdminAction, Changer, Store};
use pairgate_terminal::gate;
use pairgate_tls::TlsPolicy;
use pairgate_tls::https::HttpsClient;
use serde_json::{Value, json};

use crate::Output;
use crate::fleet::{BenchCa, BenchTerminal};
use crate::load::percentile_ms;
use crate::peers::PairgateServer;
use crate::procs;

/// `pairgate bench onboard` options.
#[derive(Args, Debug)]
pub struct OnboardArgs {
    /// Terminals in the manifest, each paired once.
    #[arg(long, default_value_t = 1000)]
    terminals: usize,
    /// Terminals pairing at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Core for the server (the bench takes another); none on one core.
    #[arg(long, default_value_t = 1)]
    server_cpu: usize,
    /// Core for this process.
    #[arg(long, default_value_t = 0)]
    client_cpu: usize,
}

/// A signed manifest vouching for `terminals`, by a fresh Ed25519 vendor
/// key registered as `bench-vendor`.
async fn vouch(store: &Store, terminals: &[BenchTerminal]) -> Result<Duration> {
    let vendor = Ed25519KeyPair::generate().context("making the vendor key")?;
    let key = VendorKey::ed25519(vendor.public_key().as_ref())?;
    let by = AdminAction::local("bench");
    store
        .add_vendor("bench-vendor", &key, &by, SystemTime::now())
        .await?;
    let mut list = Vec::with_capacity(terminals.len());
    for t in terminals {
        let der = t
            .key
            .cert
            .first()
            .context("a terminal without a certificate")?;
        let pin = SpkiPin::of_certificate(der)?;
        list.push(json!({ "serial": t.serial, "model": "bench", "spki_pin": pin.to_hex() }));
    }
    let file = serde_json::to_vec(&json!({
        "version": 1, "manifest_id": "bench-1", "vendor": "bench-vendor",
        "issued_at": "2026-12-01T00:00:00Z", "terminals": list,
    }))?;
    let signature = vendor.sign(&file);
    let started = Instant::now();
    let imported = store
        .import_signed_manifest(
            &file,
            signature.as_ref(),
            &Changer::local("bench"),
            SystemTime::now(),
        )
        .await?;
    if imported.registered != terminals.len() {
        bail!(
            "the manifest registered {} of {} terminals",
            imported.registered,
            terminals.len()
        );
    }
    Ok(started.elapsed())
}

/// The loopback address terminal `i` connects from: a fleet comes from
/// many addresses, and the gate limits open requests per address.
fn source(i: usize) -> std::net::IpAddr {
    let host = u8::try_from(2 + i % 250).unwrap_or(2);
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, host))
}

/// A new-connection HTTPS client of terminal `i`.
fn client(i: usize, t: &BenchTerminal, pin: SpkiPin) -> Result<HttpsClient> {
    let tls = t.client(pin, &TlsPolicy::default())?;
    Ok(HttpsClient::new(
        tls.without_resumption().from_source(source(i)),
    ))
}

/// One terminal's pairing: ask, reveal, then status until approved.
async fn pair(gate_url: &str, pin: SpkiPin, i: usize, t: &BenchTerminal) -> Result<()> {
    let https = client(i, t, pin)?;
    let nonce = Nonce::random();
    let hello = gate::Hello {
        serial: &t.serial,
        model: "bench",
        firmware: "1.0",
        commitment: nonce.commitment(),
    };
    let gate::Answer::Pending { request_id, .. } =
        gate::answer(&gate::ask(&https, gate_url, &hello).await?)?
    else {
        bail!("{} was paired before it asked", t.serial);
    };
    gate::reveal(&https, gate_url, &request_id, &nonce).await?;
    let url = format!("{gate_url}/v1/pairing/{request_id}?wait=10");
    for _ in 0..3 {
        let r = https.request("GET", &url, &[], None).await?;
        let answer: RequestStatus = serde_json::from_slice(&r.body)
            .with_context(|| format!("{}: the gate answered {}", t.serial, r.status))?;
        match answer.status {
            PairingStatus::Approved => return Ok(()),
            PairingStatus::Pending => continue,
            other => bail!("{}: the request ended {other:?}", t.serial),
        }
    }
    bail!("{} was not approved by rule", t.serial)
}

/// Runs `job` for every terminal, `concurrency` at a time; returns each
/// one's time in microseconds and the first error.
async fn each<F, Fut>(
    terminals: &Arc<Vec<BenchTerminal>>,
    concurrency: usize,
    job: F,
) -> (Vec<u32>, Option<String>)
where
    F: Fn(usize, BenchTerminal) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let job = Arc::new(job);
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (next, job, terminals) = (next.clone(), job.clone(), terminals.clone());
        tasks.push(tokio::spawn(async move {
            let mut times = Vec::new();
            let mut error = None;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(t) = terminals.get(i) else { break };
                let started = Instant::now();
                match job(i, t.clone()).await {
                    Ok(()) => {
                        times.push(u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX))
                    }
                    Err(e) => error = error.or(Some(format!("{}: {e:#}", t.serial))),
                }
            }
            (times, error)
        }));
    }
    let mut times = Vec::new();
    let mut first_error = None;
    for task in tasks {
        if let Ok((t, e)) = task.await {
            times.extend(t);
            first_error = first_error.or(e);
        }
    }
    (times, first_error)
}

/// One timed phase: how many finished, in how long, with what latency and
/// server CPU.
struct Phase {
    done: usize,
    wall: Duration,
    times_us: Vec<u32>,
    server_cpu: Duration,
    error: Option<String>,
}

impl Phase {
    fn per_second(&self) -> f64 {
        self.done as f64 / self.wall.as_secs_f64().max(1e-9)
    }

    fn json(&self) -> Value {
        json!({
            "done": self.done, "wall_s": self.wall.as_secs_f64(), "per_second": self.per_second(),
            "p50_ms": percentile_ms(&self.times_us, 50.0), "p99_ms": percentile_ms(&self.times_us, 99.0),
            "server_cpu_ms_each": self.server_cpu.as_secs_f64() * 1000.0 / self.done.max(1) as f64,
            "first_error": self.error,
        })
    }
}

async fn timed<F, Fut>(
    server: &PairgateServer,
    terminals: &Arc<Vec<BenchTerminal>>,
    concurrency: usize,
    job: F,
) -> Phase
where
    F: Fn(usize, BenchTerminal) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send,
{
    let cpu = procs::cpu_time(Some(server.process.pid()));
    let started = Instant::now();
    let (times_us, error) = each(terminals, concurrency, job).await;
    Phase {
        done: times_us.len(),
        wall: started.elapsed(),
        server_cpu: procs::cpu_time(Some(server.process.pid())).saturating_sub(cpu),
        times_us,
        error,
    }
}

async fn measure(args: &OnboardArgs, dir: &std::path::Path, cpu: Option<usize>) -> Result<Value> {
    let data = dir.join("server");
    let server = PairgateServer::start(&data, None, cpu, &[])?;
    let store = Store::open_data_dir(&data).await?;
    let ca = BenchCa::new()?;
    let terminals = Arc::new(ca.terminals("onboard", args.terminals)?);
    let import = vouch(&store, &terminals).await?;
    let gate_url = format!("https://{}", server.gate);
    let pin = server.pin;

    // The peer first, on terminals that then pair: one new connection and
    // one small request each (a status query for an unknown request).
    let peer_url = format!("{gate_url}/v1/pairing/{}", "0".repeat(32));
    let peer = timed(&server, &terminals, args.concurrency, move |i, t| {
        let url = peer_url.clone();
        async move {
            let https = client(i, &t, pin)?;
            let r = https.request("GET", &url, &[], None).await?;
            if r.status != 404 {
                bail!("the gate answered {} to an unknown request", r.status);
            }
            Ok(())
        }
    })
    .await;
    let pairing = timed(&server, &terminals, args.concurrency, move |i, t| {
        let url = gate_url.clone();
        async move { pair(&url, pin, i, &t).await }
    })
    .await;
    let paired = store.paired_terminals().await?.terminals.len();
    if paired != args.terminals {
        bail!(
            "{paired} of {} terminals are paired after the run; first error: {:?}",
            args.terminals,
            pairing.error
        );
    }
    Ok(json!({
        "terminals": args.terminals,
        "concurrency": args.concurrency,
        "manifest_import_ms": import.as_secs_f64() * 1000.0,
        "pairing": pairing.json(),
        "peer_new_connections": peer.json(),
        "connections_per_pairing": peer.per_second() / pairing.per_second().max(1e-9),
        "cpu": procs::cpu_model(),
    }))
}

fn text(v: &Value) -> String {
    let f = |p: &str| v.pointer(p).and_then(Value::as_f64).unwrap_or(f64::NAN);
    format!(
        "pairgate bench onboard: {} terminals from a signed manifest, {} at a time, no operator\n  manifest import              {:>9.0} ms\n  pairings per second          {:>9.0}   (p50 {:.1} ms, p99 {:.1} ms, server CPU {:.2} ms each)\n  peer: new connections/s      {:>9.0}   (one small request each, p50 {:.1} ms)\n  a pairing costs              {:>9.2}   new connections' worth (it opens 3)\n",
        v["terminals"],
        v["concurrency"],
        f("/manifest_import_ms"),
        f("/pairing/per_second"),
        f("/pairing/p50_ms"),
        f("/pairing/p99_ms"),
        f("/pairing/server_cpu_ms_each"),
        f("/peer_new_connections/per_second"),
        f("/peer_new_connections/p50_ms"),
        f("/connections_per_pairing"),
    )
}

/// Runs `pairgate bench onboard`.
pub fn run(args: OnboardArgs, out: &dyn Output) -> Result<()> {
    let server_cpu = procs::split_cores(args.server_cpu, args.client_cpu)?;
    let dir = tempfile::Builder::new()
        .prefix("pairgate-bench-")
        .tempdir()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let figures = runtime.block_on(measure(&args, dir.path(), server_cpu))?;
    out.print(&text(&figures), figures);
    Ok(())
}
