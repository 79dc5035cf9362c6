//! The parts a server is made of, each built from the settings on its
//! own: the identity, the state of the gate, the master and CAS, and how
//! a listener serves connections. [`crate::Server::start_with_clock`]
//! composes them; a deployment that runs the services apart can build
//! just the ones it needs.

use std::sync::Arc;
use std::time::Duration;

use pairgate_clock::Clock;
use pairgate_pki::SpkiPin;
use pairgate_store::Store;
use pairgate_tls::TlsPolicy;
use pairgate_tls::server::{ClientAuth, TlsServer};

use crate::conn::ConnectionLimiter;
use crate::http::ConnectionGuard;
use crate::identity::{self, ServerIdentity};
use crate::paired::PairedSet;
use crate::refusals::{RefusalLog, UnknownSerialLimiter};
use crate::{
    ServerError, ServiceSet, Settings, audit_anchor, cas, config, gate, http, master, proxy,
};

fn count(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// Loads the server identity and holds it to the one the store records.
/// Only an instance running every service, on a store that records no
/// identity yet, may create it (and records it, audited); any other
/// instance whose key is missing or differs refuses to start. The key
/// store is read off the async workers (an HSM may be slow).
pub(crate) async fn identity(
    settings: &Settings,
    store: &Store,
    services: ServiceSet,
    clock: &Clock,
) -> Result<ServerIdentity, ServerError> {
    let recorded = store.recorded_identity().await?;
    if recorded.is_none() && !services.is_all() {
        return Err(ServerError::Identity(format!(
            "the store records no server identity yet, and an instance running only {services} \
             never creates one: run `pairgate server init` once (on the node whose identity \
             terminals will pin), then start this instance with that identity"
        )));
    }
    let creating = if recorded.is_none() {
        identity::Creating::Allowed
    } else {
        identity::Creating::Refused
    };
    let uri = settings.identity_keystore();
    let pass = settings.identity_passphrase_file();
    let names = settings.server_names.clone();
    let now = clock.now();
    let loaded = tokio::task::spawn_blocking(move || {
        identity::load_pinned(&uri, &pass, &names, now, creating, recorded)
    })
    .await
    .map_err(|e| ServerError::Identity(e.to_string()))??;
    match recorded {
        Some(pin) => identity::check_recorded(&loaded, pin)?,
        None => {
            let actor = pairgate_store::Actor::new("server");
            match store.record_identity(loaded.pin, &actor, now).await {
                Ok(()) => {}
                // Another instance recorded its identity first: serve
                // only if it is this one.
                Err(pairgate_store::StoreError::Conflict(_)) => {
                    if let Some(pin) = store.recorded_identity().await? {
                        identity::check_recorded(&loaded, pin)?;
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(loaded)
}

/// What every CAS handler shares.
pub(crate) fn cas(
    settings: &Settings,
    store: &Store,
    (server_pin, presented): (SpkiPin, &Arc<crate::identity::Presented>),
    audit_checked: audit_anchor::LastFullCheck,
    clock: &Clock,
) -> cas::Cas {
    cas::Cas {
        store: store.clone(),
        limits: pairgate_store::SessionLimits {
            idle: Duration::from_secs(settings.cas_session_idle_secs),
            absolute: Duration::from_secs(settings.cas_session_max_secs),
        },
        secure: settings.cas_tls,
        logins: Arc::new(cas::Logins::new(
            cas::LoginLimits {
                per_account: count(settings.login_failures_per_account),
                per_address: count(settings.login_failures_per_address),
                window: Duration::from_secs(settings.login_window_secs),
            },
            store.clone(),
            clock.clone(),
        )),
        first_run_file: Some(Arc::new(settings.data_dir.join(cas::FIRST_RUN_FILE))),
        hosts: Arc::new(settings.cas_hosts()),
        server_pin,
        presented: presented.clone(),
        audit_checked,
        vpn: settings.vpn().ok().flatten().map(Arc::new),
        clock: clock.clone(),
    }
}

/// The gate's state.
pub(crate) fn gate(
    settings: &Settings,
    store: &Store,
    master_url: &str,
    refusals: &Arc<RefusalLog>,
    paired: Option<&Arc<PairedSet>>,
    waiters: &Arc<crate::waiters::Waiters>,
    clock: &Clock,
) -> gate::Gate {
    gate::Gate {
        store: store.clone(),
        limits: settings.pairing_limits(),
        long_poll_max: Duration::from_secs(settings.long_poll_max_secs),
        master_url: master_url.to_owned(),
        unknown_serials: Arc::new(UnknownSerialLimiter::new(
            settings.unknown_serial_per_minute,
            settings.unknown_serial_per_address_per_minute,
        )),
        refusals: refusals.clone(),
        clock: clock.clone(),
        paired: paired.cloned(),
        waiters: waiters.clone(),
        vpn: None,
    }
}

/// The master's state; refused when `upstream_url` cannot be used.
pub(crate) fn master(
    settings: &Settings,
    store: &Store,
    paired: &Arc<PairedSet>,
    presence: &Arc<crate::clones::Presence>,
    clock: &Clock,
) -> Result<master::Master, ServerError> {
    let upstream = proxy::Upstream::from_settings(settings)
        .map_err(|why| ServerError::Config(config::ConfigError::Invalid(why)))?
        .map(Arc::new);
    Ok(master::Master {
        store: store.clone(),
        paired: paired.clone(),
        clock: clock.clone(),
        upstream,
        presence: presence.clone(),
        rekey_overlap: std::time::Duration::from_secs(settings.rekey_overlap_secs),
        terminal_ca: crate::terminal_ca::TerminalCa::from_settings(settings)?.map(Arc::new),
        vpn: None,
        keys: Arc::default(),
    })
}

/// Which terminal-facing listener [`serving`] is for: what differs
/// between the gate and the master is decided here, once.
pub(crate) enum Listener {
    /// The gate: a pairing request stores the client's certificate.
    Gate,
    /// The master: its guard (the paired set) closes a connection on
    /// unpair, `/app` upgrades are spliced, and a connection needs only
    /// its certificate's fingerprint.
    Master(Arc<dyn ConnectionGuard>),
}

/// How a TLS listener (gate or master) serves its connections. Both
/// accept any proven key in the handshake and decide per request, so an
/// unpaired terminal gets a clear 403 at the master rather than a TLS
/// alert (and a resumed session cannot skip the check).
pub(crate) fn serving(
    settings: &Settings,
    listener: Listener,
    (identity, presented): (&ServerIdentity, &Arc<crate::identity::Presented>),
    policy: &TlsPolicy,
    limiter: Arc<ConnectionLimiter>,
    metrics: &Arc<crate::metrics::Metrics>,
) -> Result<http::ServeOptions, ServerError> {
    let (service, guard) = match listener {
        Listener::Gate => (crate::metrics::Service::Gate, None),
        Listener::Master(guard) => (crate::metrics::Service::Master, Some(guard)),
    };
    let master = guard.is_some();
    // Only the master lets an expired certificate in, and only to re-key.
    let expired_grace = master.then(|| Duration::from_secs(settings.expired_grace_secs));
    let auth = match expired_grace {
        Some(grace) => ClientAuth::AnyProvenKeyExpiredWithin(grace),
        None => ClientAuth::AnyProvenKey,
    };
    let tls = TlsServer::new(identity.certified_key.clone(), auth, policy)?;
    Ok(http::ServeOptions {
        tls,
        server_pin: presented.clone(),
        body_limit: count(settings.max_body_bytes),
        body_timeout: Duration::from_secs(settings.body_timeout_secs),
        header_timeout: Duration::from_secs(settings.header_timeout_secs),
        linger: Duration::from_secs(settings.linger_secs),
        limiter,
        upgrades: master,
        keep_certificate: !master,
        guard,
        name: service.name(),
        service,
        metrics: metrics.clone(),
        clock: policy.clock.clone(),
        expired_grace,
    })
}

/// CAS's TLS configuration, when `cas_tls` asks for one.
pub(crate) fn cas_tls(
    settings: &Settings,
    identity: &ServerIdentity,
    policy: &TlsPolicy,
) -> Result<Option<Arc<rustls::ServerConfig>>, ServerError> {
    if !settings.cas_tls {
        return Ok(None);
    }
    Ok(Some(pairgate_tls::server::browser_config(
        identity.certified_key.clone(),
        policy,
    )?))
}

/// When the audit log is signed.
pub(crate) fn anchoring(settings: &Settings) -> audit_anchor::AnchorPolicy {
    audit_anchor::AnchorPolicy {
        records: i64::try_from(settings.audit_checkpoint_records).unwrap_or(i64::MAX),
        every: Duration::from_secs(settings.audit_checkpoint_secs),
    }
}
