//! The server's session cache, bounded three ways: by age, by count and by
//! bytes. Each entry holds the client's certificate chain (rustls keeps it
//! to name the peer of a resumed session), so an unauthenticated client
//! with a large certificate must not be able to grow it without bound:
//! the verifier caps the chain's size and this cache caps the total.
//!
//! A session's age counts from the *full* handshake it descends from.
//! TLS 1.3 issues a new ticket on every resumed handshake, and rustls
//! stamps it with the time of that resumption; resuming just inside the
//! lifetime, again and again, would keep one certificate check alive
//! forever. So every connection carries a random [`Lineage`] in the
//! ticket's application data: a full handshake starts a lineage at its own
//! time, and a resumed one inherits the start of the lineage it resumed
//! ([`TtlServerSessionStore::resumed`]). Entries are refused once their
//! lineage is older than the lifetime, whenever their ticket was issued.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rustls::server::StoresServerSessions;

/// Bytes counted per entry beyond its key and value (map and queue slots).
const ENTRY_OVERHEAD: usize = 128;

/// The random tag of one connection's sessions, carried in its tickets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Lineage([u8; 16]);

impl Lineage {
    /// A fresh tag for a new connection.
    pub fn random() -> Self {
        let mut bytes = [0u8; 16];
        // aws-lc aborts the process rather than return weak randomness.
        let _ = aws_lc_rs::rand::fill(&mut bytes);
        Self(bytes)
    }

    /// The bytes to give `ServerConnection::set_resumption_data`.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }

    /// Reads the lineage out of a stored session value. rustls encodes a
    /// server session as `… application_data (u16 length, bytes) ‖
    /// creation_time (u64) ‖ age_offset (u32)`; a value that does not end
    /// that way (another rustls encoding) has no lineage and is not cached,
    /// so a change upstream costs resumption, never the lifetime bound.
    fn of_session_value(value: &[u8]) -> Option<Self> {
        let end = value.len().checked_sub(12)?;
        let start = end.checked_sub(16)?;
        let length = value.get(start.checked_sub(2)?..start)?;
        if length != [0, 16] {
            return None;
        }
        Self::from_slice(value.get(start..end)?)
    }
}

struct Entry {
    lineage: Lineage,
    value: Vec<u8>,
}

#[derive(Default)]
struct ServerInner {
    entries: HashMap<Vec<u8>, Entry>,
    /// Keys in insertion order, for eviction.
    order: VecDeque<Vec<u8>>,
    /// Bytes held by `entries`, overhead included.
    bytes: usize,
    /// When each lineage's full handshake happened.
    origins: HashMap<Lineage, Instant>,
    origin_order: VecDeque<Lineage>,
}

impl ServerInner {
    fn remove(&mut self, key: &[u8]) -> Option<Entry> {
        let entry = self.entries.remove(key)?;
        self.bytes = self
            .bytes
            .saturating_sub(key.len() + entry.value.len() + ENTRY_OVERHEAD);
        Some(entry)
    }

    fn fresh(&self, lineage: &Lineage, now: Instant, lifetime: Duration) -> bool {
        self.origins
            .get(lineage)
            .is_some_and(|at| now.saturating_duration_since(*at) <= lifetime)
    }
}

/// A server session cache whose entries expire a lifetime after the full
/// handshake they descend from; the oldest entries are evicted when it
/// holds too many sessions or too many bytes.
pub struct TtlServerSessionStore {
    lifetime: Duration,
    capacity: usize,
    max_bytes: usize,
    clock: pairgate_clock::Clock,
    inner: Mutex<ServerInner>,
}

impl std::fmt::Debug for TtlServerSessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TtlServerSessionStore")
            .field("lifetime", &self.lifetime)
            .field("capacity", &self.capacity)
            .field("max_bytes", &self.max_bytes)
            .finish_non_exhaustive()
    }
}

impl TtlServerSessionStore {
    /// A store keeping at most `capacity` sessions and `max_bytes` bytes,
    /// each session for `lifetime` after its lineage's full handshake.
    pub fn new(
        lifetime: Duration,
        capacity: usize,
        max_bytes: usize,
        clock: pairgate_clock::Clock,
    ) -> Self {
        Self {
            lifetime,
            capacity: capacity.max(1),
            max_bytes,
            clock,
            inner: Mutex::new(ServerInner::default()),
        }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, ServerInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sessions currently held (expired ones included until evicted).
    pub fn len(&self) -> usize {
        self.inner().entries.len()
    }

    /// Whether no session is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes the held sessions take, as counted against the budget.
    pub fn bytes(&self) -> usize {
        self.inner().bytes
    }

    /// A connection tagged `lineage` has just resumed a session tagged
    /// `from` (its received resumption data): its own tickets inherit the
    /// start of that lineage. `false` when `from` is unknown or past the
    /// lifetime, and the connection must not be used.
    pub fn resumed(&self, lineage: Lineage, from: Option<&[u8]>) -> bool {
        let now = self.clock.instant();
        let mut inner = self.inner();
        let Some(from) = from.and_then(Lineage::from_slice) else {
            return false;
        };
        if !inner.fresh(&from, now, self.lifetime) {
            return false;
        }
        let Some(start) = inner.origins.get(&from).copied() else {
            return false;
        };
        match inner.origins.get_mut(&lineage) {
            Some(at) => *at = (*at).min(start),
            None => {
                inner.origins.insert(lineage, start);
                inner.origin_order.push_back(lineage);
            }
        }
        true
    }

    /// Drops lineages past the lifetime (or the oldest, beyond twice the
    /// session capacity) and entries past their lineage's lifetime or over
    /// the budgets, oldest first, to make room for `incoming` bytes.
    fn evict(&self, inner: &mut ServerInner, now: Instant, incoming: usize) {
        while let Some(lineage) = inner.origin_order.front().copied() {
            let stale = !inner.fresh(&lineage, now, self.lifetime);
            if !stale && inner.origins.len() <= self.capacity.saturating_mul(2) {
                break;
            }
            inner.origin_order.pop_front();
            inner.origins.remove(&lineage);
        }
        while let Some(key) = inner.order.front() {
            let full = inner.entries.len() >= self.capacity
                || inner.bytes.saturating_add(incoming) > self.max_bytes;
            let stale = inner
                .entries
                .get(key)
                .is_none_or(|e| !inner.fresh(&e.lineage, now, self.lifetime));
            if !full && !stale {
                break;
            }
            if let Some(key) = inner.order.pop_front() {
                inner.remove(&key);
            }
        }
    }

    fn lookup(&self, key: &[u8], take: bool) -> Option<Vec<u8>> {
        let now = self.clock.instant();
        let mut inner = self.inner();
        let lineage = inner.entries.get(key)?.lineage;
        if !inner.fresh(&lineage, now, self.lifetime) {
            inner.remove(key);
            return None;
        }
        if take {
            inner.remove(key).map(|e| e.value)
        } else {
            inner.entries.get(key).map(|e| e.value.clone())
        }
    }
}

impl StoresServerSessions for TtlServerSessionStore {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        let Some(lineage) = Lineage::of_session_value(&value) else {
            return false;
        };
        let size = key.len() + value.len() + ENTRY_OVERHEAD;
        if size > self.max_bytes {
            return false;
        }
        let now = self.clock.instant();
        let mut inner = self.inner();
        self.evict(&mut inner, now, size);
        // The first ticket of a lineage comes from its full handshake (a
        // resumed one is re-dated by `resumed` right after).
        if let std::collections::hash_map::Entry::Vacant(e) = inner.origins.entry(lineage) {
            e.insert(now);
            inner.origin_order.push_back(lineage);
        }
        if let Some(old) = inner.remove(&key) {
            drop(old);
        } else {
            inner.order.push_back(key.clone());
        }
        inner.bytes += size;
        inner.entries.insert(key, Entry { lineage, value });
        true
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.lookup(key, false)
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.lookup(key, true)
    }

    fn can_cache(&self) -> bool {
        true
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    /// A value shaped like rustls's encoding, tagged `lineage`, `pad`
    /// bytes of certificate in front.
    fn value(lineage: Lineage, pad: usize) -> Vec<u8> {
        let mut v = vec![7u8; pad];
        v.extend_from_slice(&[0, 16]);
        v.extend_from_slice(lineage.as_bytes());
        v.extend_from_slice(&[0u8; 12]);
        v
    }

    #[test]
    fn entries_expire_and_capacity_holds() {
        let clock = pairgate_clock::Clock::manual(std::time::SystemTime::now());
        let store =
            TtlServerSessionStore::new(Duration::from_millis(50), 2, 1 << 20, clock.clone());
        let l = Lineage::random();
        assert!(store.put(b"a".to_vec(), value(l, 10)));
        assert!(store.put(b"b".to_vec(), value(l, 10)));
        assert!(store.put(b"c".to_vec(), value(l, 10)));
        assert_eq!(store.len(), 2);
        assert_eq!(store.get(b"a"), None);
        assert!(store.get(b"c").is_some());
        clock.advance(Duration::from_millis(80));
        assert_eq!(store.get(b"c"), None);
        assert_eq!(store.take(b"b"), None);
    }

    #[test]
    fn the_byte_budget_holds_whatever_the_entry_sizes() {
        let budget = 64 * 1024;
        let store = TtlServerSessionStore::new(
            Duration::from_secs(60),
            100_000,
            budget,
            pairgate_clock::Clock::system(),
        );
        for i in 0..1000u32 {
            let pad = 1000 + (i as usize % 7) * 1500;
            assert!(store.put(i.to_be_bytes().to_vec(), value(Lineage::random(), pad)));
            assert!(store.bytes() <= budget, "{} > {budget}", store.bytes());
        }
        assert!(store.len() >= 5, "{}", store.len());
        // An entry larger than the whole budget is not cached at all.
        assert!(!store.put(b"huge".to_vec(), value(Lineage::random(), budget)));
    }

    #[test]
    fn values_without_a_lineage_are_not_cached() {
        let store = TtlServerSessionStore::new(
            Duration::from_secs(60),
            10,
            1 << 20,
            pairgate_clock::Clock::system(),
        );
        assert!(!store.put(b"k".to_vec(), vec![1, 2, 3]));
        assert!(!store.put(b"k".to_vec(), vec![0u8; 64]));
        assert!(store.is_empty());
    }

    #[test]
    fn a_resumed_lineage_keeps_the_start_of_the_one_it_resumed() {
        let clock = pairgate_clock::Clock::manual(std::time::SystemTime::now());
        let store =
            TtlServerSessionStore::new(Duration::from_millis(200), 10, 1 << 20, clock.clone());
        let first = Lineage::random();
        assert!(store.put(b"t1".to_vec(), value(first, 10)));
        clock.advance(Duration::from_millis(120));
        // A resumed connection's ticket, issued 120 ms later.
        let second = Lineage::random();
        assert!(store.put(b"t2".to_vec(), value(second, 10)));
        assert!(store.resumed(second, Some(first.as_bytes())));
        clock.advance(Duration::from_millis(120));
        // 240 ms after the full handshake: t2 is only 120 ms old, but its
        // lineage is past the lifetime.
        assert_eq!(store.take(b"t2"), None);
        assert!(!store.resumed(Lineage::random(), Some(first.as_bytes())));
        assert!(!store.resumed(Lineage::random(), None));
        assert!(!store.resumed(Lineage::random(), Some(b"short")));
    }
}
