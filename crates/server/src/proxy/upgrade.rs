//! HTTP upgrades (WebSocket) through `/app/…`: the handler checks the
//! terminal is paired, forwards the upgrade request and, on the
//! upstream's `101`, leaves the upstream side in the connection's
//! [`UpgradeSlot`]. The master's connection task takes it once hyper has
//! written the `101`, and splices the two until either side closes, the
//! terminal is unpaired, or the server stops.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::OwnedSemaphorePermit;

/// An upstream side waiting for its connection, with the upstream slot it
/// holds while spliced.
pub(crate) type Pending = (OnUpgrade, OwnedSemaphorePermit);

/// Where a master connection's handler leaves an accepted upgrade.
#[derive(Clone, Default)]
pub(crate) struct UpgradeSlot(Arc<Mutex<Option<Pending>>>);

impl UpgradeSlot {
    /// Leaves the upstream side of an accepted upgrade.
    pub(crate) fn put(&self, upstream: OnUpgrade, slot: OwnedSemaphorePermit) {
        if let Ok(mut pending) = self.0.lock() {
            *pending = Some((upstream, slot));
        }
    }

    /// Takes what the handler left, if anything.
    pub(crate) fn take(&self) -> Option<Pending> {
        self.0.lock().ok().and_then(|mut p| p.take())
    }
}

/// Copies both ways between the terminal (`terminal`, whose first reads
/// are what hyper had already read) and the upstream, until either side
/// closes. The caller stops it on unpair or shutdown by dropping it.
pub(crate) async fn splice<S>(mut terminal: S, (upstream, _slot): Pending)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // The upstream's side is ready as soon as its 101 was read.
    let upstream = match tokio::time::timeout(Duration::from_secs(10), upstream).await {
        Ok(Ok(upgraded)) => upgraded,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "the upstream's upgraded connection failed");
            return;
        }
        Err(_) => return,
    };
    let mut upstream = TokioIo::new(upstream);
    if let Err(e) = tokio::io::copy_bidirectional(&mut terminal, &mut upstream).await {
        tracing::debug!(error = %e, "upgraded connection ended");
    }
}
