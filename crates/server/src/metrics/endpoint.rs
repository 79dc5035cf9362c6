//! The observability listener (`metrics_listen`, plain HTTP, by default
//! on 127.0.0.1 only): `/metrics` in Prometheus text format, `/healthz`
//! (the process answers) and `/readyz` (the store answers and, where
//! gate or master run, the paired set follows it). It carries no secret
//! and changes nothing, so it needs no authentication beyond where it
//! listens.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use pairgate_clock::Clock;
use pairgate_store::Store;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::{Metrics, Service, Text};
use crate::conn::ConnectionLimiter;
use crate::{PairedSet, ServiceSet};

/// How long `/readyz` and `/metrics` wait for the store.
const STORE_TIMEOUT: Duration = Duration::from_secs(2);

/// What the endpoints read.
#[derive(Clone)]
pub(crate) struct Sources {
    pub metrics: Arc<Metrics>,
    pub services: ServiceSet,
    pub store: Store,
    pub paired: Option<Arc<PairedSet>>,
    pub connections: [Arc<ConnectionLimiter>; 3],
    pub upstream: Option<Arc<crate::proxy::Upstream>>,
    pub clock: Clock,
}

/// The store's answer to a ping: its time, or why not.
async fn ping(store: &Store) -> Result<Duration, String> {
    let started = Instant::now();
    match tokio::time::timeout(STORE_TIMEOUT, store.ping()).await {
        Ok(Ok(())) => Ok(started.elapsed()),
        Ok(Err(e)) => Err(format!("store: {e}")),
        Err(_) => Err(format!("store: no answer within {STORE_TIMEOUT:?}")),
    }
}

/// Why the instance is not ready, if it is not.
async fn not_ready(sources: &Sources, pinged: &Result<Duration, String>) -> Vec<String> {
    let mut why = Vec::new();
    if let Err(e) = pinged {
        why.push(e.clone());
    }
    if sources.paired.as_ref().is_some_and(|p| !p.following()) {
        why.push("paired set: the last reload from the store failed".into());
    }
    if sources.paired.as_ref().is_some_and(|p| p.stale()) {
        why.push("paired set: stale (not checked for stale_after_secs); the master refuses".into());
    }
    why
}

fn text(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

async fn healthz() -> Response {
    text(StatusCode::OK, "alive\n".into())
}

async fn readyz(State(sources): State<Sources>) -> Response {
    let pinged = ping(&sources.store).await;
    let why = not_ready(&sources, &pinged).await;
    if why.is_empty() {
        text(StatusCode::OK, "ready\n".into())
    } else {
        text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", why.join("; ")),
        )
    }
}

async fn metrics(State(sources): State<Sources>) -> Response {
    let mut out = Text::default();
    let services = sources.services.to_string();
    out.help("pairgate_info", "gauge", "the services this instance runs");
    out.sample(
        "pairgate_info",
        &[
            ("services", &services),
            ("version", env!("CARGO_PKG_VERSION")),
        ],
        1.0,
    );
    let pinged = ping(&sources.store).await;
    let ready = not_ready(&sources, &pinged).await.is_empty();
    out.help("pairgate_ready", "gauge", "1 when /readyz answers 200");
    out.sample("pairgate_ready", &[], if ready { 1.0 } else { 0.0 });
    out.help(
        "pairgate_store_up",
        "gauge",
        "1 when the store answered a ping",
    );
    out.sample(
        "pairgate_store_up",
        &[],
        if pinged.is_ok() { 1.0 } else { 0.0 },
    );
    if let Ok(took) = pinged {
        out.help(
            "pairgate_store_ping_seconds",
            "gauge",
            "time of one store round trip",
        );
        out.sample("pairgate_store_ping_seconds", &[], took.as_secs_f64());
        let open = tokio::time::timeout(
            STORE_TIMEOUT,
            sources.store.open_pairing_requests(sources.clock.now()),
        )
        .await;
        if let Ok(Ok(n)) = open {
            out.help(
                "pairgate_pairing_requests_open",
                "gauge",
                "pairing requests awaiting a reveal or a decision",
            );
            out.sample("pairgate_pairing_requests_open", &[], n as f64);
        }
    }
    if let Some(paired) = &sources.paired {
        out.help(
            "pairgate_paired_terminals",
            "gauge",
            "terminals in this instance's paired set",
        );
        out.sample("pairgate_paired_terminals", &[], paired.len() as f64);
        out.help(
            "pairgate_paired_generation",
            "gauge",
            "store generation of the paired set last loaded",
        );
        out.sample(
            "pairgate_paired_generation",
            &[],
            paired.generation() as f64,
        );
        paired_follow(paired, &mut out);
    }
    connections(&sources, &mut out);
    if let Some(upstream) = &sources.upstream {
        let (in_flight, max) = upstream.in_flight();
        out.help(
            "pairgate_upstream_in_flight",
            "gauge",
            "requests at the upstream (/app) now",
        );
        out.sample("pairgate_upstream_in_flight", &[], in_flight as f64);
        out.help(
            "pairgate_upstream_max_in_flight",
            "gauge",
            "the most allowed at once (upstream_max_connections)",
        );
        out.sample("pairgate_upstream_max_in_flight", &[], max as f64);
    }
    sources.metrics.write(&mut out);
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out.finish(),
    )
        .into_response()
}

/// How the paired set follows the store: reloads, changes applied, and
/// the time from a change in the store to its taking effect here (for an
/// unpair: to the terminal's refusal).
fn paired_follow(paired: &PairedSet, out: &mut Text) {
    use std::sync::atomic::Ordering::Relaxed;
    let stats = &paired.stats;
    out.help(
        "pairgate_paired_reloads_total",
        "counter",
        "whole paired-set reloads",
    );
    out.sample(
        "pairgate_paired_reloads_total",
        &[],
        stats.full.load(Relaxed) as f64,
    );
    out.help(
        "pairgate_paired_changes_total",
        "counter",
        "paired-set changes applied one terminal at a time",
    );
    out.sample(
        "pairgate_paired_changes_total",
        &[],
        stats.incremental.load(Relaxed) as f64,
    );
    out.help(
        "pairgate_paired_change_lag_seconds",
        "histogram",
        "from a change (approve, unpair, suspend) in the store to this instance applying it; across machines, clock skew included",
    );
    out.histogram("pairgate_paired_change_lag_seconds", &[], &stats.lag);
}

/// Open and refused connections of the services running here.
fn connections(sources: &Sources, out: &mut Text) {
    let running = [
        sources.services.gate,
        sources.services.master,
        sources.services.cas,
    ];
    let services = Service::ALL
        .into_iter()
        .zip(running)
        .zip(&sources.connections);
    let services: Vec<_> = services.filter(|((_, on), _)| *on).collect();
    out.help(
        "pairgate_connections_open",
        "gauge",
        "open connections by service",
    );
    for ((service, _), limiter) in &services {
        out.sample(
            "pairgate_connections_open",
            &[("service", service.name())],
            limiter.open() as f64,
        );
    }
    out.help(
        "pairgate_connections_refused_total",
        "counter",
        "connections refused over a cap by service",
    );
    for ((service, _), limiter) in &services {
        out.sample(
            "pairgate_connections_refused_total",
            &[("service", service.name())],
            limiter.refused() as f64,
        );
    }
}

/// Starts serving the endpoints on `listener` until `shutdown`.
pub(crate) fn spawn(
    listener: TcpListener,
    sources: Sources,
    shutdown: &watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(serve(listener, sources, shutdown.clone()))
}

/// Serves the endpoints on `listener` until `shutdown` turns true.
async fn serve(listener: TcpListener, sources: Sources, mut shutdown: watch::Receiver<bool>) {
    let router = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(sources);
    let stopped = async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
    };
    if let Err(e) = axum::serve(listener, router)
        .with_graceful_shutdown(stopped)
        .await
    {
        tracing::warn!(error = %e, "the metrics listener stopped");
    }
}
