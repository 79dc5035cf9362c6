//! Clone detection at the master. Each paired connection registers its
//! certificate's fingerprint and source address for as long as it lives;
//! a second address for the same fingerprint while the first is live, or
//! a heartbeat whose counter does not rise, is reported to a task that
//! marks the terminal in the store (and suspends it when `clone_action =
//! "suspend"`). Reports go through a bounded queue, so a flood of them
//! costs no more than the queue; the store writes only the first per
//! terminal until an operator resumes it.
//!
//! What one instance sees: two copies on two masters of a cluster are
//! caught by the heartbeat counter, not by this registry.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use pairgate_pki::TerminalFingerprint;
use pairgate_store::{CloneAction, Store};
use tokio::sync::mpsc;

use crate::http::ConnectionGuard;
use crate::paired::PairedSet;

/// Reports waiting for the store; more are dropped (the first per
/// terminal is the one that counts).
const QUEUE: usize = 256;

/// One report: the fingerprint and what was seen.
struct Report {
    fingerprint: TerminalFingerprint,
    evidence: serde_json::Value,
}

/// Live master connections by fingerprint and source address.
pub(crate) struct Presence {
    live: Mutex<HashMap<TerminalFingerprint, HashMap<IpAddr, usize>>>,
    reports: mpsc::Sender<Report>,
    clock: pairgate_clock::Clock,
}

impl Presence {
    /// A registry whose reports a task writes to `store`, taking
    /// `action`, until the registry is dropped.
    pub(crate) fn start(
        store: Store,
        action: CloneAction,
        clock: pairgate_clock::Clock,
    ) -> Arc<Self> {
        let (reports, mut queue) = mpsc::channel::<Report>(QUEUE);
        let task_clock = clock.clone();
        tokio::spawn(async move {
            while let Some(report) = queue.recv().await {
                let now = task_clock.now();
                match store
                    .suspect_clone(&report.fingerprint, &report.evidence, action, now)
                    .await
                {
                    Ok(Some(t)) => tracing::warn!(
                        serial = %t.serial, fingerprint = %report.fingerprint, evidence = %report.evidence,
                        suspended = t.suspended_at.is_some(), "suspected clone"
                    ),
                    Ok(None) => {}
                    Err(e) => tracing::error!(error = %e, "recording a suspected clone failed"),
                }
            }
        });
        Arc::new(Self {
            live: Mutex::new(HashMap::new()),
            reports,
            clock,
        })
    }

    /// Reports `fingerprint` with `evidence` (dropped when the queue is
    /// full).
    pub(crate) fn report(&self, fingerprint: TerminalFingerprint, evidence: serde_json::Value) {
        let _ = self.reports.try_send(Report {
            fingerprint,
            evidence,
        });
    }

    /// Registers a live connection; reports when another address already
    /// has one for this fingerprint.
    fn arrive(&self, fingerprint: TerminalFingerprint, address: IpAddr) {
        let others: Vec<IpAddr> = {
            let mut live = self
                .live
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let addresses = live.entry(fingerprint).or_default();
            *addresses.entry(address).or_default() += 1;
            addresses
                .keys()
                .filter(|a| **a != address)
                .copied()
                .collect()
        };
        if !others.is_empty() {
            let at = crate::http::rfc3339(crate::http::unix_millis(self.clock.now()));
            self.report(
                fingerprint,
                serde_json::json!({
                    "reason": "live connections from two addresses at once",
                    "address": address.to_string(),
                    "other_addresses": others.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "at": at,
                }),
            );
        }
    }

    fn leave(&self, fingerprint: &TerminalFingerprint, address: IpAddr) {
        let mut live = self
            .live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(addresses) = live.get_mut(fingerprint) {
            if let Some(n) = addresses.get_mut(&address) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    addresses.remove(&address);
                }
            }
            if addresses.is_empty() {
                live.remove(fingerprint);
            }
        }
    }
}

/// Unregisters a connection when it ends.
struct Departure {
    presence: Arc<Presence>,
    fingerprint: TerminalFingerprint,
    address: IpAddr,
}

impl Drop for Departure {
    fn drop(&mut self) {
        self.presence.leave(&self.fingerprint, self.address);
    }
}

/// The master's connection guard: closes a connection when its terminal
/// is no longer served (unpaired or suspended), and keeps the registry of
/// live connections for clone detection.
pub(crate) struct MasterGuard {
    pub(crate) paired: Arc<PairedSet>,
    pub(crate) presence: Arc<Presence>,
}

impl ConnectionGuard for MasterGuard {
    fn closed(
        &self,
        fingerprint: TerminalFingerprint,
        address: IpAddr,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let departure = self.paired.terminal(&fingerprint).map(|_| {
            self.presence.arrive(fingerprint, address);
            Departure {
                presence: self.presence.clone(),
                fingerprint,
                address,
            }
        });
        let closed = self.paired.closed(fingerprint);
        Box::pin(async move {
            // Held for the connection's life: dropped with this future.
            let _departure = departure;
            closed.await;
        })
    }
}
