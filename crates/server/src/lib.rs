//! The pairgate server: the gate (pairing, TCP 7741) and master (paired
//! terminals only, TCP 7743) services over one store and one server
//! identity. [`Server::start`] binds both and returns their addresses and
//! the identity's pin; `pairgate server` runs it until interrupted.

#![forbid(unsafe_code)]

pub mod cas;
pub mod config;
mod error;
mod gate;
mod http;
pub mod identity;
mod master;
mod paired;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub use config::{DatabaseLocation, Settings};
pub use error::{ApiError, ServerError};
pub use http::{Peer, rfc3339};
pub use identity::ServerIdentity;
pub use paired::PairedSet;

use pairgate_pki::SpkiPin;
use pairgate_store::{PairingLimits, Store};
use pairgate_tls::server::{ClientAuth, TlsServer};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// What a paired terminal receives: where the master is, which server
/// keys to pin, and its VPN profile.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TerminalConfig {
    /// `https://host:port` of the master service.
    pub master_url: String,
    /// SPKI pins (64 hex digits) of the server keys.
    pub server_pins: Vec<String>,
    /// VPN profile text (may be empty).
    pub vpn_profile: String,
}

/// Opens the store the settings name.
pub async fn open_store(settings: &Settings) -> Result<Store, ServerError> {
    Ok(match settings.database() {
        DatabaseLocation::DataDir(dir) => Store::open_data_dir(&dir).await?,
        DatabaseLocation::Url(url) => Store::open(&url).await?,
    })
}

/// A running server.
#[derive(Debug)]
pub struct Server {
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
    /// master and starts serving.
    pub async fn start(settings: &Settings) -> Result<Self, ServerError> {
        let store = open_store(settings).await?;
        let identity = {
            let uri = settings.identity_keystore();
            let pass = settings.identity_passphrase_file();
            let names = settings.server_names.clone();
            tokio::task::spawn_blocking(move || {
                identity::load_or_create(&uri, &pass, &names, SystemTime::now())
            })
            .await
            .map_err(|e| ServerError::Identity(e.to_string()))??
        };
        let policy = settings.tls_policy()?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let gate_listener = bind(&settings.gate_listen).await?;
        let master_listener = bind(&settings.master_listen).await?;
        let gate_addr = local(&gate_listener, &settings.gate_listen)?;
        let master_addr = local(&master_listener, &settings.master_listen)?;

        let cas_listener = bind(&settings.cas_listen).await?;
        let cas_addr = local(&cas_listener, &settings.cas_listen)?;
        let first_run_file = settings.data_dir.join(cas::FIRST_RUN_FILE);
        let first_run_password = cas::first_run(&store, &first_run_file)
            .await?
            .map(cas::FirstRunPassword);
        let cas_state = cas::Cas {
            store: store.clone(),
            limits: pairgate_store::SessionLimits {
                idle: Duration::from_secs(settings.cas_session_idle_secs),
                absolute: Duration::from_secs(settings.cas_session_max_secs),
            },
            secure: settings.cas_tls,
            logins: Arc::new(cas::LoginLimiter::new(cas::LoginLimits {
                per_account: usize::try_from(settings.login_failures_per_account)
                    .unwrap_or(usize::MAX),
                per_address: usize::try_from(settings.login_failures_per_address)
                    .unwrap_or(usize::MAX),
                window: Duration::from_secs(settings.login_window_secs),
            })),
            first_run_file: Some(Arc::new(first_run_file)),
        };
        let cas_tls = if settings.cas_tls {
            Some(pairgate_tls::server::browser_config(
                identity.certified_key.clone(),
                &policy,
            )?)
        } else {
            None
        };
        let cas_url = format!(
            "{}://{cas_addr}",
            if settings.cas_tls { "https" } else { "http" }
        );

        let paired = PairedSet::load(&store).await?;
        let master_url = settings.master_url(master_addr.port());
        let body_limit = usize::try_from(settings.max_body_bytes).unwrap_or(usize::MAX);
        let header_timeout = Duration::from_secs(settings.header_timeout_secs);
        let gate = gate::Gate {
            store: store.clone(),
            limits: PairingLimits {
                ttl: Duration::from_secs(settings.pairing_ttl_secs),
                max_open: i64::try_from(settings.max_open_requests).unwrap_or(i64::MAX),
            },
            long_poll_max: Duration::from_secs(settings.long_poll_max_secs),
            master_url: master_url.clone(),
            unknown_serials: Arc::new(gate::UnknownSerialLimiter::new(
                settings.unknown_serial_per_minute,
            )),
        };
        let master = master::Master {
            store: store.clone(),
            paired: paired.clone(),
            upstream: if settings.upstream_url.is_empty() {
                None
            } else {
                Some(Arc::new(
                    master::Upstream::parse(
                        &settings.upstream_url,
                        Duration::from_secs(settings.proxy_timeout_secs),
                        usize::try_from(settings.max_proxy_body_bytes).unwrap_or(usize::MAX),
                    )
                    .ok_or_else(|| {
                        ServerError::Config(config::ConfigError::Invalid(format!(
                            "upstream_url = {:?} is not http://host:port[/path]",
                            settings.upstream_url
                        )))
                    })?,
                ))
            },
        };
        // The master accepts any proven key in the handshake and refuses
        // per request, so an unpaired terminal gets a clear 403 rather
        // than a TLS alert (and a resumed session cannot skip the check).
        let gate_tls = TlsServer::new(
            identity.certified_key.clone(),
            ClientAuth::AnyProvenKey,
            &policy,
        )?;
        let master_tls = TlsServer::new(
            identity.certified_key.clone(),
            ClientAuth::AnyProvenKey,
            &policy,
        )?;
        let tasks = vec![
            tokio::spawn(http::serve(
                gate_listener,
                gate::router(gate),
                http::ServeOptions {
                    tls: gate_tls,
                    server_pin: identity.pin,
                    body_limit,
                    header_timeout,
                    guard: None,
                    name: "gate",
                },
                shutdown_rx.clone(),
            )),
            tokio::spawn(http::serve(
                master_listener,
                master::router(master),
                http::ServeOptions {
                    tls: master_tls,
                    server_pin: identity.pin,
                    body_limit,
                    header_timeout,
                    guard: Some(Arc::new(paired.clone())),
                    name: "master",
                },
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
                shutdown_rx.clone(),
            )),
            tokio::spawn(sweep_expired(store, shutdown_rx)),
        ];
        Ok(Self {
            gate_addr,
            master_addr,
            pin: identity.pin,
            identity_keystore: identity.keystore,
            master_url,
            paired,
            cas_addr,
            cas_url,
            first_run_password,
            shutdown,
            tasks,
        })
    }

    /// Stops accepting, closes every connection and waits for the tasks.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

fn local(listener: &TcpListener, addr: &str) -> Result<SocketAddr, ServerError> {
    listener.local_addr().map_err(|source| ServerError::Bind {
        addr: addr.to_owned(),
        source,
    })
}

/// Marks expired pairing requests once a minute.
async fn sweep_expired(store: Store, mut shutdown: watch::Receiver<bool>) {
    loop {
        match store.expire_pairing_requests(SystemTime::now()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(expired = n, "pairing requests expired"),
            Err(e) => tracing::warn!(error = %e, "expiring pairing requests failed"),
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(60)) => {}
            _ = shutdown.changed() => return,
        }
    }
}
