//! Bodies as the proxy streams them, in either direction: never buffered
//! whole, each under a timer, and the request body under the size limit
//! as it streams.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use http_body_util::Limited;
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Instant, Sleep};

/// A boxed error, as hyper takes it.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A terminal's request body on its way to the upstream.
pub(crate) type RequestBody = Timed<Limited<axum::body::Body>>;

/// A body stalled past its timer.
#[derive(Debug, thiserror::Error)]
#[error("the body stalled past its timeout")]
pub(crate) struct Stalled;

/// A body with a timer: either a deadline for all of it (a request body,
/// against a slow sender) or a longest gap between two frames (a response,
/// which may stream for long). The timer is made the first time the body
/// has to wait, so a body that never waits costs no timer. It may hold the
/// upstream slot its request took, freed when the body ends or is dropped.
pub(crate) struct Timed<B> {
    inner: B,
    /// `within`: the deadline; `gaps`: unused.
    deadline: Instant,
    gap: Option<Duration>,
    timer: Option<Pin<Box<Sleep>>>,
    /// Whether the timer runs for the current wait.
    armed: bool,
    slot: Option<OwnedSemaphorePermit>,
}

impl<B> Timed<B> {
    /// All of `inner` within `deadline`.
    pub(crate) fn within(inner: B, deadline: Duration) -> Self {
        Self {
            inner,
            deadline: Instant::now() + deadline,
            gap: None,
            timer: None,
            armed: false,
            slot: None,
        }
    }

    /// No more than `gap` between two frames of `inner`, holding `slot`.
    pub(crate) fn gaps(inner: B, gap: Duration, slot: Option<OwnedSemaphorePermit>) -> Self {
        Self {
            inner,
            deadline: Instant::now(),
            gap: Some(gap),
            timer: None,
            armed: false,
            slot,
        }
    }
}

impl<B> Body for Timed<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                // A gap starts again at the next wait after each frame.
                this.armed = false;
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.slot = None;
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(None) => {
                this.slot = None;
                Poll::Ready(None)
            }
            Poll::Pending => {
                let until = match this.gap {
                    Some(gap) => Instant::now() + gap,
                    None => this.deadline,
                };
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(until)));
                if !this.armed {
                    if this.gap.is_some() {
                        timer.as_mut().reset(until);
                    }
                    this.armed = true;
                }
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        this.slot = None;
                        Poll::Ready(Some(Err(Box::new(Stalled))))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Whether an error of kind `E` is in `e`'s chain.
pub(crate) fn caused_by<E: std::error::Error + 'static>(
    e: &(dyn std::error::Error + 'static),
) -> bool {
    let mut current = Some(e);
    while let Some(err) = current {
        if err.is::<E>() {
            return true;
        }
        current = err.source();
    }
    false
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use http_body_util::{BodyExt, StreamBody};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_ends_in_an_error_and_a_flowing_one_does_not() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(4);
        let stream = tokio_stream_from(rx);
        let mut body = Timed::gaps(StreamBody::new(stream), Duration::from_secs(5), None);
        tx.send(Ok(Frame::data(Bytes::from_static(b"a"))))
            .await
            .unwrap();
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), "a");
        // Nothing more for longer than the gap: the body fails.
        let e = body.frame().await.unwrap().unwrap_err();
        assert!(caused_by::<Stalled>(e.as_ref()), "{e}");
        drop(tx);
        let limited = Limited::new(axum::body::Body::from("hello"), 3);
        let e = Timed::within(limited, Duration::from_secs(5))
            .collect()
            .await
            .unwrap_err();
        assert!(caused_by::<http_body_util::LengthLimitError>(e.as_ref()));
    }

    /// A stream over a channel's receiver.
    fn tokio_stream_from<T: Send + 'static>(
        rx: tokio::sync::mpsc::Receiver<T>,
    ) -> impl futures_util::Stream<Item = T> + Unpin {
        Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        }))
    }
}
