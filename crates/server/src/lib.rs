//! The pairgate server: the gate (pairing, TCP 7741) and master (paired
//! terminals only, TCP 7743) services over one store and one server
//! identity. [`Server::start`] binds both and returns their addresses and
//! the identity's pin; `pairgate server` runs it until interrupted.

#![forbid(unsafe_code)]

pub mod audit_anchor;
pub mod cas;
pub mod config;
pub mod conn;
mod error;
mod gate;
mod http;
pub mod identity;
mod master;
mod paired;
mod proxy;
mod refusals;
mod services;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use config::{DatabaseLocation, Settings};
pub use error::{ApiError, ServerError};
pub use http::{Peer, rfc3339, unix_millis};
pub use identity::ServerIdentity;
pub use paired::PairedSet;

pub use pairgate_clock::Clock;
use pairgate_pki::SpkiPin;
use pairgate_store::Store;
use pairgate_tls::server::TlsServer;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use pairgate_proto::TerminalConfig;

/// Opens the store the settings name.
pub async fn open_store(settings: &Settings) -> Result<Store, ServerError> {
    let store = match settings.database() {
        DatabaseLocation::DataDir(dir) => Store::open_data_dir(&dir).await?,
        DatabaseLocation::Url(url) => Store::open(&url).await?,
    };
    Ok(store
        .with_hash_concurrency(
            usize::try_from(settings.password_hash_concurrency).unwrap_or(usize::MAX),
        )
        .with_step_up_limits(settings.step_up_limits())
        .with_token_lifetime(settings.api_token_lifetime()))
}

/// A running server.
#[derive(Debug)]
pub struct Server {
    /// What time it is, for every service of this server.
    pub clock: Clock,
    /// Where the gate listens.
    pub gate_addr: SocketAddr,
    /// Where the master listens.
    pub master_addr: SocketAddr,
    /// The pin terminals learn.
    pub pin: SpkiPin,
    /// The identity key store, described.
    pub identity_keystore: String,
    /// The master URL handed to terminals.
    pub master_url: String,
    /// The paired set the master checks.
    pub paired: Arc<PairedSet>,
    /// Where CAS listens.
    pub cas_addr: SocketAddr,
    /// CAS's base URL (`http://…` or `https://…`).
    pub cas_url: String,
    /// First run only: the one-time password of `admin`, for the console
    /// (also in [`cas::FIRST_RUN_FILE`] in the data directory).
    pub first_run_password: Option<cas::FirstRunPassword>,
    /// Open connections of gate, master and CAS, against their caps.
    pub connections: [Arc<conn::ConnectionLimiter>; 3],
    /// The gate's TLS server (its session cache, for the bounds' tests).
    pub gate_tls: TlsServer,
    /// The master's TLS server.
    pub master_tls: TlsServer,
    store: Store,
    refusals: Arc<refusals::RefusalLog>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

async fn bind(addr: &str) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind {
            addr: addr.to_owned(),
            source,
        })
}

impl Server {
    /// Opens the store, loads (or creates) the identity, binds gate and
    /// master and starts serving, on the system clock.
    pub async fn start(settings: &Settings) -> Result<Self, ServerError> {
        Self::start_with_clock(settings, Clock::system()).await
    }

    /// As [`Server::start`], reading time from `clock` (tests hand in a
    /// manual one and move it instead of sleeping).
    pub async fn start_with_clock(settings: &Settings, clock: Clock) -> Result<Self, ServerError> {
        let store = open_store(settings).await?;
        let identity = services::identity(settings, &clock).await?;
        let policy = pairgate_tls::TlsPolicy {
            clock: clock.clone(),
            ..settings.tls_policy()?
        };
        let (shutdown, shutdown_rx) = watch::channel(false);
        let gate_listener = bind(&settings.gate_listen).await?;
        let master_listener = bind(&settings.master_listen).await?;
        let cas_listener = bind(&settings.cas_listen).await?;
        let gate_addr = local(&gate_listener, &settings.gate_listen)?;
        let master_addr = local(&master_listener, &settings.master_listen)?;
        let cas_addr = local(&cas_listener, &settings.cas_listen)?;

        let signer = Arc::new(audit_anchor::IdentitySigner::new(&identity.certified_key)?);
        let audit_checked = audit_anchor::LastFullCheck::default();
        let first_run_file = settings.data_dir.join(cas::FIRST_RUN_FILE);
        let first_run_password = cas::first_run(&store, &first_run_file, clock.now())
            .await?
            .map(cas::FirstRunPassword);
        let cas_state = services::cas(
            settings,
            &store,
            identity.pin,
            audit_checked.clone(),
            &clock,
        );
        let cas_tls = services::cas_tls(settings, &identity, &policy)?;
        let cas_url = format!(
            "{}://{cas_addr}",
            if settings.cas_tls { "https" } else { "http" }
        );

        let paired = PairedSet::load(&store).await?;
        let master_url = settings.master_url(master_addr.port());
        let [gate_limiter, master_limiter, cas_limiter] = settings
            .connection_limits(conn::open_file_limit())
            .map(conn::ConnectionLimiter::new);
        let refusals = Arc::new(refusals::RefusalLog::new(
            usize::try_from(settings.refusal_audit_per_minute).unwrap_or(usize::MAX),
        ));
        let gate = services::gate(settings, &store, &master_url, &refusals, &clock);
        let master = services::master(settings, &store, &paired, &clock)?;
        let gate_serving = services::serving(
            settings,
            "gate",
            &identity,
            &policy,
            gate_limiter.clone(),
            None,
        )?;
        let master_serving = services::serving(
            settings,
            "master",
            &identity,
            &policy,
            master_limiter.clone(),
            Some(Arc::new(paired.clone())),
        )?;
        let (gate_tls, master_tls) = (gate_serving.tls.clone(), master_serving.tls.clone());
        let header_timeout = Duration::from_secs(settings.header_timeout_secs);
        let tasks = vec![
            tokio::spawn(http::serve(
                gate_listener,
                gate::router(gate),
                gate_serving,
                shutdown_rx.clone(),
            )),
            tokio::spawn(http::serve(
                master_listener,
                master::router(master),
                master_serving,
                shutdown_rx.clone(),
            )),
            tokio::spawn(paired.clone().follow(
                store.clone(),
                Duration::from_millis(settings.paired_poll_ms),
                Duration::from_secs(settings.reconcile_secs),
                shutdown_rx.clone(),
            )),
            tokio::spawn(cas::serve(
                cas_listener,
                cas::router(cas_state),
                cas_tls,
                header_timeout,
                cas_limiter.clone(),
                shutdown_rx.clone(),
            )),
            tokio::spawn(audit_anchor::run(
                store.clone(),
                signer,
                services::anchoring(settings),
                audit_checked,
                clock.clone(),
                shutdown_rx.clone(),
            )),
            tokio::spawn(sweep(
                store.clone(),
                refusals.clone(),
                Duration::from_secs(settings.closed_request_retention_secs),
                clock.clone(),
                shutdown_rx,
            )),
        ];
        Ok(Self {
            clock,
            gate_addr,
            master_addr,
            pin: identity.pin,
            identity_keystore: identity.keystore,
            master_url,
            paired,
            cas_addr,
            cas_url,
            first_run_password,
            connections: [gate_limiter, master_limiter, cas_limiter],
            gate_tls,
            master_tls,
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
            .flush(&self.store, REFUSAL_WINDOW, self.clock.now())
            .await
    }
}

fn local(listener: &TcpListener, addr: &str) -> Result<SocketAddr, ServerError> {
    listener.local_addr().map_err(|source| ServerError::Bind {
        addr: addr.to_owned(),
        source,
    })
}

/// How often refusals are audited, aggregated.
const REFUSAL_WINDOW: Duration = Duration::from_secs(60);

/// Once a minute: marks expired pairing requests, deletes closed ones
/// past their retention, and audits the window's refusals.
async fn sweep(
    store: Store,
    refusals: Arc<refusals::RefusalLog>,
    retention: Duration,
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
        if let Err(e) = refusals.flush(&store, REFUSAL_WINDOW, now).await {
            tracing::warn!(error = %e, "auditing refusals failed");
        }
    }
}
