//! Unpair-to-reject latency across instances: two `pairgate server`
//! processes share one PostgreSQL; for each round a paired terminal keeps
//! requesting on every instance over three kinds of connection (one kept
//! alive, a new full handshake per request, a resumed session per
//! request), the unpair is committed to the shared store, and each loop
//! records when it was first refused (a 403, or its connection closed).
//! The clock starts just before the unpair call, so the figures include
//! the commit itself and are an upper bound.

use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use pairgate_pki::SpkiPin;
use pairgate_store::{Serial, Store};
use pairgate_tls::TlsPolicy;
use pairgate_tls::client::TlsClient;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use super::fleet::BenchTerminal;
use super::load::percentile_ms;
use super::wire::{Request, exchange};

/// The connection kinds, in report order.
pub const KINDS: [&str; 3] = ["kept_alive", "new", "resumed"];

/// One instance's master.
pub struct Instance {
    /// `host:port`.
    pub master: String,
    /// Its pin.
    pub pin: SpkiPin,
}

/// Latencies per connection kind, in microseconds.
#[derive(Debug, Default)]
pub struct Revocation {
    /// Samples per kind (index as [`KINDS`]).
    pub samples_us: [Vec<u32>; 3],
    /// Loops still served after the timeout, per kind.
    pub timeouts: [u64; 3],
    /// Resumed-kind requests that did resume their session.
    pub resumed_handshakes: u64,
    /// Resumed-kind requests in all.
    pub resumed_attempts: u64,
}

impl Revocation {
    /// The figures as JSON.
    pub fn to_json(&self) -> Value {
        let mut value = json!({
            "resumed_handshakes": self.resumed_handshakes,
            "resumed_attempts": self.resumed_attempts,
        });
        for (i, kind) in KINDS.iter().enumerate() {
            let samples = self
                .samples_us
                .get(i)
                .map(Vec::as_slice)
                .unwrap_or_default();
            super::load::set(
                &mut value,
                kind,
                json!({
                    "samples": samples.len(),
                    "timeouts": self.timeouts.get(i).copied().unwrap_or(0),
                    "p50_ms": percentile_ms(samples, 50.0),
                    "p99_ms": percentile_ms(samples, 99.0),
                    "max_ms": percentile_ms(samples, 100.0),
                }),
            );
        }
        value
    }

    /// Percentile `p` of `kind` in milliseconds.
    pub fn ms(&self, kind: usize, p: f64) -> Option<f64> {
        percentile_ms(self.samples_us.get(kind)?, p)
    }
}

/// How long a loop may still be served after the unpair before it counts
/// as a timeout.
const TIMEOUT: Duration = Duration::from_secs(10);

/// One round per terminal: start the loops on every instance, unpair,
/// collect when each loop was refused.
pub async fn measure(
    store: &Store,
    instances: &[Instance],
    terminals: &[BenchTerminal],
) -> Result<Revocation> {
    let mut result = Revocation::default();
    let policy = TlsPolicy::default();
    let me = Request::get("/v1/me");
    for terminal in terminals {
        let mut loops = tokio::task::JoinSet::new();
        for instance in instances {
            start_loops(instance, terminal, &policy, &me, &mut loops).await?;
        }
        // Let every loop reach its steady state, then break the trust.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let start = Instant::now();
        store
            .unpair(
                &Serial::new(&terminal.serial)?,
                &pairgate_store::TrustChange::local("bench"),
                SystemTime::now(),
            )
            .await?;
        collect(loops, start, instances.len() as u64, &mut result).await?;
    }
    Ok(result)
}

/// How a loop ended: its kind (0 kept-alive, 1 full handshakes, 2
/// resumed), when it was refused, resumed handshakes and attempts.
type Refused = (usize, Instant, u64, u64);

/// Starts `terminal`'s three loops on one instance once each is served:
/// requests on one kept-alive connection, a full handshake per request,
/// and a resumed handshake per request.
async fn start_loops(
    instance: &Instance,
    terminal: &BenchTerminal,
    policy: &TlsPolicy,
    me: &Request,
    loops: &mut tokio::task::JoinSet<Refused>,
) -> Result<()> {
    let resuming = terminal.client(instance.pin, policy)?;
    let fresh = resuming.without_resumption();
    // Warm up: the kept-alive connection, and a session to resume.
    let mut kept = fresh
        .connect(&instance.master, Some("localhost"))
        .await
        .context("connecting for the kept-alive loop")?;
    let mut buf = Vec::new();
    for stream_status in [
        exchange(&mut kept, me, &mut buf).await?.status,
        request_once(&resuming, &instance.master, me).await?.0,
    ] {
        if stream_status != 200 {
            bail!(
                "{} is not served before its unpair ({stream_status})",
                terminal.serial
            );
        }
    }
    let me_kept = me.clone();
    loops.spawn(async move {
        let mut buf = Vec::new();
        loop {
            match exchange(&mut kept, &me_kept, &mut buf).await {
                Ok(r) if r.status == 200 && !r.close => {}
                _ => return (0, Instant::now(), 0, 0),
            }
        }
    });
    for (kind, client) in [(1usize, fresh), (2, resuming)] {
        let (addr, me) = (instance.master.clone(), me.clone());
        loops.spawn(async move {
            let (mut resumed, mut attempts) = (0, 0);
            loop {
                attempts += 1;
                match request_once(&client, &addr, &me).await {
                    Ok((200, was_resumed)) => resumed += u64::from(was_resumed),
                    _ => return (kind, Instant::now(), resumed, attempts),
                }
            }
        });
    }
    Ok(())
}

/// Records when each loop was refused, counted from `start`; loops still
/// served after [`TIMEOUT`] count as never refused.
async fn collect(
    mut loops: tokio::task::JoinSet<Refused>,
    start: Instant,
    instances: u64,
    result: &mut Revocation,
) -> Result<()> {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    let mut finished = [0u64; 3];
    while !loops.is_empty() {
        match tokio::time::timeout_at(deadline, loops.join_next()).await {
            Ok(Some(Ok((kind, refused, resumed, attempts)))) => {
                let us = u32::try_from(refused.saturating_duration_since(start).as_micros())
                    .unwrap_or(u32::MAX);
                if let Some(samples) = result.samples_us.get_mut(kind) {
                    samples.push(us);
                }
                if let Some(n) = finished.get_mut(kind) {
                    *n += 1;
                }
                if kind == 2 {
                    result.resumed_handshakes += resumed;
                    result.resumed_attempts += attempts;
                }
            }
            Ok(Some(Err(e))) => bail!("a revocation loop failed: {e}"),
            Ok(None) => break,
            Err(_) => {
                // Whatever is still running was never refused.
                loops.abort_all();
                for (t, done) in result.timeouts.iter_mut().zip(finished) {
                    *t += instances - done;
                }
                break;
            }
        }
    }
    Ok(())
}

/// Connects, sends one request, closes: (status, whether it resumed).
async fn request_once(client: &TlsClient, addr: &str, request: &Request) -> Result<(u16, bool)> {
    let mut stream = client.connect(addr, Some("localhost")).await?;
    let mut buf = Vec::new();
    let response = exchange(&mut stream, request, &mut buf).await?;
    let resumed = stream.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
    let _ = stream.shutdown().await;
    Ok((response.status, resumed))
}
