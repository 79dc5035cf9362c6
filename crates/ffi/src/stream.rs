//! A connected mutual-TLS stream to the master, for firmware that speaks
//! its own protocol over the paired connection.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::agent::{PairgateAgent, handle};
use crate::error::{Failure, PairgateStatus, guard};

/// How long closing a stream waits for its close_notify to be sent.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// A mutual-TLS connection to the master. Opaque.
///
/// Thread safety: one thread at a time (calls are serialised; a read that
/// waits for data holds the stream until it returns).
pub struct PairgateStream {
    tls: Mutex<Option<TlsStream<TcpStream>>>,
    runtime: Arc<tokio::runtime::Runtime>,
}

/// Reads the stream behind `stream`.
///
/// # Safety
/// `stream` is NULL or a live stream from `pairgate_agent_connect`.
unsafe fn stream_ref<'a>(stream: *const PairgateStream) -> Result<&'a PairgateStream, Failure> {
    // SAFETY: the caller's contract.
    unsafe { stream.as_ref() }.ok_or_else(|| Failure::argument("stream is NULL"))
}

fn io_failure(what: &str, e: &std::io::Error) -> Failure {
    Failure::new(
        PairgateStatus::Closed,
        format!("{what} the master stream: {e}"),
    )
}

/// Connects to the paired master over mutual TLS (the terminal's key, the
/// server pins) and hands the connection to the caller.
///
/// Ownership: `*out` is a new stream the caller closes and frees with
/// `pairgate_stream_free`; it stays usable after its agent is freed.
///
/// # Safety
/// `agent` is a live handle; `out` is valid for one write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pairgate_agent_connect(
    agent: *const PairgateAgent,
    out: *mut *mut PairgateStream,
) -> PairgateStatus {
    guard(|| {
        if out.is_null() {
            return Err(Failure::argument("out is NULL"));
        }
        // SAFETY: the caller's contract.
        let handle = unsafe { handle(agent) }?;
        let tls = {
            let agent = handle.lock();
            handle.runtime.block_on(agent.master_stream())?
        };
        let stream = Box::new(PairgateStream {
            tls: Mutex::new(Some(tls)),
            runtime: handle.runtime.clone(),
        });
        // SAFETY: checked non-NULL; writable by the caller's contract.
        unsafe { out.write(Box::into_raw(stream)) };
        Ok(())
    })
}

/// Writes all `len` bytes of `data` to the stream and flushes them.
///
/// # Safety
/// `stream` is a live stream; `data` is NULL or `len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pairgate_stream_write(
    stream: *const PairgateStream,
    data: *const u8,
    len: usize,
) -> PairgateStatus {
    guard(|| {
        // SAFETY: the caller's contract.
        let (stream, data) =
            unsafe { (stream_ref(stream)?, crate::text::bytes(data, len, "data")?) };
        let mut tls = stream.tls.lock().unwrap_or_else(|p| p.into_inner());
        let conn = tls
            .as_mut()
            .ok_or_else(|| Failure::new(PairgateStatus::Closed, "the master stream is closed"))?;
        let written = stream.runtime.block_on(async {
            conn.write_all(data).await?;
            conn.flush().await
        });
        written.map_err(|e| {
            *tls = None;
            io_failure("writing to", &e)
        })
    })
}

/// Reads up to `capacity` bytes into `buffer`, waiting until at least one
/// arrives; `*read` gets how many. 0 means the master closed the stream.
///
/// # Safety
/// `stream` is a live stream; `buffer` is `capacity` writable bytes;
/// `read` is valid for one write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pairgate_stream_read(
    stream: *const PairgateStream,
    buffer: *mut u8,
    capacity: usize,
    read: *mut usize,
) -> PairgateStatus {
    guard(|| {
        if buffer.is_null() || read.is_null() || capacity == 0 {
            return Err(Failure::argument(
                "buffer or read is NULL, or capacity is 0",
            ));
        }
        // SAFETY: the caller's contract.
        let stream = unsafe { stream_ref(stream) }?;
        // SAFETY: non-NULL, and by the caller's contract `capacity`
        // writable bytes that nothing else uses during the call.
        let buffer = unsafe { std::slice::from_raw_parts_mut(buffer, capacity) };
        let mut tls = stream.tls.lock().unwrap_or_else(|p| p.into_inner());
        let conn = tls
            .as_mut()
            .ok_or_else(|| Failure::new(PairgateStatus::Closed, "the master stream is closed"))?;
        match stream.runtime.block_on(conn.read(buffer)) {
            Ok(n) => {
                // SAFETY: checked non-NULL; writable by the caller's contract.
                unsafe { read.write(n) };
                Ok(())
            }
            Err(e) => {
                *tls = None;
                Err(io_failure("reading from", &e))
            }
        }
    })
}

/// Closes the stream (sending TLS close_notify, waiting at most two
/// seconds) and frees it. NULL is ignored.
///
/// # Safety
/// `stream` is NULL or a stream from `pairgate_agent_connect` not yet
/// freed, and no other thread is using it.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pairgate_stream_free(stream: *mut PairgateStream) {
    if stream.is_null() {
        return;
    }
    // SAFETY: made by Box::into_raw in pairgate_agent_connect, freed once.
    let stream = unsafe { Box::from_raw(stream) };
    let _ = guard(|| {
        let conn = stream.tls.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(mut conn) = conn {
            let _ = stream
                .runtime
                .block_on(async { tokio::time::timeout(CLOSE_WAIT, conn.shutdown()).await });
        }
        Ok(())
    });
}
