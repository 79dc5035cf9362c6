//! Kept-alive connections held between requests without hyper's buffers.
//!
//! hyper keeps an 8 KiB read buffer and an 8 KiB write buffer for as long
//! as it serves a connection, so a terminal's connection waiting all day
//! for its next request would hold both all day. Instead a gate or master
//! connection alternates between two states:
//!
//! - *parked*: the connection task waits for the first byte of the next
//!   request with a one-byte read (rustls keeps whatever else arrived),
//!   within the header timeout;
//! - *served*: a hyper connection reads from that byte on and runs until
//!   it is idle again: every request it read has been read to its end,
//!   every answer has been written and flushed, and it waits for bytes.
//!   It is then shut down gracefully (hyper closes an idle connection
//!   without writing anything), and gives back the stream and the bytes
//!   of a next request it may already have read, which come first in the
//!   next round.
//!
//! A request whose body the handler did not read to its end keeps the
//! connection with hyper, which drains or closes it as it always does:
//! a stream is never handed back in the middle of a body.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use axum::body::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What a served round has read, answered and written; shared by its
/// stream, its bodies and the task that decides when it is idle.
///
/// Relaxed atomics are enough: everything but the end of a request body
/// happens on the connection's own task, and a request body read to its
/// end elsewhere (by the proxy's upstream connection) can only be seen
/// late, as still open, which keeps the round with hyper a little longer;
/// an exchange is never seen finished before it is.
#[derive(Debug, Default)]
pub(crate) struct Activity {
    /// Requests read in this round.
    requests: AtomicUsize,
    /// Exchanges not finished: a request body not read to its end, an
    /// answer not yet made or not yet written.
    open: AtomicUsize,
    /// The last read found nothing to read.
    read_waiting: AtomicBool,
    /// Bytes were written and not flushed since.
    unflushed: AtomicBool,
}

impl Activity {
    /// A request arrived: its answer is open until written, and its body,
    /// if it has one, until read to its end.
    pub(crate) fn request(&self, has_body: bool) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.open
            .fetch_add(1 + usize::from(has_body), Ordering::Relaxed);
    }

    /// Whether a request has been read in this round.
    pub(crate) fn any_request(&self) -> bool {
        self.requests.load(Ordering::Relaxed) > 0
    }

    fn close_one(&self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }

    /// Whether the round is done: it answered at least one request,
    /// nothing is open or unflushed, and it waits for the client.
    pub(crate) fn idle(&self) -> bool {
        self.any_request()
            && self.open.load(Ordering::Relaxed) == 0
            && self.read_waiting.load(Ordering::Relaxed)
            && !self.unflushed.load(Ordering::Relaxed)
    }
}

/// A request or answer body that tells [`Activity`] when it is done: a
/// request body when it has been read to its end (not when dropped
/// early), an answer when hyper drops it after writing it.
pub(crate) struct Counted<B> {
    body: B,
    activity: Option<Arc<Activity>>,
    until_end: bool,
}

impl<B> Counted<B> {
    /// A request body; `activity` is `None` for one without a body.
    pub(crate) fn request(body: B, activity: Option<Arc<Activity>>) -> Self {
        Self {
            body,
            activity,
            until_end: true,
        }
    }

    /// An answer's body, closing the exchange [`Activity::request`]
    /// opened once hyper has written it.
    pub(crate) fn answer(body: B, activity: Arc<Activity>) -> Self {
        Self {
            body,
            activity: Some(activity),
            until_end: false,
        }
    }

    fn close(&mut self) {
        if let Some(activity) = self.activity.take() {
            activity.close_one();
        }
    }
}

impl<B> Drop for Counted<B> {
    fn drop(&mut self) {
        if !self.until_end {
            self.close();
        }
    }
}

impl<B: Body + Unpin> Body for Counted<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        if this.until_end && (matches!(polled, Poll::Ready(None)) || this.body.is_end_stream()) {
            this.close();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// How much a read that returns bytes read ahead also reads on from the
/// stream.
const READ_THROUGH: usize = 2048;

/// A stream whose first reads return bytes already read from it, and
/// which, while a round is served, records in that round's [`Activity`]
/// whether its last read waited and whether it has unflushed writes.
pub(crate) struct Prefixed<S> {
    read: Bytes,
    io: S,
    /// An error met while reading past `read`, for the next read.
    failed: Option<std::io::Error>,
    /// The round being served, if any.
    activity: Option<Arc<Activity>>,
}

impl<S> Prefixed<S> {
    /// `io`, with `read` read first.
    pub(crate) fn new(io: S, read: Bytes) -> Self {
        Self {
            read,
            io,
            failed: None,
            activity: None,
        }
    }

    /// Records reads and writes in `activity` from now on (`None`: no
    /// longer).
    pub(crate) fn watch(&mut self, activity: Option<Arc<Activity>>) {
        self.activity = activity;
    }

    fn wrote(&self, polled: &Poll<std::io::Result<usize>>) {
        if let Some(activity) = &self.activity
            && matches!(polled, Poll::Ready(Ok(n)) if *n > 0)
        {
            activity.unflushed.store(true, Ordering::Relaxed);
        }
    }

    /// Whether bytes read earlier are waiting.
    pub(crate) fn has_read_ahead(&self) -> bool {
        !self.read.is_empty()
    }

    /// Puts a copy of `bytes` before whatever is waiting. A copy, because
    /// `bytes` may be a slice of hyper's whole read buffer (even an empty
    /// one keeps all of it allocated).
    pub(crate) fn unread(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let mut both = Vec::with_capacity(bytes.len() + self.read.len());
        both.extend_from_slice(bytes);
        both.extend_from_slice(&self.read);
        self.read = Bytes::from(both);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let polled = this.read_into(cx, buf);
        if let Some(activity) = &this.activity {
            activity
                .read_waiting
                .store(polled.is_pending(), Ordering::Relaxed);
        }
        polled
    }
}

impl<S: AsyncRead + Unpin> Prefixed<S> {
    /// A read: bytes read ahead first, then the stream.
    fn read_into(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if let Some(e) = self.failed.take() {
            return Poll::Ready(Err(e));
        }
        if self.read.is_empty() {
            return Pin::new(&mut self.io).poll_read(cx, buf);
        }
        let n = self.read.len().min(buf.remaining());
        buf.put_slice(&self.read.split_to(n));
        // The rest of a request usually waits in rustls already: the same
        // read takes it, so hyper parses the request once, in a buffer of
        // its first size.
        // (Up to a typical request head: the part read into is zeroed
        // first, as safe code must.)
        if self.read.is_empty() && buf.remaining() > 0 {
            let room = buf.initialize_unfilled_to(buf.remaining().min(READ_THROUGH));
            let mut rest = ReadBuf::new(room);
            match Pin::new(&mut self.io).poll_read(cx, &mut rest) {
                Poll::Ready(Ok(())) => {
                    let more = rest.filled().len();
                    buf.advance(more);
                }
                // Reported on the next read; these bytes come first.
                Poll::Ready(Err(e)) => self.failed = Some(e),
                Poll::Pending => {}
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write(cx, buf);
        this.wrote(&polled);
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.wrote(&polled);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_flush(cx);
        if let Some(activity) = &this.activity
            && matches!(polled, Poll::Ready(Ok(())))
        {
            activity.unflushed.store(false, Ordering::Relaxed);
        }
        polled
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use http_body_util::{BodyExt, Full};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn bytes_read_ahead_come_first() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut p = Prefixed::new(a, Bytes::from_static(b"late "));
        p.unread(b"early ");
        b.write_all(b"last").await.unwrap();
        drop(b);
        let mut all = String::new();
        p.read_to_string(&mut all).await.unwrap();
        assert_eq!(all, "early late last");
    }

    /// A stream that fails every read.
    struct Broken;

    impl AsyncRead for Broken {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            Poll::Ready(Err(std::io::Error::other("broken")))
        }
    }

    #[tokio::test]
    async fn an_error_past_the_read_ahead_comes_after_it() {
        let mut p = Prefixed::new(Broken, Bytes::from_static(b"GET"));
        let mut buf = [0u8; 16];
        assert_eq!(p.read(&mut buf).await.unwrap(), 3);
        assert_eq!(&buf[..3], b"GET");
        assert_eq!(p.read(&mut buf).await.unwrap_err().to_string(), "broken");
    }

    #[tokio::test]
    async fn a_round_is_idle_only_when_every_exchange_is_done() {
        let activity = Arc::new(Activity::default());
        let (a, mut b) = tokio::io::duplex(64);
        let mut io = Prefixed::new(a, Bytes::new());
        io.watch(Some(activity.clone()));
        assert!(!activity.idle(), "nothing answered yet");
        activity.request(true);
        let mut body =
            Counted::request(Full::new(Bytes::from_static(b"x")), Some(activity.clone()));
        let answer = Counted::answer(Full::new(Bytes::from_static(b"ok")), activity.clone());
        io.write_all(b"HTTP/1.1 200 OK\r\n").await.unwrap();
        let mut one = [0u8; 1];
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(20), io.read(&mut one));
        assert!(waiting.await.is_err());
        assert!(!activity.idle(), "the body is unread, the answer unwritten");
        body.frame().await.unwrap().unwrap();
        assert!(body.frame().await.is_none());
        drop(body);
        drop(answer);
        assert!(!activity.idle(), "written, not flushed");
        io.flush().await.unwrap();
        assert!(activity.idle());
        b.write_all(b"G").await.unwrap();
        assert_eq!(io.read(&mut one).await.unwrap(), 1);
        assert!(!activity.idle(), "the next request is arriving");
    }

    #[tokio::test]
    async fn a_request_body_dropped_unread_keeps_its_round_open() {
        let activity = Arc::new(Activity::default());
        activity.request(true);
        let body = Counted::request(Full::new(Bytes::from_static(b"x")), Some(activity.clone()));
        drop(body);
        drop(Counted::answer(Full::new(Bytes::new()), activity.clone()));
        activity.read_waiting.store(true, Ordering::Relaxed);
        assert!(!activity.idle());
    }
}
