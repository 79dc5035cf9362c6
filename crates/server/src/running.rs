//! Starting a server's tasks from its parts (`services.rs`): the bound
//! listeners, the gate and master serving terminals, CAS serving
//! operators, and the background work (following the paired set,
//! signing the audit log, the minute's sweep). Each returns the tasks it
//! started; [`crate::Server`] holds them until shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use pairgate_clock::Clock;
use pairgate_store::Store;
use pairgate_tls::TlsPolicy;
use pairgate_tls::server::TlsServer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::conn::ConnectionLimiter;
use crate::identity::ServerIdentity;
use crate::metrics::Service;
use crate::paired::PairedSet;
use crate::refusals::RefusalLog;
use crate::services::Listener;
use crate::{ServerError, Settings, audit_anchor, cas, gate, http, master, services};

/// Paired-set changes kept in the store's log: a follower further behind
/// reloads the whole set.
const PAIRED_CHANGES_KEPT: i64 = 100_000;

/// How often refusals are audited, aggregated.
pub(crate) const REFUSAL_WINDOW: Duration = Duration::from_secs(60);

/// A listener bound for one service, and the address it got.
pub(crate) struct Bound {
    pub listener: TcpListener,
    /// The bound address (the port the system chose for `:0`).
    pub addr: SocketAddr,
}

impl Bound {
    /// Binds `addr`.
    pub async fn bind(addr: &str) -> Result<Self, ServerError> {
        let failed = |source| ServerError::Bind {
            addr: addr.to_owned(),
            source,
        };
        let listener = TcpListener::bind(addr).await.map_err(failed)?;
        let addr = listener.local_addr().map_err(failed)?;
        Ok(Self { listener, addr })
    }
}

/// What every starter shares.
pub(crate) struct Shared<'a> {
    pub settings: &'a Settings,
    pub store: &'a Store,
    pub identity: &'a ServerIdentity,
    /// The pin gate and master present now (a rotation moves it).
    pub presented: &'a Arc<crate::identity::Presented>,
    pub policy: &'a TlsPolicy,
    pub clock: &'a Clock,
    pub shutdown: &'a watch::Receiver<bool>,
    pub metrics: &'a Arc<crate::metrics::Metrics>,
    /// The VPN offered to paired terminals, if any.
    pub vpn: Option<&'a Arc<crate::vpn::Vpn>>,
}

/// The gate and the master, serving: their TLS servers (for their
/// session caches) where they run, and tasks.
pub(crate) struct Terminals {
    pub gate_tls: Option<TlsServer>,
    pub master_tls: Option<TlsServer>,
    /// The master's upstream, for its pool's metrics.
    pub upstream: Option<Arc<crate::proxy::Upstream>>,
    pub tasks: Vec<JoinHandle<()>>,
}

/// Starts the gate and the master on the listeners bound for them.
pub(crate) fn terminals(
    at: &Shared<'_>,
    [gate_at, master_at]: [Option<Bound>; 2],
    [gate_limiter, master_limiter]: [Arc<ConnectionLimiter>; 2],
    paired: &Arc<PairedSet>,
    refusals: &Arc<RefusalLog>,
    master_url: &str,
) -> Result<Terminals, ServerError> {
    let (settings, store, clock) = (at.settings, at.store, at.clock);
    let serving = |listener, limiter| {
        services::serving(
            settings,
            listener,
            (at.identity, at.presented),
            at.policy,
            limiter,
            at.metrics,
        )
    };
    let track = |router, service| crate::metrics::track(router, at.metrics.clone(), service);
    let mut out = Terminals {
        gate_tls: None,
        master_tls: None,
        upstream: None,
        tasks: Vec::new(),
    };
    if let Some(gate_at) = gate_at {
        let waiters = Arc::new(crate::waiters::Waiters::default());
        out.tasks.push(tokio::spawn(crate::waiters::follow(
            waiters.clone(),
            store.clone(),
            Duration::from_millis(settings.paired_poll_ms),
            Duration::from_secs(settings.reconcile_secs),
            at.shutdown.clone(),
        )));
        let gate = services::gate(
            settings,
            store,
            master_url,
            refusals,
            Some(paired),
            &waiters,
            clock,
        );
        let gate = gate::Gate {
            vpn: at.vpn.cloned(),
            ..gate
        };
        let gate_serving = serving(Listener::Gate, gate_limiter)?;
        out.gate_tls = Some(gate_serving.tls.clone());
        out.tasks.push(tokio::spawn(http::serve(
            gate_at.listener,
            track(gate::router(gate), Service::Gate),
            gate_serving,
            at.shutdown.clone(),
        )));
    }
    if let Some(master_at) = master_at {
        let presence =
            crate::clones::Presence::start(store.clone(), settings.clone_action(), clock.clone());
        let master = master::Master {
            vpn: at.vpn.cloned(),
            ..services::master(settings, store, paired, &presence, clock)?
        };
        out.upstream = master.upstream.clone();
        out.tasks.push(tokio::spawn(crate::server_keys::follow(
            store.clone(),
            master.keys.clone(),
            Duration::from_secs(settings.reconcile_secs),
            at.shutdown.clone(),
        )));
        let guard = crate::clones::MasterGuard {
            paired: paired.clone(),
            presence,
        };
        let master_serving = serving(Listener::Master(Arc::new(guard)), master_limiter)?;
        out.master_tls = Some(master_serving.tls.clone());
        out.tasks.push(tokio::spawn(http::serve(
            master_at.listener,
            track(master::router(master), Service::Master),
            master_serving,
            at.shutdown.clone(),
        )));
    }
    let servers: Vec<TlsServer> = [&out.gate_tls, &out.master_tls]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
    if !servers.is_empty() {
        out.tasks.push(tokio::spawn(crate::identity::follow(
            settings.clone(),
            store.clone(),
            at.presented.clone(),
            servers,
            (Duration::from_secs(settings.reconcile_secs), clock.clone()),
            at.shutdown.clone(),
        )));
    }
    Ok(out)
}

/// CAS, serving: its URL, the first run's password and its task.
pub(crate) struct Operators {
    pub url: String,
    pub first_run_password: Option<cas::FirstRunPassword>,
    pub task: JoinHandle<()>,
}

/// Creates the first admin on a first run, then starts CAS.
pub(crate) async fn operators(
    at: &Shared<'_>,
    cas_at: Bound,
    limiter: Arc<ConnectionLimiter>,
    audit_checked: audit_anchor::LastFullCheck,
) -> Result<Operators, ServerError> {
    let settings = at.settings;
    let first_run_file = settings.data_dir.join(cas::FIRST_RUN_FILE);
    let first_run_password = cas::first_run(at.store, &first_run_file, at.clock.now())
        .await?
        .map(cas::FirstRunPassword);
    let state = services::cas(
        settings,
        at.store,
        (at.identity.pin, at.presented),
        audit_checked,
        at.clock,
    );
    let tls = services::cas_tls(settings, at.identity, at.policy)?;
    let scheme = if settings.cas_tls { "https" } else { "http" };
    let task = tokio::spawn(cas::serve(
        cas_at.listener,
        crate::metrics::track(cas::router(state), at.metrics.clone(), Service::Cas),
        tls,
        Duration::from_secs(settings.header_timeout_secs),
        limiter,
        at.shutdown.clone(),
    ));
    Ok(Operators {
        url: format!("{scheme}://{}", cas_at.addr),
        first_run_password,
        task,
    })
}

/// Starts the background work: following the paired set (where gate or
/// master run), signing and checking the audit log, and the minute's
/// sweep.
pub(crate) fn background(
    at: &Shared<'_>,
    paired: Option<&Arc<PairedSet>>,
    refusals: &Arc<RefusalLog>,
    audit_checked: audit_anchor::LastFullCheck,
    signer: Arc<audit_anchor::IdentitySigner>,
) -> Vec<JoinHandle<()>> {
    let (settings, store, clock) = (at.settings, at.store, at.clock);
    let mut tasks = Vec::new();
    if let Some(paired) = paired {
        tasks.push(tokio::spawn(paired.clone().watch_staleness(
            Duration::from_secs(settings.stale_after_secs),
            at.shutdown.clone(),
        )));
        tasks.push(tokio::spawn(paired.clone().follow(
            store.clone(),
            Duration::from_millis(settings.paired_poll_ms),
            Duration::from_secs(settings.reconcile_secs),
            clock.clone(),
            at.shutdown.clone(),
        )));
    }
    tasks.extend([
        tokio::spawn(audit_anchor::run(
            store.clone(),
            signer,
            services::anchoring(settings),
            audit_checked,
            clock.clone(),
            at.shutdown.clone(),
        )),
        tokio::spawn(sweep(
            store.clone(),
            refusals.clone(),
            Duration::from_secs(settings.closed_request_retention_secs),
            Duration::from_secs(settings.login_window_secs).max(REFUSAL_WINDOW),
            clock.clone(),
            at.shutdown.clone(),
        )),
    ]);
    tasks
}

/// Once a minute: marks expired pairing requests, deletes closed ones
/// past their retention, attempt counters past the longest limit's
/// window and old paired-set changes, and audits the window's refusals.
async fn sweep(
    store: Store,
    refusals: Arc<RefusalLog>,
    retention: Duration,
    longest_limit: Duration,
    clock: Clock,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(REFUSAL_WINDOW) => {}
            _ = shutdown.changed() => return,
        }
        let now = clock.now();
        match store.expire_pairing_requests(now).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(expired = n, "pairing requests expired"),
            Err(e) => tracing::warn!(error = %e, "expiring pairing requests failed"),
        }
        match store.purge_closed_pairing_requests(now, retention).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                deleted = n,
                "closed pairing requests past their retention deleted"
            ),
            Err(e) => tracing::warn!(error = %e, "deleting old pairing requests failed"),
        }
        if let Err(e) = store.purge_attempts(longest_limit, now).await {
            tracing::warn!(error = %e, "deleting old attempt counters failed");
        }
        if let Err(e) = store.purge_paired_changes(PAIRED_CHANGES_KEPT).await {
            tracing::warn!(error = %e, "deleting old paired-set changes failed");
        }
        if let Err(e) = refusals.flush(&store, REFUSAL_WINDOW, now).await {
            tracing::warn!(error = %e, "auditing refusals failed");
        }
    }
}
