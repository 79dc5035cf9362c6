//! `pairgate bench audit`: what an audit view costs on a long log. Fills
//! a fresh SQLite store with N records, signing a checkpoint with a real
//! server identity (software key store) every `--every` records as the
//! server does, then times the view (one page of records and the check
//! from the newest checkpoint) against its peer in the same run: the
//! whole-chain re-hash every view used to do, and the full check against
//! every checkpoint that now runs hourly in the background.

use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use clap::Args;
use pairgate_store::{Refusal, Store};
use serde_json::json;

use super::load::percentile_ms;
use crate::output::Output;

/// `pairgate bench audit`.
#[derive(Args, Debug)]
pub struct AuditArgs {
    /// Records in the log.
    #[arg(long, default_value_t = 100_000)]
    records: u32,
    /// A checkpoint after this many records (the server's
    /// audit_checkpoint_records).
    #[arg(long, default_value_t = 1000)]
    every: u32,
    /// Views timed.
    #[arg(long, default_value_t = 50)]
    views: u32,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Runs the benchmark.
pub fn run(args: AuditArgs, out: &dyn Output) -> Result<()> {
    if args.records == 0 || args.every == 0 || args.views == 0 {
        bail!("--records, --every and --views must be at least 1");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(measure(args, out))
}

/// Appends `args.records` refusal records in batches of `args.every`,
/// signing a checkpoint after each batch but the last; returns how many
/// were signed.
async fn fill(
    store: &Store,
    signer: &pairgate_server::audit_anchor::IdentitySigner,
    args: &AuditArgs,
) -> Result<u32> {
    let mut written = 0u32;
    let mut checkpoints = 0u32;
    while written < args.records {
        let batch = args.every.min(args.records - written);
        let refusals: Vec<Refusal> = (0..batch)
            .map(|i| Refusal {
                action: "pairing.unknown_serial".into(),
                subject: format!(
                    "10.{}.{}.{}",
                    (written + i) >> 16 & 255,
                    (written + i) >> 8 & 255,
                    (written + i) & 255
                ),
                detail: json!({ "count": 1, "serial": format!("X-{}", written + i) }),
            })
            .collect();
        store.record_refusals(&refusals, SystemTime::now()).await?;
        written += batch;
        // The newest run stays open, as between two of the server's
        // checkpoints.
        if written < args.records
            && store
                .audit_checkpoint(signer, SystemTime::now())
                .await?
                .is_some()
        {
            checkpoints += 1;
        }
    }
    Ok(checkpoints)
}

async fn measure(args: AuditArgs, out: &dyn Output) -> Result<()> {
    let dir = tempfile::tempdir().context("making a temporary directory")?;
    let store = Store::open_data_dir(&dir.path().join("data")).await?;
    let identity = pairgate_server::identity::load(
        &format!("file:{}", dir.path().join("identity").display()),
        &dir.path().join("identity.passphrase"),
        &["localhost".to_owned()],
        SystemTime::now(),
        pairgate_server::identity::Creating::Allowed,
    )?;
    let signer = pairgate_server::audit_anchor::IdentitySigner::new(&identity.certified_key)?;
    let filled = Instant::now();
    let checkpoints = fill(&store, &signer, &args).await?;
    let fill_time = filled.elapsed();
    let mut views: Vec<u32> = Vec::with_capacity(args.views as usize);
    let mut checked = 0;
    for _ in 0..args.views {
        let t = Instant::now();
        let (page, status) = tokio::try_join!(
            store.search_audit("", 0, 100),
            store.audit_status(&identity.pin)
        )?;
        views.push(u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX));
        if !status.intact() || page.rows.len() != 100.min(args.records as usize) {
            bail!("the view found the log broken or short: {status:?}");
        }
        checked = status.records;
    }
    let t = Instant::now();
    let chain = store.verify_audit().await?;
    let rehash = t.elapsed();
    let t = Instant::now();
    let full = store.verify_audit_anchored(&identity.pin).await?;
    let anchored = t.elapsed();
    if !chain.intact() || !full.intact() {
        bail!("the full check found the log broken: {full:?}");
    }
    let p50 = percentile_ms(&views, 50.0).unwrap_or_default();
    let p99 = percentile_ms(&views, 99.0).unwrap_or_default();
    out.print(
        &format!(
            "audit log of {} records, {checkpoints} signed checkpoints (filled in {:.1} s)\n  view (100 records + check from the newest checkpoint, {checked} records): p50 {p50:.2} ms, p99 {p99:.2} ms over {} views\n  peer, the old view: re-hash the whole chain {:.1} ms ({:.0}x the view's p50)\n  full check against every checkpoint (hourly, in the background): {:.1} ms",
            args.records,
            fill_time.as_secs_f64(),
            args.views,
            ms(rehash),
            ms(rehash) / p50.max(0.001),
            ms(anchored),
        ),
        json!({
            "records": args.records, "checkpoints": checkpoints, "views": args.views,
            "view_checked_records": checked,
            "view_p50_ms": p50, "view_p99_ms": p99,
            "whole_chain_rehash_ms": ms(rehash),
            "rehash_over_view_p50": ms(rehash) / p50.max(0.001),
            "full_anchored_check_ms": ms(anchored),
            "fill_secs": fill_time.as_secs_f64(),
        }),
    );
    Ok(())
}
