//! Change tracking for the paired set. Every change to it (approve,
//! unpair) bumps one generation counter in the same transaction; on
//! PostgreSQL it also sends `NOTIFY pairgate_paired`, delivered to every
//! instance at commit. The master reloads its in-memory set when the
//! generation moves: woken by the notification on PostgreSQL (with a
//! periodic reconcile, and a full reload when the listener's connection
//! drops), by polling on SQLite.

use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::{Any, Row, Transaction};

use crate::{Backend, Store, StoreError};

/// The notification channel.
const CHANNEL: &str = "pairgate_paired";

/// Moves the paired-set generation on, inside the change's transaction.
pub(crate) async fn bump_generation(
    tx: &mut Transaction<'_, Any>,
    backend: Backend,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE paired_generation SET generation = generation + 1 WHERE id = 1")
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
        match tokio::time::timeout(self.interval, listener.try_recv()).await {
            // Timed out: a periodic reconcile.
            Err(_) => Wake::Check,
            Ok(Ok(Some(_))) => Wake::Check,
            // The connection dropped; the next try_recv reconnects and
            // re-LISTENs. Back off briefly so a dead server is not spun on.
            Ok(Ok(None)) | Ok(Err(_)) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                Wake::Reload
            }
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

    /// A watch on the paired set: on PostgreSQL a `LISTEN` connection
    /// with `reconcile` as the periodic check; on SQLite a poll every
    /// `poll`.
    pub async fn watch_paired(
        &self,
        poll: Duration,
        reconcile: Duration,
    ) -> Result<PairedWatch, StoreError> {
        match self.backend {
            Backend::Sqlite => Ok(PairedWatch {
                listener: None,
                interval: poll,
            }),
            Backend::Postgres => {
                let mut listener = PgListener::connect(self.url.expose())
                    .await
                    .map_err(StoreError::Connect)?;
                listener.listen(CHANNEL).await?;
                Ok(PairedWatch {
                    listener: Some(listener),
                    interval: reconcile,
                })
            }
        }
    }
}
