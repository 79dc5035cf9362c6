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
    pub certificate: Arc<crate::identity::Presented>,
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
    let version = env!("CARGO_PKG_VERSION");
    out.sample(
        "pairgate_info",
        &[("services", &services), ("version", version)],
        1.0,
    );
    store_gauges(&sources, &mut out).await;
    let certificate = sources.certificate.certificate();
    let not_after = certificate
        .not_after
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let help = "end of the served server certificate's validity (Unix seconds)";
    out.gauge(
        "pairgate_server_certificate_not_after_seconds",
        help,
        not_after,
    );
    let help =
        "1 when the certificate was issued by the operator's CA (never replaced automatically)";
    let operator = if certificate.operator_issued {
        1.0
    } else {
        0.0
    };
    out.gauge(
        "pairgate_server_certificate_operator_issued",
        help,
        operator,
    );
    if let Some(paired) = &sources.paired {
        paired_gauges(paired, &mut out);
    }
    connections(&sources, &mut out);
    if let Some(upstream) = &sources.upstream {
        let (in_flight, max) = upstream.in_flight();
        let help = "requests at the upstream (/app) now";
        out.gauge("pairgate_upstream_in_flight", help, in_flight as f64);
        let help = "the most allowed at once (upstream_max_connections)";
        out.gauge("pairgate_upstream_max_in_flight", help, max as f64);
    }
    sources.metrics.write(&mut out);
    let text_format = "text/plain; version=0.0.4; charset=utf-8";
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, text_format)],
        out.finish(),
    )
        .into_response()
}

/// Readiness, the store's answer to a ping and the open pairing requests.
async fn store_gauges(sources: &Sources, out: &mut Text) {
    let pinged = ping(&sources.store).await;
    let ready = not_ready(sources, &pinged).await.is_empty();
    let flag = |on: bool| if on { 1.0 } else { 0.0 };
    out.gauge("pairgate_ready", "1 when /readyz answers 200", flag(ready));
    let help = "1 when the store answered a ping";
    out.gauge("pairgate_store_up", help, flag(pinged.is_ok()));
    let Ok(took) = pinged else {
        return;
    };
    let help = "time of one store round trip";
    out.gauge("pairgate_store_ping_seconds", help, took.as_secs_f64());
    let open = sources.store.open_pairing_requests(sources.clock.now());
    if let Ok(Ok(n)) = tokio::time::timeout(STORE_TIMEOUT, open).await {
        let help = "pairing requests awaiting a reveal or a decision";
        out.gauge("pairgate_pairing_requests_open", help, n as f64);
    }
}

/// The paired set: its size and generation, and how it follows the
/// store: reloads, changes applied, and the time from a change in the
/// store to its taking effect here (for an unpair: to the terminal's
/// refusal).
fn paired_gauges(paired: &PairedSet, out: &mut Text) {
    let help = "terminals in this instance's paired set";
    out.gauge("pairgate_paired_terminals", help, paired.len() as f64);
    let help = "store generation of the paired set last loaded";
    out.gauge(
        "pairgate_paired_generation",
        help,
        paired.generation() as f64,
    );
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
