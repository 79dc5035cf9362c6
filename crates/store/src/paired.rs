//! Change tracking for the paired set. Every change to it (approve,
//! unpair, suspend, resume) bumps one generation counter in the same
//! transaction and logs which terminal changed (`paired_changes`); on
//! PostgreSQL it also sends `NOTIFY pairgate_paired`, delivered to every
//! instance at commit. Gate and master follow the set: woken by the
//! notification on PostgreSQL (with a periodic reconcile), by polling on
//! SQLite, they re-read only the terminals the log names, and reload the
//! whole set at start, when the listener's connection drops, or when the
//! log cannot account for every generation since their last look.

use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::{Any, Row, Transaction};

use crate::listen::Heard;
use crate::terminals::Serial;
use crate::{Backend, Store, StoreError};

/// One logged change of the paired set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PairedChange {
    /// The generation the change made.
    pub generation: i64,
    /// The terminal that changed.
    pub serial: Serial,
    /// When (Unix ms, the changing instance's clock).
    pub at: i64,
}

/// The notification channel.
const CHANNEL: &str = "pairgate_paired";

/// Moves the paired-set generation on, inside the change's transaction,
/// and logs that terminal `serial` changed at `at`.
pub(crate) async fn bump_generation(
    tx: &mut Transaction<'_, Any>,
    backend: Backend,
    serial: &str,
    at: i64,
) -> Result<(), StoreError> {
    let row = sqlx::query(
        "UPDATE paired_generation SET generation = generation + 1 WHERE id = 1 \
         RETURNING generation",
    )
    .fetch_one(&mut **tx)
    .await?;
    let generation: i64 = row.try_get("generation")?;
    sqlx::query("INSERT INTO paired_changes (generation, serial, at) VALUES ($1, $2, $3)")
        .bind(generation)
        .bind(serial)
        .bind(at)
        .execute(&mut **tx)
        .await?;
    if backend == Backend::Postgres {
        sqlx::query("NOTIFY pairgate_paired")
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Why [`PairedWatch::wait`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wake {
    /// A change was announced, or the poll interval passed: compare the
    /// generation.
    Check,
    /// The listener lost its connection (and has re-listened): changes may
    /// have been missed, reload everything.
    Reload,
}

/// Waits for possible changes of the paired set.
#[derive(Debug)]
pub struct PairedWatch {
    listener: Option<PgListener>,
    interval: Duration,
}

impl PairedWatch {
    /// Waits for the next notification (PostgreSQL) or the interval,
    /// whichever is first.
    pub async fn wait(&mut self) -> Wake {
        let Some(listener) = self.listener.as_mut() else {
            tokio::time::sleep(self.interval).await;
            return Wake::Check;
        };
        match crate::listen::hear(listener, self.interval).await {
            // A notification, or a periodic reconcile.
            Heard::Notified(_) | Heard::Quiet => Wake::Check,
            Heard::Lost => Wake::Reload,
        }
    }
}

impl Store {
    /// The paired-set generation.
    pub async fn paired_generation(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT generation FROM paired_generation WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("generation")?)
    }

    /// The changes after generation `after`, oldest first, when the log
    /// accounts for every generation after it (at most `limit` of them);
    /// `None` when it does not (purged, or more than `limit`): reload.
    pub async fn paired_changes_since(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<Option<Vec<PairedChange>>, StoreError> {
        let current = self.paired_generation().await?;
        if current == after {
            return Ok(Some(Vec::new()));
        }
        if current < after || current - after > limit {
            return Ok(None);
        }
        let rows = sqlx::query(
            "SELECT generation, serial, at FROM paired_changes \
             WHERE generation > $1 AND generation <= $2 ORDER BY generation",
        )
        .bind(after)
        .bind(current)
        .fetch_all(&self.pool)
        .await?;
        let mut changes = Vec::with_capacity(rows.len());
        for (expected, row) in (after + 1..).zip(&rows) {
            let generation: i64 = row.try_get("generation")?;
            let serial: String = row.try_get("serial")?;
            let (true, Ok(serial)) = (generation == expected, Serial::new(&serial)) else {
                return Ok(None);
            };
            let at = row.try_get("at")?;
            changes.push(PairedChange {
                generation,
                serial,
                at,
            });
        }
        let complete = changes.last().map(|c| c.generation) == Some(current);
        Ok(complete.then_some(changes))
    }

    /// Deletes logged changes more than `keep` generations old; returns
    /// how many. A follower further behind reloads the whole set.
    pub async fn purge_paired_changes(&self, keep: i64) -> Result<u64, StoreError> {
        let current = self.paired_generation().await?;
        Ok(
            sqlx::query("DELETE FROM paired_changes WHERE generation <= $1")
                .bind(current.saturating_sub(keep))
                .execute(&self.pool)
                .await?
                .rows_affected(),
        )
    }

    /// A watch on the paired set: on PostgreSQL a `LISTEN` connection
    /// with `reconcile` as the periodic check; on SQLite a poll every
    /// `poll`.
    pub async fn watch_paired(
        &self,
        poll: Duration,
        reconcile: Duration,
    ) -> Result<PairedWatch, StoreError> {
        let listener = self.listener(CHANNEL).await?;
        let interval = if listener.is_some() { reconcile } else { poll };
        Ok(PairedWatch { listener, interval })
    }
}
