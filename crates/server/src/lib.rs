//! The pairgate server: the gate (pairing, TCP 7741) and master (paired
//! terminals only, TCP 7743) services over one store and one server
//! identity. [`Server::start`] binds both and returns their addresses and
//! the identity's pin; `pairgate server` runs it until interrupted.

#![forbid(unsafe_code)]

pub mod audit_anchor;
pub mod cas;
mod clones;
pub mod config;
pub mod conn;
mod error;
mod gate;
mod http;
pub mod identity;
mod keepalive;
mod master;
mod paired;
mod proxy;
mod refusals;
mod running;
mod services;

use std::net::SocketAddr;
use std::sync::Arc;

pub use config::{DatabaseLocation, Settings};
pub use error::{ApiError, ServerError};
pub use http::{Peer, rfc3339, unix_millis};
pub use identity::ServerIdentity;
pub use paired::PairedSet;

pub use pairgate_clock::Clock;
use pairgate_pki::SpkiPin;
use pairgate_store::Store;
use pairgate_tls::server::TlsServer;
use running::Bound;
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
        .with_approval_rules(settings.approval_rules()?)
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
        let gate_at = Bound::bind(&settings.gate_listen).await?;
        let master_at = Bound::bind(&settings.master_listen).await?;
        let cas_at = Bound::bind(&settings.cas_listen).await?;
        let (gate_addr, master_addr, cas_addr) = (gate_at.addr, master_at.addr, cas_at.addr);
        let at = running::Shared {
            settings,
            store: &store,
            identity: &identity,
            policy: &policy,
            clock: &clock,
            shutdown: &shutdown_rx,
        };
        let [gate_limiter, master_limiter, cas_limiter] = settings
            .connection_limits(conn::open_file_limit())
            .map(conn::ConnectionLimiter::new);
        let connections = [
            gate_limiter.clone(),
            master_limiter.clone(),
            cas_limiter.clone(),
        ];
        let signer = Arc::new(audit_anchor::IdentitySigner::new(&identity.certified_key)?);
        let audit_checked = audit_anchor::LastFullCheck::default();
        let operators = running::operators(&at, cas_at, cas_limiter, audit_checked.clone()).await?;
        let paired = PairedSet::load(&store).await?;
        let refusals = Arc::new(refusals::RefusalLog::new(
            usize::try_from(settings.refusal_audit_per_minute).unwrap_or(usize::MAX),
        ));
        let master_url = settings.master_url(master_addr.port());
        let terminals = running::terminals(
            &at,
            [gate_at, master_at],
            [gate_limiter, master_limiter],
            &paired,
            &refusals,
            &master_url,
        )?;
        let mut tasks = terminals.tasks;
        tasks.push(operators.task);
        tasks.extend(running::background(
            &at,
            &paired,
            &refusals,
            audit_checked,
            signer,
        ));
        Ok(Self {
            clock,
            gate_addr,
            master_addr,
            pin: identity.pin,
            identity_keystore: identity.keystore,
            master_url,
            paired,
            cas_addr,
            cas_url: operators.url,
            first_run_password: operators.first_run_password,
            connections,
            gate_tls: terminals.gate_tls,
            master_tls: terminals.master_tls,
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
