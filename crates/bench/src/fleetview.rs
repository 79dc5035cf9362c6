//! `pairgate bench fleet`: what the CAS dashboard costs for a large fleet.
//! Fills a fresh SQLite store with N paired terminals (firmware, last
//! seen, a few suspected clones), N approved pairing requests over the
//! last two weeks (models, half by rule) and audit records of wrong codes
//! and manifest mismatches, then times the fleet view's aggregates beside
//! its peer in the same run: the dashboard as it was before the fleet view
//! (counts by state, pending requests, terminals gone quiet).

use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use clap::Args;
use pairgate_store::Store;
use serde_json::json;
use sqlx::Executor;

use super::load::percentile_ms;
use crate::output::Output;

/// `pairgate bench fleet`.
#[derive(Args, Debug)]
pub struct FleetArgs {
    /// Paired terminals (and as many pairing requests).
    #[arg(long, default_value_t = 100_000)]
    terminals: u32,
    /// Dashboard views timed.
    #[arg(long, default_value_t = 30)]
    views: u32,
}

const DAY_MS: i64 = 86_400_000;

/// Writes the fleet in one transaction, straight into the tables (the
/// verbs would audit each row, which is not what is measured here).
async fn fill(store: &Store, n: u32, now: i64) -> Result<()> {
    let mut tx = store.pool().begin().await?;
    for i in 0..i64::from(n) {
        let serial = format!("ATM-{i:07}");
        let fp = format!("{i:064x}");
        let firmware = match i % 5 {
            0 | 1 => "2.4.1",
            2 => "2.5.0",
            3 => "2.3.9",
            _ => "2.2.0",
        };
        let last_seen = now - (i % 20) * 3_600_000 * (i % 9);
        let created = now - (i % 14) * DAY_MS - 1;
        let model = match i % 4 {
            0 | 1 => "X9",
            2 => "K2",
            _ => "A1",
        };
        let q = sqlx::query(
            "INSERT INTO terminals (serial, state, paired_fingerprint, paired_at, paired_by, last_seen_at, \
             firmware, created_at, suspected_clone, model) VALUES ($1, 'paired', $2, $3, 'bench', $4, $5, $3, $6, $7)",
        )
        .bind(&serial)
        .bind(&fp)
        .bind(created)
        .bind(last_seen)
        .bind(firmware)
        .bind(i64::from(i % 10_000 == 7))
        .bind(model);
        tx.execute(q).await?;
        let by = if i % 2 == 0 { "rule:manifest" } else { "olga" };
        let q = sqlx::query(
            "INSERT INTO pairing_requests (id, serial, fingerprint, certificate, remote_address, model, firmware, \
             commitment, server_nonce, server_pin, state, created_at, expires_at, decided_at, decided_by) \
             VALUES ($1, $2, $3, $4, '127.0.0.1:1', $5, '', $3, $3, $3, 'approved', $6, $6, $6, $7)",
        )
        .bind(format!("{i:032x}"))
        .bind(&serial)
        .bind(&fp)
        .bind(Vec::<u8>::new())
        .bind(model)
        .bind(created)
        .bind(by);
        tx.execute(q).await?;
    }
    tx.commit().await?;
    Ok(())
}

fn ms(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

async fn measure(args: FleetArgs, out: &dyn Output) -> Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("pairgate-bench-")
        .tempdir()?;
    let store = Store::open_data_dir(dir.path()).await?;
    let now = i64::try_from(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)?
            .as_millis(),
    )?;
    let started = Instant::now();
    fill(&store, args.terminals, now)
        .await
        .context("filling the store")?;
    let filled = started.elapsed();
    let (mut view_us, mut peer_us) = (Vec::new(), Vec::new());
    let mut alerts = 0;
    for _ in 0..args.views {
        let t = Instant::now();
        let fleet = store.fleet_view(now).await?;
        view_us.push(ms(t.elapsed()));
        alerts = fleet.alerts.len();
        let t = Instant::now();
        let _ = tokio::try_join!(
            store.terminal_counts(),
            store.pairing_requests(true, 20),
            store.paired_terminals_not_seen_since(now - DAY_MS, 20),
        )?;
        peer_us.push(ms(t.elapsed()));
    }
    let p = |v: &[u32], q| percentile_ms(v, q).unwrap_or(f64::NAN);
    let figures = json!({
        "terminals": args.terminals, "fill_s": filled.as_secs_f64(), "alerts": alerts,
        "fleet_view_p50_ms": p(&view_us, 50.0), "fleet_view_p99_ms": p(&view_us, 99.0),
        "peer_dashboard_p50_ms": p(&peer_us, 50.0), "peer_dashboard_p99_ms": p(&peer_us, 99.0),
    });
    let text = format!(
        "pairgate bench fleet: the CAS dashboard with {} paired terminals and as many requests (SQLite)\n  fleet view (charts + alerts)   p50 {:>8.1} ms   p99 {:>8.1} ms\n  peer: dashboard before it      p50 {:>8.1} ms   p99 {:>8.1} ms\n  fleet view / peer (p50)        {:>8.1}x\n",
        args.terminals,
        p(&view_us, 50.0),
        p(&view_us, 99.0),
        p(&peer_us, 50.0),
        p(&peer_us, 99.0),
        p(&view_us, 50.0) / p(&peer_us, 50.0),
    );
    out.print(&text, figures);
    Ok(())
}

/// Runs `pairgate bench fleet`.
pub fn run(args: FleetArgs, out: &dyn Output) -> Result<()> {
    if args.terminals == 0 || args.views == 0 {
        bail!("--terminals and --views must be at least 1");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(measure(args, out))
}
