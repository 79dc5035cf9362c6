//! Telling waiters that pairing requests were decided, so the gate's long
//! polls wake when something happens rather than reading the store for
//! every waiting terminal every 250 ms.
//!
//! Every close of a request (approve, reject, expire, supersede, a wrong
//! code, a block) runs through `pairing::close`, which on PostgreSQL
//! sends `NOTIFY pairgate_requests, '<id>'` inside the change's
//! transaction: every instance listening hears it at commit. On SQLite
//! the store's verbs signal this process (every store it opened) after
//! they commit; changes made by another process (`pairgate admin
//! approve`) are found by one query for all waiting requests per poll
//! interval. A waiter re-reads
//! its request after every wake, so a lost or spurious signal only costs
//! latency, never a wrong answer.

use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::{Any, AssertSqlSafe, Row, Transaction};
use tokio::sync::watch;

use crate::listen::Heard;
use crate::{Store, StoreError};

/// The notification channel.
const CHANNEL: &str = "pairgate_requests";

/// Request ids asked about in one query.
const IDS_PER_QUERY: usize = 200;

/// Bumped after a verb of any store in this process may have decided
/// requests.
static DECIDED_HERE: std::sync::LazyLock<watch::Sender<u64>> =
    std::sync::LazyLock::new(|| watch::Sender::new(0));

/// Announces, inside its transaction, that request `id` was decided (on
/// PostgreSQL; SQLite's signal follows the commit, [`Store::decided`]).
pub(crate) async fn announce(tx: &mut Transaction<'_, Any>, id: &str) -> Result<(), StoreError> {
    if tx.backend_name() == "PostgreSQL" {
        sqlx::query("SELECT pg_notify('pairgate_requests', $1)")
            .bind(id)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// What [`DecisionWatch::wait`] heard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// This request was decided.
    Decided(String),
    /// Some request may have been: ask about the waiting ones.
    Check,
    /// The listener lost its connection: wake every waiter.
    Lost,
}

/// Waits for decisions.
#[derive(Debug)]
pub struct DecisionWatch {
    listener: Option<PgListener>,
    local: watch::Receiver<u64>,
    interval: Duration,
}

impl DecisionWatch {
    /// The next decision heard, or [`Decision::Check`] after the
    /// interval (the poll on SQLite, the reconcile on PostgreSQL).
    pub async fn wait(&mut self) -> Decision {
        let Some(listener) = self.listener.as_mut() else {
            let local = self.local.changed();
            return tokio::select! {
                _ = local => Decision::Check,
                () = tokio::time::sleep(self.interval) => Decision::Check,
            };
        };
        match crate::listen::hear(listener, self.interval).await {
            Heard::Quiet => Decision::Check,
            Heard::Notified(id) => Decision::Decided(id),
            Heard::Lost => Decision::Lost,
        }
    }
}

/// Signals this process's waiters when dropped: a verb that may close
/// requests holds one from its start, so the signal follows its commit
/// (or its rollback: a spurious wake costs one query).
pub(crate) struct SignalOnDrop(());

impl Drop for SignalOnDrop {
    fn drop(&mut self) {
        DECIDED_HERE.send_modify(|n| *n = n.wrapping_add(1));
    }
}

impl Store {
    /// Held by a verb that may close requests; see [`SignalOnDrop`]. This
    /// is SQLite's wake; PostgreSQL's comes from the notifications.
    pub(crate) fn signal_decisions(&self) -> SignalOnDrop {
        SignalOnDrop(())
    }

    /// A watch on decisions: on PostgreSQL a `LISTEN` connection with
    /// `reconcile` as the periodic check, on SQLite this process's
    /// signal with a poll every `poll`.
    pub async fn watch_decisions(
        &self,
        poll: Duration,
        reconcile: Duration,
    ) -> Result<DecisionWatch, StoreError> {
        let local = DECIDED_HERE.subscribe();
        let listener = self.listener(CHANNEL).await?;
        let interval = if listener.is_some() { reconcile } else { poll };
        Ok(DecisionWatch {
            listener,
            local,
            interval,
        })
    }

    /// Which of `ids` are no longer open (decided, or gone): one query
    /// per [`IDS_PER_QUERY`] ids.
    pub async fn decided_among(&self, ids: &[String]) -> Result<Vec<String>, StoreError> {
        let mut decided = Vec::new();
        for chunk in ids.chunks(IDS_PER_QUERY) {
            let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            // Only numbered placeholders are spliced in; the ids are bound.
            let sql = format!(
                "SELECT id FROM pairing_requests WHERE state IN ('awaiting_reveal', 'pending') \
                 AND id IN ({})",
                placeholders.join(", ")
            );
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for id in chunk {
                query = query.bind(id.as_str());
            }
            let open: std::collections::HashSet<String> = query
                .fetch_all(self.pool())
                .await?
                .iter()
                .map(|row| row.try_get::<String, _>("id"))
                .collect::<Result<_, _>>()?;
            decided.extend(chunk.iter().filter(|id| !open.contains(*id)).cloned());
        }
        Ok(decided)
    }
}
