//! One server instance running any subset of the services
//! ([`ServiceSet`]) over the shared store and identity: what
//! `pairgate server --services …` starts. [`crate::Server`] is the
//! instance with all three.

use std::net::SocketAddr;
use std::sync::Arc;

use pairgate_clock::Clock;
use pairgate_pki::SpkiPin;
use pairgate_store::Store;
use pairgate_tls::server::TlsServer;
use tokio::sync::watch;

use crate::running::{self, Bound};
use crate::{
    PairedSet, ServerError, ServiceSet, Settings, audit_anchor, cas, conn, metrics, refusals,
};
use crate::{open_store, services};

/// A running instance; the addresses of the services it does not run are
/// `None`.
#[derive(Debug)]
pub struct Instance {
    /// What time it is, for every service of this instance.
    pub clock: Clock,
    /// The services running here.
    pub services: ServiceSet,
    /// The pin terminals learn (the identity the store records).
    pub pin: SpkiPin,
    /// The identity key store, described.
    pub identity_keystore: String,
    /// Where the gate listens.
    pub gate_addr: Option<SocketAddr>,
    /// Where the master listens.
    pub master_addr: Option<SocketAddr>,
    /// The master URL the gate hands to terminals.
    pub master_url: String,
    /// Where CAS listens, and its base URL.
    pub cas: Option<(SocketAddr, String)>,
    /// The paired set gate and master check (`None` for CAS alone).
    pub paired: Option<Arc<PairedSet>>,
    /// First run only: the one-time password of `admin`.
    pub first_run_password: Option<cas::FirstRunPassword>,
    /// Open connections of gate, master and CAS, against their caps.
    pub connections: [Arc<conn::ConnectionLimiter>; 3],
    /// The gate's and the master's TLS servers, where they run.
    pub tls: [Option<TlsServer>; 2],
    /// Where `/metrics`, `/healthz` and `/readyz` answer (`None` when
    /// `metrics_listen` is empty).
    pub metrics_addr: Option<SocketAddr>,
    pub(crate) store: Store,
    pub(crate) refusals: Arc<refusals::RefusalLog>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Binds `addr` when `on`.
async fn bind_if(on: bool, addr: &str) -> Result<Option<Bound>, ServerError> {
    Ok(if on {
        Some(Bound::bind(addr).await?)
    } else {
        None
    })
}

/// The listeners of the services that run here, and of the metrics.
struct Listeners {
    gate: Option<Bound>,
    master: Option<Bound>,
    cas: Option<Bound>,
    metrics: Option<Bound>,
}

impl Listeners {
    async fn bind(settings: &Settings, services: ServiceSet) -> Result<Self, ServerError> {
        Ok(Self {
            gate: bind_if(services.gate, &settings.gate_listen).await?,
            master: bind_if(services.master, &settings.master_listen).await?,
            cas: bind_if(services.cas, &settings.cas_listen).await?,
            metrics: bind_if(
                !settings.metrics_listen.is_empty(),
                &settings.metrics_listen,
            )
            .await?,
        })
    }
}

/// The master URL the gate hands out: the setting, else the port the
/// master bound here or is configured to bind elsewhere.
fn master_url(settings: &Settings, master: Option<&Bound>) -> String {
    let port = master.map_or_else(
        || {
            settings
                .master_listen
                .parse::<SocketAddr>()
                .map_or(7743, |a| a.port())
        },
        |m| m.addr.port(),
    );
    settings.master_url(port)
}

/// CAS, when it runs here (its task joins `tasks`): its address and
/// URL, and the first run's password.
async fn operators(
    at: &running::Shared<'_>,
    bound: Option<Bound>,
    limiter: Arc<conn::ConnectionLimiter>,
    audit_checked: audit_anchor::LastFullCheck,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
) -> Result<(Option<(SocketAddr, String)>, Option<cas::FirstRunPassword>), ServerError> {
    let Some(bound) = bound else {
        return Ok((None, None));
    };
    let addr = bound.addr;
    let operators = running::operators(at, bound, limiter, audit_checked).await?;
    tasks.push(operators.task);
    Ok((Some((addr, operators.url)), operators.first_run_password))
}

/// What the metrics read besides the shared parts: the services, the
/// paired set, the connection limiters and the master's upstream.
type Observed<'a> = (
    ServiceSet,
    Option<&'a Arc<PairedSet>>,
    &'a [Arc<conn::ConnectionLimiter>; 3],
    Option<Arc<crate::proxy::Upstream>>,
);

/// The metrics listener, when one is set: its address (its task joins
/// `tasks`).
fn observed(
    at: &running::Shared<'_>,
    bound: Option<Bound>,
    (services, paired, connections, upstream): Observed<'_>,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
) -> Option<SocketAddr> {
    let bound = bound?;
    let sources = metrics::endpoint::Sources {
        metrics: at.metrics.clone(),
        services,
        store: at.store.clone(),
        paired: paired.cloned(),
        connections: connections.clone(),
        upstream,
        certificate: at.presented.clone(),
        clock: at.clock.clone(),
    };
    tasks.push(metrics::endpoint::spawn(
        bound.listener,
        sources,
        at.shutdown,
    ));
    Some(bound.addr)
}

/// The store, the identity it records and the TLS policy on `clock`.
async fn opened(
    settings: &Settings,
    services: ServiceSet,
    clock: &Clock,
) -> Result<(Store, crate::ServerIdentity, pairgate_tls::TlsPolicy), ServerError> {
    let store = open_store(settings).await?;
    let identity = services::identity(settings, &store, services, clock).await?;
    let policy = pairgate_tls::TlsPolicy {
        clock: clock.clone(),
        ..settings.tls_policy()?
    };
    Ok((store, identity, policy))
}

impl Instance {
    /// Opens the store, loads the identity (creating it only when every
    /// service runs on a store that records none), binds the listeners
    /// of `services` and starts serving, reading time from `clock`.
    pub async fn start(
        settings: &Settings,
        services: ServiceSet,
        clock: Clock,
    ) -> Result<Self, ServerError> {
        let (store, identity, policy) = opened(settings, services, &clock).await?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let listeners = Listeners::bind(settings, services).await?;
        let metrics = Arc::new(metrics::Metrics::default());
        let presented = Arc::new(crate::identity::Presented::new(&identity));
        let vpn = match services.gate || services.master {
            true => crate::vpn::Vpn::load(settings, &store).await?.map(Arc::new),
            false => None,
        };
        let at = running::Shared {
            vpn: vpn.as_ref(),
            settings,
            store: &store,
            identity: &identity,
            presented: &presented,
            policy: &policy,
            clock: &clock,
            shutdown: &shutdown_rx,
            metrics: &metrics,
        };
        let connections = settings
            .connection_limits(conn::open_file_limit())
            .map(conn::ConnectionLimiter::new);
        let audit_checked = audit_anchor::LastFullCheck::default();
        let mut tasks = Vec::new();
        let cas_limiter = connections[2].clone();
        let checked = audit_checked.clone();
        let (cas, first_run_password) =
            operators(&at, listeners.cas, cas_limiter, checked, &mut tasks).await?;
        let paired = if services.gate || services.master {
            Some(PairedSet::load(&store).await?)
        } else {
            None
        };
        let budget = usize::try_from(settings.refusal_audit_per_minute).unwrap_or(usize::MAX);
        let refusals = Arc::new(refusals::RefusalLog::new(budget));
        let master_url = master_url(settings, listeners.master.as_ref());
        let bound = [listeners.gate, listeners.master];
        let [gate_addr, master_addr] = [&bound[0], &bound[1]].map(|b| b.as_ref().map(|b| b.addr));
        let limiters = [connections[0].clone(), connections[1].clone()];
        let (tls, upstream) = match &paired {
            Some(paired) => {
                let terminals =
                    running::terminals(&at, bound, limiters, paired, &refusals, &master_url)?;
                tasks.extend(terminals.tasks);
                (
                    [terminals.gate_tls, terminals.master_tls],
                    terminals.upstream,
                )
            }
            None => ([None, None], None),
        };
        let metrics_addr = observed(
            &at,
            listeners.metrics,
            (services, paired.as_ref(), &connections, upstream),
            &mut tasks,
        );
        let signer = Arc::new(audit_anchor::IdentitySigner::new(&identity.certified_key)?);
        let paired_ref = paired.as_ref();
        tasks.extend(running::background(
            &at,
            paired_ref,
            &refusals,
            audit_checked,
            signer,
        ));
        Ok(Self {
            clock,
            services,
            pin: identity.pin,
            identity_keystore: identity.keystore,
            gate_addr,
            master_addr,
            master_url,
            cas,
            paired,
            first_run_password,
            connections,
            tls,
            metrics_addr,
            store,
            refusals,
            shutdown,
            tasks,
        })
    }

    /// Stops accepting, closes every connection and waits for the tasks;
    /// the refusals counted since the last window are audited.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        for task in std::mem::take(&mut self.tasks) {
            let _ = task.await;
        }
        if let Err(e) = self.flush_refusals().await {
            tracing::warn!(error = %e, "auditing refusals failed");
        }
    }

    /// Audits the refusals counted so far now rather than at the end of
    /// the window; returns how many records were written.
    pub async fn flush_refusals(&self) -> Result<usize, pairgate_store::StoreError> {
        self.refusals
            .flush(&self.store, running::REFUSAL_WINDOW, self.clock.now())
            .await
    }
}

/// What `pairgate server init` set up.
#[derive(Debug)]
pub struct Initialized {
    /// The identity's pin, now recorded in the store.
    pub pin: SpkiPin,
    /// The identity key store, described.
    pub identity_keystore: String,
    /// The first admin's one-time password, when this run created it.
    pub first_run_password: Option<cas::FirstRunPassword>,
}

/// Creates (or checks) the server identity and records its pin in the
/// store, and creates the first admin, without serving: the first step of
/// a cluster whose instances each run some of the services.
pub async fn init(settings: &Settings, clock: &Clock) -> Result<Initialized, ServerError> {
    let store = open_store(settings).await?;
    let identity = services::identity(settings, &store, ServiceSet::ALL, clock).await?;
    let file = settings.data_dir.join(cas::FIRST_RUN_FILE);
    let first_run_password = cas::first_run(&store, &file, clock.now())
        .await?
        .map(cas::FirstRunPassword);
    Ok(Initialized {
        pin: identity.pin,
        identity_keystore: identity.keystore,
        first_run_password,
    })
}
