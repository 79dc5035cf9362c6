//! HTTP upgrades (WebSocket) through `/app/…`: the handler checks the
//! terminal is paired, forwards the upgrade request and, on the
//! upstream's `101`, leaves the upstream side in the connection's
//! [`UpgradeSlot`]. The master's connection task takes it once hyper has
//! written the `101`, and splices the two until either side closes, the
//! terminal is unpaired, or the server stops.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
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

/// Copies both ways between the terminal (`io`, after the `read` bytes
/// hyper had already read from it) and the upstream, until either side
/// closes. The caller stops it on unpair or shutdown by dropping it.
pub(crate) async fn splice<S>(io: S, read: Bytes, (upstream, _slot): Pending)
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
    let mut terminal = Prefixed { read, io };
    let mut upstream = TokioIo::new(upstream);
    if let Err(e) = tokio::io::copy_bidirectional(&mut terminal, &mut upstream).await {
        tracing::debug!(error = %e, "upgraded connection ended");
    }
}

/// A stream whose first reads return bytes already read from it.
struct Prefixed<S> {
    read: Bytes,
    io: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.read.is_empty() {
            return Pin::new(&mut this.io).poll_read(cx, buf);
        }
        let n = this.read.len().min(buf.remaining());
        buf.put_slice(&this.read.split_to(n));
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    #[tokio::test]
    async fn bytes_read_ahead_come_first() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut p = Prefixed {
            read: Bytes::from_static(b"early "),
            io: a,
        };
        tokio::io::AsyncWriteExt::write_all(&mut b, b"late")
            .await
            .unwrap();
        drop(b);
        let mut all = String::new();
        p.read_to_string(&mut all).await.unwrap();
        assert_eq!(all, "early late");
    }
}
