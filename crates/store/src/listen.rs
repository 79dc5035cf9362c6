//! PostgreSQL `LISTEN` for the watches that follow the store (the paired
//! set, pairing decisions): one connection per channel, and one way to
//! read it that tells a notification from a quiet interval and from a
//! lost connection (after which changes may have been missed).

use std::time::Duration;

use sqlx::postgres::PgListener;

use crate::{Backend, Store, StoreError};

/// What one wait on a listener heard.
pub(crate) enum Heard {
    /// Nothing within the interval.
    Quiet,
    /// A notification, with its payload.
    Notified(String),
    /// The connection dropped; the next wait reconnects and listens again.
    Lost,
}

/// Waits up to `within` for the next notification on `listener`.
pub(crate) async fn hear(listener: &mut PgListener, within: Duration) -> Heard {
    match tokio::time::timeout(within, listener.try_recv()).await {
        Err(_) => Heard::Quiet,
        Ok(Ok(Some(n))) => Heard::Notified(n.payload().to_owned()),
        Ok(Ok(None) | Err(_)) => {
            // Back off briefly so that a dead server is not spun on.
            tokio::time::sleep(Duration::from_millis(100)).await;
            Heard::Lost
        }
    }
}

impl Store {
    /// A connection listening on `channel` on PostgreSQL; `None` on
    /// SQLite, which has no notifications.
    pub(crate) async fn listener(&self, channel: &str) -> Result<Option<PgListener>, StoreError> {
        if self.backend != Backend::Postgres {
            return Ok(None);
        }
        let mut listener = PgListener::connect(self.url.expose())
            .await
            .map_err(StoreError::Connect)?;
        listener.listen(channel).await?;
        Ok(Some(listener))
    }
}
