//! Bounds on connections that hold for clients nobody has authenticated
//! yet: a cap per source address and in total per listener, a budget of
//! file descriptors derived from the process's open-file limit so that
//! listeners, the store and CAS always have descriptors left, and the
//! lingering close that lets a client read an early error (`413`) before
//! the socket goes; and the one accept loop every listener runs, which
//! applies those caps before any TLS work.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::rt::TokioTimer;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Accepts connections on `listener` until `shutdown` turns true. A
/// connection over `limiter`'s caps is closed at once; each admitted one
/// is handed to `handle` (with its own shutdown signal) in a task of its
/// own that holds the connection's permit until it ends.
pub(crate) async fn accept_each<F, Fut>(
    service: &'static str,
    listener: TcpListener,
    limiter: Arc<ConnectionLimiter>,
    mut shutdown: watch::Receiver<bool>,
    handle: F,
) where
    F: Fn(TcpStream, SocketAddr, watch::Receiver<bool>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        let (tcp, address) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off.
                    tracing::warn!(service, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        // Over a cap: closed before any TLS work is spent on it.
        let Some(permit) = limiter.admit(address.ip()) else {
            tracing::debug!(service, %address, "connection refused: at the connection cap");
            continue;
        };
        let connection = handle(tcp, address, shutdown.clone());
        tokio::spawn(async move {
            let _permit = permit;
            connection.await;
        });
    }
}

/// HTTP/1.1 as every listener serves it: the header timer also runs while
/// a kept-alive connection waits for its next request, so it bounds idle
/// time too.
pub(crate) fn http1(header_timeout: Duration) -> hyper::server::conn::http1::Builder {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    builder
}

/// How many connections a listener holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// In total.
    pub total: usize,
    /// From one source address.
    pub per_address: usize,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
}

/// Counts a listener's open connections; a connection over a limit is
/// closed right after `accept`, before any TLS work.
#[derive(Debug)]
pub struct ConnectionLimiter {
    limits: ConnectionLimits,
    counts: Mutex<Counts>,
    refused: AtomicU64,
}

/// One admitted connection; dropping it frees its place.
#[derive(Debug)]
pub struct ConnectionPermit {
    limiter: Arc<ConnectionLimiter>,
    address: IpAddr,
}

impl ConnectionLimiter {
    /// A limiter with these limits.
    pub fn new(limits: ConnectionLimits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            counts: Mutex::new(Counts::default()),
            refused: AtomicU64::new(0),
        })
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Admits a connection from `address`, or `None` when the listener or
    /// that address is at its limit.
    pub fn admit(self: &Arc<Self>, address: IpAddr) -> Option<ConnectionPermit> {
        let mut counts = self.counts();
        let mine = counts.by_address.get(&address).copied().unwrap_or(0);
        if counts.total >= self.limits.total || mine >= self.limits.per_address {
            drop(counts);
            self.refused.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        counts.total += 1;
        counts.by_address.insert(address, mine + 1);
        Some(ConnectionPermit {
            limiter: self.clone(),
            address,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.counts().total
    }

    /// Connections refused so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// The limits.
    pub fn limits(&self) -> ConnectionLimits {
        self.limits
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let mut counts = self.limiter.counts();
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.by_address.get_mut(&self.address) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.by_address.remove(&self.address);
            }
        }
    }
}

/// Descriptors kept back from the connection caps for listeners, the
/// store's pool, the upstream proxy, log files and the like.
pub const RESERVED_DESCRIPTORS: u64 = 256;

/// The soft limit on open files of this process.
pub fn open_file_limit() -> u64 {
    rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(u64::MAX)
}

/// Splits the descriptors this process may open among gate, master and
/// CAS when their caps are not set: after the reserve, the master (which
/// holds every paired terminal's connection) gets 80%, the gate 15% and
/// CAS 5%. Each gets at least 16.
pub fn default_caps(open_files: u64) -> [usize; 3] {
    let budget = open_files.saturating_sub(RESERVED_DESCRIPTORS);
    [15, 80, 5].map(|share| {
        usize::try_from(budget.saturating_mul(share) / 100)
            .unwrap_or(usize::MAX)
            .max(16)
    })
}

/// After an early answer (a `413` while the client is still sending),
/// closing at once would make the kernel reset the connection and the
/// client would lose the answer. So: stop writing, then keep reading and
/// discarding what the client sends for at most `linger`, then close.
pub async fn linger_close<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, linger: Duration) {
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.shutdown()).await;
    let mut sink = [0u8; 8192];
    let _ = tokio::time::timeout(linger, async {
        while let Ok(n) = stream.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn caps_hold_per_address_and_in_total_and_free_on_drop() {
        let limiter = ConnectionLimiter::new(ConnectionLimits {
            total: 3,
            per_address: 2,
        });
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        let a1 = limiter.admit(a).unwrap();
        let _a2 = limiter.admit(a).unwrap();
        assert!(limiter.admit(a).is_none(), "third from one address");
        let _b1 = limiter.admit(b).unwrap();
        assert!(limiter.admit(b).is_none(), "fourth in total");
        assert_eq!(limiter.refused(), 2);
        drop(a1);
        assert_eq!(limiter.open(), 2);
        assert!(limiter.admit(b).is_some());
    }

    #[test]
    fn default_caps_leave_the_reserve() {
        let caps = default_caps(20_000);
        let sum: usize = caps.iter().sum();
        assert!(sum as u64 <= 20_000 - RESERVED_DESCRIPTORS, "{caps:?}");
        assert!(caps[1] > caps[0] && caps[0] > caps[2], "{caps:?}");
        assert_eq!(default_caps(10), [16, 16, 16]);
    }
}
