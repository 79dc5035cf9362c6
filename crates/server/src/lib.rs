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
pub mod identity_export;
mod instance;
mod keepalive;
mod master;
mod metrics;
mod paired;
mod proxy;
mod refusals;
mod rekey;
mod running;
mod server_keys;
mod service_set;
mod services;
pub mod terminal_ca;
pub mod vpn;
mod waiters;

use std::net::SocketAddr;
use std::sync::Arc;

pub use config::{DatabaseLocation, Settings, VpnSettings};
pub use error::{ApiError, ServerError};
pub use http::{Peer, rfc3339, unix_millis};
pub use identity::ServerIdentity;
pub use instance::{Initialized, Instance, init};
pub use paired::PairedSet;
pub use service_set::ServiceSet;

pub use pairgate_clock::Clock;
use pairgate_pki::SpkiPin;
use pairgate_store::Store;
use pairgate_tls::server::TlsServer;

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

/// A running server with all three services: [`Instance`] with every
/// address present.
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
    /// Where `/metrics`, `/healthz` and `/readyz` answer, if anywhere.
    pub metrics_addr: Option<SocketAddr>,
    instance: Instance,
}

impl Server {
    /// Opens the store, loads (or creates) the identity, binds gate,
    /// master and CAS and starts serving, on the system clock.
    pub async fn start(settings: &Settings) -> Result<Self, ServerError> {
        Self::start_with_clock(settings, Clock::system()).await
    }

    /// As [`Server::start`], reading time from `clock` (tests hand in a
    /// manual one and move it instead of sleeping). Every service runs,
    /// whatever the `services` setting says.
    pub async fn start_with_clock(settings: &Settings, clock: Clock) -> Result<Self, ServerError> {
        let mut instance = Instance::start(settings, ServiceSet::ALL, clock).await?;
        let (
            Some(gate_addr),
            Some(master_addr),
            Some((cas_addr, cas_url)),
            Some(paired),
            [Some(gate_tls), Some(master_tls)],
        ) = (
            instance.gate_addr,
            instance.master_addr,
            instance.cas.clone(),
            instance.paired.clone(),
            instance.tls.clone(),
        )
        else {
            instance.shutdown().await;
            return Err(ServerError::NotStarted("one of gate, master and CAS"));
        };
        Ok(Self {
            clock: instance.clock.clone(),
            gate_addr,
            master_addr,
            pin: instance.pin,
            identity_keystore: instance.identity_keystore.clone(),
            master_url: instance.master_url.clone(),
            paired,
            cas_addr,
            cas_url,
            first_run_password: instance.first_run_password.take(),
            connections: instance.connections.clone(),
            gate_tls,
            master_tls,
            metrics_addr: instance.metrics_addr,
            instance,
        })
    }

    /// Stops accepting, closes every connection and waits for the tasks;
    /// the refusals counted since the last window are audited.
    pub async fn shutdown(self) {
        self.instance.shutdown().await;
    }

    /// Audits the refusals counted so far now rather than at the end of
    /// the window; returns how many records were written.
    pub async fn flush_refusals(&self) -> Result<usize, pairgate_store::StoreError> {
        self.instance.flush_refusals().await
    }
}
