//! The client's session store with a lifetime. rustls's TLS 1.3 tickets
//! advertise 24 hours and its in-memory cache keeps sessions until
//! evicted, so the client stops offering sessions once the policy's
//! lifetime has passed since the full handshake they descend from, and the
//! peers fall back to a full handshake (with full certificate
//! verification). The server side is [`crate::TtlServerSessionStore`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rustls::NamedGroup;
use rustls::client::{
    ClientSessionMemoryCache, ClientSessionStore, Tls12ClientSessionValue, Tls13ClientSessionValue,
};
use rustls::pki_types::ServerName;

/// A client session cache that forgets sessions older than a lifetime.
#[derive(Debug)]
pub struct TtlClientSessionStore {
    lifetime: Duration,
    clock: pairgate_clock::Clock,
    inner: ClientSessionMemoryCache,
    stored_at: Mutex<HashMap<ServerName<'static>, Instant>>,
}

impl TtlClientSessionStore {
    /// A cache for up to `size` servers, each session kept for `lifetime`.
    pub fn new(lifetime: Duration, size: usize, clock: pairgate_clock::Clock) -> Self {
        Self {
            lifetime,
            clock,
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
        let now = self.clock.instant();
        let mut stored = self.stored_at.lock().unwrap_or_else(|p| p.into_inner());
        let open = stored
            .get(name)
            .is_some_and(|at| now.saturating_duration_since(*at) <= self.lifetime);
        if !open {
            stored.insert(name.clone(), now);
        }
    }

    fn fresh(&self, name: &ServerName<'_>) -> bool {
        let now = self.clock.instant();
        let stored = self.stored_at.lock().unwrap_or_else(|p| p.into_inner());
        stored
            .get(name)
            .is_some_and(|at| now.saturating_duration_since(*at) <= self.lifetime)
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
