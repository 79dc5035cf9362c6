//! The gate's long polls, woken by the store ([`pairgate_store::DecisionWatch`])
//! instead of each reading its request every 250 ms. A waiting status
//! call registers its request id here and sleeps until [`follow`] wakes
//! it: at once for a PostgreSQL notification naming the id, or after one
//! query for every waiting id when SQLite signals or polls, when the
//! PostgreSQL reconcile runs, or when its listener reconnects (then every
//! waiter wakes and re-reads).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pairgate_store::{Decision, Store};
use tokio::sync::watch;

/// Waiting status calls by request id.
#[derive(Debug, Default)]
pub(crate) struct Waiters {
    ids: Mutex<HashMap<String, watch::Sender<u64>>>,
}

/// One waiting call; deregisters when dropped.
pub(crate) struct Waiting<'a> {
    waiters: &'a Waiters,
    id: String,
    woken: watch::Receiver<u64>,
}

impl Waiting<'_> {
    /// Completes at the first wake since registration or the last call.
    pub(crate) async fn woken(&mut self) {
        // The sender lives while this receiver is registered.
        let _ = self.woken.changed().await;
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut ids = self.waiters.lock();
        // This receiver still counts while it is dropped.
        if ids.get(&self.id).is_some_and(|w| w.receiver_count() <= 1) {
            ids.remove(&self.id);
        }
    }
}

impl Waiters {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, watch::Sender<u64>>> {
        self.ids
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers a call waiting for request `id`: register first, then
    /// read the request, so no decision between the two is missed.
    pub(crate) fn register(&self, id: &str) -> Waiting<'_> {
        let woken = self
            .lock()
            .entry(id.to_owned())
            .or_insert_with(|| watch::Sender::new(0))
            .subscribe();
        Waiting {
            waiters: self,
            id: id.to_owned(),
            woken,
        }
    }

    fn wake(&self, id: &str) {
        if let Some(w) = self.lock().get(id) {
            w.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    fn wake_all(&self) {
        for w in self.lock().values() {
            w.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    fn waiting(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    /// How many requests have calls waiting.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

/// Wakes the waiters as the store hears decisions, until `shutdown`.
pub(crate) async fn follow(
    waiters: Arc<Waiters>,
    store: Store,
    poll: Duration,
    reconcile: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut watch = None;
    loop {
        if watch.is_none() {
            match store.watch_decisions(poll, reconcile).await {
                Ok(w) => watch = Some(w),
                Err(e) => tracing::warn!(error = %e, "cannot watch pairing decisions; retrying"),
            }
            // Decisions may have been made while unwatched.
            waiters.wake_all();
        }
        let heard = async {
            match watch.as_mut() {
                Some(w) => w.wait().await,
                None => {
                    tokio::time::sleep(poll.max(Duration::from_millis(500))).await;
                    Decision::Lost
                }
            }
        };
        let heard = tokio::select! {
            heard = heard => heard,
            _ = shutdown.changed() => return,
        };
        match heard {
            Decision::Decided(id) => waiters.wake(&id),
            Decision::Lost => waiters.wake_all(),
            Decision::Check => {
                let ids = waiters.waiting();
                if ids.is_empty() {
                    continue;
                }
                match store.decided_among(&ids).await {
                    Ok(decided) => decided.iter().for_each(|id| waiters.wake(id)),
                    Err(e) => {
                        tracing::warn!(error = %e, "reading waiting pairing requests failed");
                        waiters.wake_all();
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_wake_reaches_the_calls_waiting_for_its_id_only() {
        let waiters = Waiters::default();
        let mut a = waiters.register("a");
        let mut a2 = waiters.register("a");
        let mut b = waiters.register("b");
        // A wake before the wait is not lost.
        waiters.wake("a");
        let soon = Duration::from_millis(50);
        assert!(tokio::time::timeout(soon, a.woken()).await.is_ok());
        assert!(tokio::time::timeout(soon, a2.woken()).await.is_ok());
        assert!(tokio::time::timeout(soon, b.woken()).await.is_err());
        assert!(tokio::time::timeout(soon, a.woken()).await.is_err());
        waiters.wake_all();
        assert!(tokio::time::timeout(soon, b.woken()).await.is_ok());
        drop(a);
        assert_eq!(waiters.len(), 2);
        drop(a2);
        drop(b);
        assert_eq!(waiters.len(), 0);
    }
}
