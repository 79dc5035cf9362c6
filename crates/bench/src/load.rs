//! The load cases, each against one [`Target`] (pairgate's master or gate,
//! or nginx) with the same client code: connections with a full or a
//! resumed handshake and one request each, kept-alive connections with
//! latency, idle connections for memory, and pairing requests at the gate.
//! Each case reports the target's CPU time over the case, read from
//! `/proc`, so that figures are per server CPU-second.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pairgate_pki::Nonce;
use pairgate_tls::client::TlsClient;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use super::procs;
use super::wire::{Request, exchange};

/// A server under load.
#[derive(Clone, Debug)]
pub struct Target {
    /// `host:port`.
    pub addr: String,
    /// The processes whose CPU and memory count as the server's.
    pub pids: Vec<u32>,
}

/// What one case measured.
#[derive(Debug, Default)]
pub struct Run {
    /// Successful operations.
    pub ok: u64,
    /// Of those, on resumed TLS sessions.
    pub resumed: u64,
    /// Failed operations.
    pub errors: u64,
    /// The first failure, for the report.
    pub first_error: Option<String>,
    /// Wall time.
    pub elapsed: Duration,
    /// The server's CPU time over the case.
    pub server_cpu: Duration,
    /// The load generator's CPU time over the case.
    pub client_cpu: Duration,
    /// Negotiated key exchange and cipher suite.
    pub negotiated: String,
    /// Per-request latency in microseconds (kept-alive case only).
    pub latencies_us: Vec<u32>,
}

impl Run {
    /// Operations per wall-clock second.
    pub fn per_second(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Operations per server CPU-second (0 when the server used none that
    /// `/proc` could see, as in very short runs).
    pub fn per_server_cpu_second(&self) -> f64 {
        if self.server_cpu.is_zero() {
            0.0
        } else {
            self.ok as f64 / self.server_cpu.as_secs_f64()
        }
    }

    /// Latency percentile `p` (0–100) in milliseconds.
    pub fn latency_ms(&self, p: f64) -> Option<f64> {
        percentile_ms(&self.latencies_us, p)
    }

    /// The figures as JSON.
    pub fn to_json(&self) -> Value {
        let mut value = json!({
            "ok": self.ok,
            "errors": self.errors,
            "resumed": self.resumed,
            "seconds": self.elapsed.as_secs_f64(),
            "server_cpu_seconds": self.server_cpu.as_secs_f64(),
            "client_cpu_seconds": self.client_cpu.as_secs_f64(),
            "per_second": self.per_second(),
            "per_server_cpu_second": self.per_server_cpu_second(),
            "negotiated": self.negotiated,
        });
        if let Some(e) = &self.first_error {
            set(&mut value, "first_error", json!(e));
        }
        if !self.latencies_us.is_empty() {
            set(&mut value, "p50_ms", json!(self.latency_ms(50.0)));
            set(&mut value, "p99_ms", json!(self.latency_ms(99.0)));
            set(&mut value, "max_ms", json!(self.latency_ms(100.0)));
        }
        value
    }
}

/// Sets `key` of a JSON object (a no-op on anything else).
pub fn set(object: &mut Value, key: &str, value: Value) {
    if let Some(map) = object.as_object_mut() {
        map.insert(key.to_owned(), value);
    }
}

/// Percentile `p` of microsecond samples, in milliseconds.
pub fn percentile_ms(samples_us: &[u32], p: f64) -> Option<f64> {
    let mut sorted = samples_us.to_vec();
    sorted.sort_unstable();
    let last = sorted.len().checked_sub(1)?;
    let rank = ((p / 100.0) * last as f64).round() as usize;
    sorted.get(rank.min(last)).map(|us| f64::from(*us) / 1000.0)
}

/// Shared counters of a case's tasks.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    resumed: AtomicU64,
    errors: AtomicU64,
    first_error: std::sync::Mutex<Option<String>>,
    negotiated: std::sync::OnceLock<String>,
}

impl Tally {
    fn error(&self, what: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut first) = self.first_error.lock()
            && first.is_none()
        {
            *first = Some(what);
        }
    }

    fn success<T>(&self, conn: &rustls::ConnectionCommon<T>) {
        self.ok.fetch_add(1, Ordering::Relaxed);
        if conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
            self.resumed.fetch_add(1, Ordering::Relaxed);
        }
        self.negotiated.get_or_init(|| negotiated(conn));
    }

    fn into_run(self, elapsed: Duration, server_cpu: Duration, client_cpu: Duration) -> Run {
        Run {
            ok: self.ok.into_inner(),
            resumed: self.resumed.into_inner(),
            errors: self.errors.into_inner(),
            first_error: self.first_error.into_inner().ok().flatten(),
            elapsed,
            server_cpu,
            client_cpu,
            negotiated: self.negotiated.into_inner().unwrap_or_default(),
            latencies_us: Vec::new(),
        }
    }
}

/// "X25519MLKEM768, TLS13_AES_128_GCM_SHA256".
fn negotiated<T>(conn: &rustls::ConnectionCommon<T>) -> String {
    let kx = conn
        .negotiated_key_exchange_group()
        .map(|g| format!("{:?}", g.name()))
        .unwrap_or_else(|| "resumed".to_owned());
    let suite = conn
        .negotiated_cipher_suite()
        .map(|s| format!("{:?}", s.suite()))
        .unwrap_or_default();
    format!("{kx}, {suite}")
}

/// CPU clocks around a case.
struct Clocks {
    start: Instant,
    server: Duration,
    client: Duration,
}

impl Clocks {
    fn start(target: &Target) -> Self {
        Self {
            start: Instant::now(),
            server: procs::cpu_time_of(&target.pids),
            client: procs::cpu_time(None),
        }
    }

    fn stop(&self, target: &Target) -> (Duration, Duration, Duration) {
        (
            self.start.elapsed(),
            procs::cpu_time_of(&target.pids).saturating_sub(self.server),
            procs::cpu_time(None).saturating_sub(self.client),
        )
    }
}

/// `concurrency` loops of connect, one request answered `expect`, close,
/// for `duration`. Loop `i` uses `clients[i % len]`; clients with
/// resumption turned on make resumed handshakes after their first.
pub async fn connections(
    target: &Target,
    clients: &[TlsClient],
    request: &Request,
    expect: u16,
    duration: Duration,
    concurrency: usize,
) -> Run {
    let tally = Arc::new(Tally::default());
    let clocks = Clocks::start(target);
    let deadline = Instant::now() + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..concurrency.max(1) {
        let Some(client) = clients.get(i % clients.len().max(1)).cloned() else {
            break;
        };
        let (tally, addr, request) = (tally.clone(), target.addr.clone(), request.clone());
        tasks.spawn(async move {
            let mut buf = Vec::with_capacity(1024);
            while Instant::now() < deadline {
                one_connection(&client, &addr, &request, expect, &mut buf, &tally).await;
            }
        });
    }
    tasks.join_all().await;
    let (elapsed, server, client) = clocks.stop(target);
    Arc::into_inner(tally)
        .unwrap_or_default()
        .into_run(elapsed, server, client)
}

async fn one_connection(
    client: &TlsClient,
    addr: &str,
    request: &Request,
    expect: u16,
    buf: &mut Vec<u8>,
    tally: &Tally,
) {
    let mut stream = match client.connect(addr, Some("localhost")).await {
        Ok(s) => s,
        Err(e) => return tally.error(format!("handshake: {e}")),
    };
    match exchange(&mut stream, request, buf).await {
        Ok(r) if r.status == expect => tally.success(stream.get_ref().1),
        Ok(r) => tally.error(format!("status {} (expected {expect})", r.status)),
        Err(e) => tally.error(format!("request: {e}")),
    }
    let _ = stream.shutdown().await;
}

/// Pairing requests at the gate: each loop takes the next terminal, makes
/// a full handshake with its key, posts `/v1/pairing` with a fresh
/// commitment (a new request, or the terminal's open one renewed: a store
/// write either way), expects 202 and closes.
pub async fn pairing_requests(
    target: &Target,
    terminals: &[(TlsClient, String)],
    duration: Duration,
    concurrency: usize,
) -> Run {
    let tally = Arc::new(Tally::default());
    let terminals: Arc<[(TlsClient, String)]> = terminals.to_vec().into();
    let next = Arc::new(AtomicU64::new(0));
    let clocks = Clocks::start(target);
    let deadline = Instant::now() + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (tally, addr, terminals, next) = (
            tally.clone(),
            target.addr.clone(),
            terminals.clone(),
            next.clone(),
        );
        tasks.spawn(async move {
            let mut buf = Vec::with_capacity(1024);
            while Instant::now() < deadline {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some((client, serial)) = terminals.get(i % terminals.len().max(1)) else {
                    return;
                };
                let body = hello(serial.clone(), "bench", "1.0");
                let request = Request::post_json("/v1/pairing", &body);
                one_connection(client, &addr, &request, 202, &mut buf, &tally).await;
            }
        });
    }
    tasks.join_all().await;
    let (elapsed, server, client) = clocks.stop(target);
    Arc::into_inner(tally)
        .unwrap_or_default()
        .into_run(elapsed, server, client)
}

/// `connections` kept-alive connections, each sending `request` again as
/// soon as the answer is in, for `duration`; records every latency.
pub async fn kept_alive(
    target: &Target,
    clients: &[TlsClient],
    request: &Request,
    duration: Duration,
    connections: usize,
) -> Run {
    let tally = Arc::new(Tally::default());
    // Connect everything first, so the window holds requests only.
    let mut streams = Vec::with_capacity(connections);
    for i in 0..connections.max(1) {
        let Some(client) = clients.get(i % clients.len().max(1)) else {
            break;
        };
        match client.connect(&target.addr, Some("localhost")).await {
            Ok(s) => streams.push(s),
            Err(e) => tally.error(format!("handshake: {e}")),
        }
    }
    let clocks = Clocks::start(target);
    let deadline = Instant::now() + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for mut stream in streams {
        let (tally, request) = (tally.clone(), request.clone());
        tasks.spawn(async move {
            let mut buf = Vec::with_capacity(1024);
            let mut latencies = Vec::with_capacity(64 * 1024);
            loop {
                let sent = Instant::now();
                if sent >= deadline {
                    break;
                }
                match exchange(&mut stream, &request, &mut buf).await {
                    Ok(r) if r.status == 200 => {
                        latencies
                            .push(u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX));
                        tally.success(stream.get_ref().1);
                    }
                    Ok(r) => {
                        tally.error(format!("status {}", r.status));
                        break;
                    }
                    Err(e) => {
                        tally.error(format!("request: {e}"));
                        break;
                    }
                }
            }
            let _ = stream.shutdown().await;
            latencies
        });
    }
    let latencies: Vec<u32> = tasks.join_all().await.into_iter().flatten().collect();
    let (elapsed, server, client) = clocks.stop(target);
    let mut run = Arc::into_inner(tally)
        .unwrap_or_default()
        .into_run(elapsed, server, client);
    run.latencies_us = latencies;
    run
}

/// Memory held by idle mutual-TLS connections.
#[derive(Debug, Default)]
pub struct Idle {
    /// Connections opened and held.
    pub connections: u64,
    /// Connections that failed.
    pub errors: u64,
    /// The first failure.
    pub first_error: Option<String>,
    /// Server RSS before, bytes.
    pub rss_before: u64,
    /// Server RSS with every connection open and idle, bytes.
    pub rss_after: u64,
}

impl Idle {
    /// RSS growth per connection, bytes.
    pub fn bytes_per_connection(&self) -> f64 {
        if self.connections == 0 {
            return 0.0;
        }
        self.rss_after.saturating_sub(self.rss_before) as f64 / self.connections as f64
    }

    /// The figures as JSON.
    pub fn to_json(&self) -> Value {
        let mut value = json!({
            "connections": self.connections,
            "errors": self.errors,
            "rss_before_bytes": self.rss_before,
            "rss_after_bytes": self.rss_after,
            "bytes_per_connection": self.bytes_per_connection(),
        });
        if let Some(e) = &self.first_error {
            set(&mut value, "first_error", json!(e));
        }
        value
    }
}

/// Opens `count` connections (full handshake and one request each, 32 at
/// a time), leaves them idle, and reads the server's RSS growth.
pub async fn idle(target: &Target, clients: &[TlsClient], request: &Request, count: usize) -> Idle {
    let settle = Duration::from_millis(500);
    tokio::time::sleep(settle).await;
    let rss_before = procs::rss_of(&target.pids);
    let tally = Arc::new(Tally::default());
    let mut held = Vec::with_capacity(count);
    let mut started = 0;
    while started < count {
        let batch = (count - started).min(32);
        let mut tasks = tokio::task::JoinSet::new();
        for i in started..started + batch {
            let Some(client) = clients.get(i % clients.len().max(1)).cloned() else {
                break;
            };
            let (tally, addr, request) = (tally.clone(), target.addr.clone(), request.clone());
            tasks.spawn(async move {
                let mut stream = match client.connect(&addr, Some("localhost")).await {
                    Ok(s) => s,
                    Err(e) => {
                        tally.error(format!("handshake: {e}"));
                        return None;
                    }
                };
                let mut buf = Vec::new();
                match exchange(&mut stream, &request, &mut buf).await {
                    Ok(r) if r.status == 200 => Some(stream),
                    Ok(r) => {
                        tally.error(format!("status {}", r.status));
                        None
                    }
                    Err(e) => {
                        tally.error(format!("request: {e}"));
                        None
                    }
                }
            });
        }
        held.extend(tasks.join_all().await.into_iter().flatten());
        started += batch;
    }
    tokio::time::sleep(settle).await;
    let rss_after = procs::rss_of(&target.pids);
    let tally = Arc::into_inner(tally).unwrap_or_default();
    let idle = Idle {
        connections: held.len() as u64,
        errors: tally.errors.into_inner(),
        first_error: tally.first_error.into_inner().ok().flatten(),
        rss_before,
        rss_after,
    };
    drop(held);
    idle
}

/// A pairing hello for `serial` with a fresh commitment, as JSON.
pub(crate) fn hello(serial: String, model: &str, firmware: &str) -> String {
    let hello = pairgate_proto::PairingHello {
        serial,
        model: model.to_owned(),
        firmware: firmware.to_owned(),
        commitment: Nonce::random().commitment().to_hex(),
    };
    serde_json::to_string(&hello).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let samples: Vec<u32> = (1..=100).map(|ms| ms * 1000).collect();
        assert_eq!(percentile_ms(&samples, 50.0), Some(51.0));
        assert_eq!(percentile_ms(&samples, 99.0), Some(99.0));
        assert_eq!(percentile_ms(&samples, 100.0), Some(100.0));
        assert_eq!(percentile_ms(&[], 50.0), None);
    }
}
