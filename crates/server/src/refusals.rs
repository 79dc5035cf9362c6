//! Refusals of unauthenticated gate clients, limited and audited in
//! aggregate. Every refused attempt used to be one audit record, so a
//! flood of them grew the database as fast as the attacker could send;
//! now the gate counts refusals in memory per source address and kind,
//! and once a window writes one record per address and kind with its
//! count, up to a budget per window; the rest are summed in one more
//! record. Refused traffic thus adds at most `budget + 1` records a
//! window, however much of it there is.
//!
//! [`UnknownSerialLimiter`] decides when unknown-serial attempts are
//! answered `429` without reaching the store: per (address, certificate),
//! and with a larger budget per address that only ever applies to unknown
//! serials, so terminals behind one NAT address never lock each other out.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use pairgate_pki::TerminalFingerprint;
use pairgate_store::{Refusal, Store, StoreError};

/// Addresses (or address and key pairs) tracked at once; beyond it,
/// finished windows are dropped and new keys are counted as over limit.
const MAX_TRACKED: usize = 100_000;

/// Counts per key in fixed windows.
#[derive(Debug)]
struct Windows<K> {
    window: Duration,
    counts: HashMap<K, (Instant, u64)>,
}

impl<K: std::hash::Hash + Eq + Copy> Windows<K> {
    fn new(window: Duration) -> Self {
        Self {
            window,
            counts: HashMap::new(),
        }
    }

    /// The count of `key` in its current window.
    fn get(&mut self, key: K, now: Instant) -> u64 {
        match self.counts.get(&key) {
            Some((start, _)) if now.saturating_duration_since(*start) >= self.window => {
                self.counts.remove(&key);
                0
            }
            Some((_, n)) => *n,
            None => 0,
        }
    }

    /// Counts one for `key`; `false` when the table is full (callers then
    /// treat the key as over its limit).
    fn add(&mut self, key: K, now: Instant) -> bool {
        if self.counts.len() >= MAX_TRACKED && !self.counts.contains_key(&key) {
            let window = self.window;
            self.counts
                .retain(|_, (start, _)| now.saturating_duration_since(*start) < window);
            if self.counts.len() >= MAX_TRACKED {
                return false;
            }
        }
        let entry = self.counts.entry(key).or_insert((now, 0));
        if now.saturating_duration_since(entry.0) >= self.window {
            *entry = (now, 0);
        }
        entry.1 += 1;
        true
    }
}

/// Per (address, certificate), and per address.
type UnknownSerialWindows = (Windows<(IpAddr, TerminalFingerprint)>, Windows<IpAddr>);

/// Limits unknown-serial attempts, per minute.
#[derive(Debug)]
pub(crate) struct UnknownSerialLimiter {
    per_key: u64,
    per_address: u64,
    inner: Mutex<UnknownSerialWindows>,
}

impl UnknownSerialLimiter {
    /// At most `per_key` attempts per (address, certificate) and
    /// `per_address` per address in a minute.
    pub(crate) fn new(per_key: u64, per_address: u64) -> Self {
        let minute = Duration::from_secs(60);
        Self {
            per_key,
            per_address,
            inner: Mutex::new((Windows::new(minute), Windows::new(minute))),
        }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, UnknownSerialWindows> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether this certificate from this address has used up its
    /// unknown-serial attempts: it is answered before the store is asked.
    pub(crate) fn key_blocked(&self, ip: IpAddr, fp: TerminalFingerprint, now: Instant) -> bool {
        self.inner().0.get((ip, fp), now) >= self.per_key
    }

    /// Whether the address has used up its unknown-serial budget (asked
    /// only once the serial is known to be unknown).
    pub(crate) fn address_blocked(&self, ip: IpAddr, now: Instant) -> bool {
        self.inner().1.get(ip, now) >= self.per_address
    }

    /// The attempts an address may make in a minute.
    pub(crate) fn per_address(&self) -> u64 {
        self.per_address
    }

    /// Marks the address as having used up its budget, as the cluster's
    /// count in the store says: its next attempts here are answered
    /// without asking the store.
    pub(crate) fn saturate(&self, ip: IpAddr, now: Instant) {
        let mut inner = self.inner();
        while inner.1.get(ip, now) < self.per_address {
            if !inner.1.add(ip, now) {
                break;
            }
        }
    }

    /// Counts one unknown-serial attempt.
    pub(crate) fn count(&self, ip: IpAddr, fp: TerminalFingerprint, now: Instant) {
        let mut inner = self.inner();
        inner.0.add((ip, fp), now);
        inner.1.add(ip, now);
    }
}

/// One address's refusals of one kind in the current window.
#[derive(Debug)]
struct Tally {
    count: u64,
    first: serde_json::Value,
}

/// Refusals counted for aggregated audit records.
#[derive(Debug)]
pub(crate) struct RefusalLog {
    budget: usize,
    tallies: Mutex<HashMap<(IpAddr, &'static str), Tally>>,
    untracked: Mutex<u64>,
}

impl RefusalLog {
    /// A log writing at most `budget` per-address records a window.
    pub(crate) fn new(budget: usize) -> Self {
        Self {
            budget,
            tallies: Mutex::new(HashMap::new()),
            untracked: Mutex::new(0),
        }
    }

    /// Counts one refusal of `kind` (an audit action) from `ip`; `first`
    /// describes it if it is the first of its window.
    pub(crate) fn record(
        &self,
        ip: IpAddr,
        kind: &'static str,
        first: impl FnOnce() -> serde_json::Value,
    ) {
        let mut tallies = self
            .tallies
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(t) = tallies.get_mut(&(ip, kind)) {
            t.count += 1;
        } else if tallies.len() < MAX_TRACKED {
            tallies.insert(
                (ip, kind),
                Tally {
                    count: 1,
                    first: first(),
                },
            );
        } else {
            drop(tallies);
            *self
                .untracked
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) += 1;
        }
    }

    /// The audit records for the window that ends now (the counts start
    /// again): one per address and kind, most refusals first, up to the
    /// budget, then one `gate.refusals_summed` record for the rest.
    pub(crate) fn drain(&self, window: Duration) -> Vec<Refusal> {
        let tallies = std::mem::take(
            &mut *self
                .tallies
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        let untracked = std::mem::take(
            &mut *self
                .untracked
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        let mut tallies: Vec<_> = tallies.into_iter().collect();
        tallies.sort_by_key(|t| std::cmp::Reverse(t.1.count));
        let split = tallies.len().min(self.budget);
        let rest = tallies.split_off(split);
        let mut out: Vec<Refusal> = tallies
            .into_iter()
            .map(|((ip, kind), t)| Refusal {
                action: kind.to_owned(),
                subject: ip.to_string(),
                detail: serde_json::json!({
                    "remote_address": ip.to_string(), "count": t.count,
                    "window_secs": window.as_secs(), "first": t.first,
                }),
            })
            .collect();
        if !rest.is_empty() || untracked > 0 {
            let addresses = rest.len();
            let count: u64 = rest.iter().map(|(_, t)| t.count).sum::<u64>() + untracked;
            out.push(Refusal {
                action: "gate.refusals_summed".into(),
                subject: "gate".into(),
                detail: serde_json::json!({
                    "addresses": addresses, "count": count, "window_secs": window.as_secs(),
                }),
            });
        }
        out
    }

    /// Writes the window's records to the store.
    pub(crate) async fn flush(
        &self,
        store: &Store,
        window: Duration,
        now: SystemTime,
    ) -> Result<usize, StoreError> {
        let records = self.drain(window);
        store.record_refusals(&records, now).await?;
        Ok(records.len())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_bounds_the_records_of_a_window() {
        let log = RefusalLog::new(3);
        for a in 0..10u8 {
            for _ in 0..=a {
                log.record(
                    IpAddr::from([127, 0, 0, a]),
                    "pairing.unknown_serial",
                    || serde_json::json!({"serial": "X"}),
                );
            }
        }
        let records = log.drain(Duration::from_secs(60));
        assert_eq!(records.len(), 4);
        assert_eq!(records[0].subject, "127.0.0.9");
        assert_eq!(records[0].detail["count"], 10);
        assert_eq!(records[3].action, "gate.refusals_summed");
        assert_eq!(records[3].detail["addresses"], 7);
        assert_eq!(records[3].detail["count"], 1 + 2 + 3 + 4 + 5 + 6 + 7);
        assert!(log.drain(Duration::from_secs(60)).is_empty());
    }

    #[test]
    fn unknown_serials_limit_the_key_before_the_address() {
        let limiter = UnknownSerialLimiter::new(2, 3);
        let ip = IpAddr::from([127, 0, 0, 1]);
        let (a, b) = (
            TerminalFingerprint::from_bytes([1; 32]),
            TerminalFingerprint::from_bytes([2; 32]),
        );
        let now = Instant::now();
        limiter.count(ip, a, now);
        limiter.count(ip, a, now);
        assert!(limiter.key_blocked(ip, a, now));
        assert!(!limiter.key_blocked(ip, b, now));
        assert!(!limiter.address_blocked(ip, now));
        limiter.count(ip, b, now);
        assert!(limiter.address_blocked(ip, now));
        assert!(!limiter.address_blocked(IpAddr::from([127, 0, 0, 2]), now));
        // The window is a minute.
        let later = now + std::time::Duration::from_secs(61);
        assert!(!limiter.key_blocked(ip, a, later));
        assert!(!limiter.address_blocked(ip, later));
    }
}
