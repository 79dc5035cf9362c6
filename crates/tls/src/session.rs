//! Session stores with a lifetime. rustls's TLS 1.3 tickets advertise 24
//! hours and its in-memory caches keep sessions until evicted, so the
//! policy's bounded lifetime is enforced here, on both sides: the server
//! never resumes a session stored longer ago than the lifetime, and the
//! client stops offering sessions once the lifetime has passed since the
//! full handshake they descend from, so the peers fall back to a full
//! handshake (with full certificate verification).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rustls::NamedGroup;
use rustls::client::{
    ClientSessionMemoryCache, ClientSessionStore, Tls12ClientSessionValue, Tls13ClientSessionValue,
};
use rustls::pki_types::ServerName;
use rustls::server::StoresServerSessions;

/// A server session cache whose entries expire after a lifetime; the
/// oldest entry is evicted when the cache is full.
#[derive(Debug)]
pub struct TtlServerSessionStore {
    lifetime: Duration,
    capacity: usize,
    inner: Mutex<ServerInner>,
}

#[derive(Debug, Default)]
struct ServerInner {
    entries: HashMap<Vec<u8>, (Instant, Vec<u8>)>,
    order: VecDeque<(Instant, Vec<u8>)>,
}

impl TtlServerSessionStore {
    /// A store keeping at most `capacity` sessions for `lifetime` each.
    pub fn new(lifetime: Duration, capacity: usize) -> Self {
        Self {
            lifetime,
            capacity: capacity.max(1),
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
}

impl StoresServerSessions for TtlServerSessionStore {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        let now = Instant::now();
        let mut inner = self.inner();
        // Drop expired entries from the front, then the oldest if full.
        while let Some((at, _)) = inner.order.front() {
            let expired = now.duration_since(*at) > self.lifetime;
            if !expired && inner.entries.len() < self.capacity {
                break;
            }
            if let Some((at, old)) = inner.order.pop_front()
                && inner.entries.get(&old).is_some_and(|(t, _)| *t == at)
            {
                inner.entries.remove(&old);
            }
        }
        inner.order.push_back((now, key.clone()));
        inner.entries.insert(key, (now, value));
        true
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        let inner = self.inner();
        let (at, value) = inner.entries.get(key)?;
        (at.elapsed() <= self.lifetime).then(|| value.clone())
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        let (at, value) = self.inner().entries.remove(key)?;
        (at.elapsed() <= self.lifetime).then_some(value)
    }

    fn can_cache(&self) -> bool {
        true
    }
}

/// A client session cache that forgets sessions older than a lifetime.
#[derive(Debug)]
pub struct TtlClientSessionStore {
    lifetime: Duration,
    inner: ClientSessionMemoryCache,
    stored_at: Mutex<HashMap<ServerName<'static>, Instant>>,
}

impl TtlClientSessionStore {
    /// A cache for up to `size` servers, each session kept for `lifetime`.
    pub fn new(lifetime: Duration, size: usize) -> Self {
        Self {
            lifetime,
            inner: ClientSessionMemoryCache::new(size),
            stored_at: Mutex::new(HashMap::new()),
        }
    }

    /// Records when sessions for `name` started, unless a window is still
    /// open: tickets re-issued on resumed handshakes must not extend the
    /// lifetime, which counts from the full handshake (the one that
    /// verified certificates). When unsure whether a handshake was full,
    /// this errs towards an earlier full handshake, never a later one.
    fn touch(&self, name: &ServerName<'static>) {
        let mut stored = self.stored_at.lock().unwrap_or_else(|p| p.into_inner());
        let open = stored
            .get(name)
            .is_some_and(|at| at.elapsed() <= self.lifetime);
        if !open {
            stored.insert(name.clone(), Instant::now());
        }
    }

    fn fresh(&self, name: &ServerName<'_>) -> bool {
        let stored = self.stored_at.lock().unwrap_or_else(|p| p.into_inner());
        stored
            .get(name)
            .is_some_and(|at| at.elapsed() <= self.lifetime)
    }
}

impl ClientSessionStore for TtlClientSessionStore {
    fn set_kx_hint(&self, server_name: ServerName<'static>, group: NamedGroup) {
        self.inner.set_kx_hint(server_name, group);
    }

    fn kx_hint(&self, server_name: &ServerName<'_>) -> Option<NamedGroup> {
        self.inner.kx_hint(server_name)
    }

    fn set_tls12_session(&self, server_name: ServerName<'static>, value: Tls12ClientSessionValue) {
        self.touch(&server_name);
        self.inner.set_tls12_session(server_name, value);
    }

    fn tls12_session(&self, server_name: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        if self.fresh(server_name) {
            self.inner.tls12_session(server_name)
        } else {
            None
        }
    }

    fn remove_tls12_session(&self, server_name: &ServerName<'static>) {
        self.inner.remove_tls12_session(server_name);
    }

    fn insert_tls13_ticket(
        &self,
        server_name: ServerName<'static>,
        value: Tls13ClientSessionValue,
    ) {
        self.touch(&server_name);
        self.inner.insert_tls13_ticket(server_name, value);
    }

    fn take_tls13_ticket(
        &self,
        server_name: &ServerName<'static>,
    ) -> Option<Tls13ClientSessionValue> {
        if !self.fresh(server_name) {
            // Drain stale tickets so they are never offered.
            while self.inner.take_tls13_ticket(server_name).is_some() {}
            return None;
        }
        self.inner.take_tls13_ticket(server_name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_entries_expire_and_capacity_holds() {
        let store = TtlServerSessionStore::new(Duration::from_millis(50), 2);
        store.put(b"a".to_vec(), b"1".to_vec());
        store.put(b"b".to_vec(), b"2".to_vec());
        store.put(b"c".to_vec(), b"3".to_vec());
        assert_eq!(store.len(), 2);
        assert_eq!(store.get(b"a"), None);
        assert_eq!(store.get(b"c"), Some(b"3".to_vec()));
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(store.get(b"c"), None);
        assert_eq!(store.take(b"b"), None);
    }
}
