//! Kept-alive connections are parked between requests and served again
//! by a new hyper connection (crates/server/src/keepalive.rs): requests
//! pipelined in one write, a request split over two writes with a pause,
//! and a body the handler never reads must each come out as HTTP/1.1
//! says, on one connection, with nothing read twice or lost.

use std::time::Duration;

use pairgate_tls::client::ServerTrust;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::support::{Db, Fixture, TestTerminal};

/// Reads answers off one connection, keeping what arrived early.
#[derive(Default)]
struct Answers {
    buf: Vec<u8>,
}

impl Answers {
    /// The next answer's status and body, or `None` at the end of the
    /// stream.
    async fn next<S: AsyncRead + Unpin>(&mut self, s: &mut S) -> Option<(u16, String)> {
        loop {
            if let Some(answer) = self.take() {
                return Some(answer);
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk))
                .await
                .expect("an answer within 5 s")
                .unwrap_or(0);
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn take(&mut self) -> Option<(u16, String)> {
        let text = String::from_utf8_lossy(&self.buf).into_owned();
        let end = text.find("\r\n\r\n")? + 4;
        let head = text[..end].to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map_or(0, |v| v.trim().parse().unwrap());
        if self.buf.len() < end + length {
            return None;
        }
        let status = head[9..12].parse().unwrap();
        let body = String::from_utf8_lossy(&self.buf[end..end + length]).into_owned();
        self.buf.drain(..end + length);
        Some((status, body))
    }
}

/// A mutual-TLS connection of `t` to the gate.
async fn connect(f: &Fixture, t: &TestTerminal) -> impl AsyncRead + AsyncWrite + Unpin + use<> {
    let addr = f.server.gate_addr.to_string();
    t.tls(ServerTrust::Pins(vec![f.server.pin]))
        .connect(&addr, None)
        .await
        .unwrap()
}

fn status_of(id: &str) -> String {
    format!("GET /v1/pairing/{id} HTTP/1.1\r\nhost: x\r\n\r\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_serves_pipelined_split_and_unread_requests() {
    let f = Fixture::start(Db::Sqlite, |_| {}).await;
    let t = TestTerminal::new("kept");
    let mut s = connect(&f, &t).await;
    let mut answers = Answers::default();

    // Two requests in one write: two answers, in order.
    s.write_all(format!("{}{}", status_of("a1"), status_of("a2")).as_bytes())
        .await
        .unwrap();
    for id in ["a1", "a2"] {
        let (status, body) = answers.next(&mut s).await.unwrap();
        assert_eq!(status, 404);
        assert!(body.contains(&format!("pairing request {id}")), "{body}");
    }

    // One request over two writes, with the connection idle between.
    let split = status_of("b1");
    s.write_all(&split.as_bytes()[..10]).await.unwrap();
    s.flush().await.unwrap();
    // A real pause on the wire: the server reads the first part alone.
    tokio::time::sleep(Duration::from_millis(200)).await;
    s.write_all(&split.as_bytes()[10..]).await.unwrap();
    let (status, body) = answers.next(&mut s).await.unwrap();
    assert_eq!(
        (status, body.contains("pairing request b1")),
        (404, true),
        "{body}"
    );

    // Parked for a while (a real pause on the wire), then served again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.write_all(status_of("c1").as_bytes()).await.unwrap();
    let (_, body) = answers.next(&mut s).await.unwrap();
    assert!(body.contains("pairing request c1"), "{body}");

    // A body no handler reads, shaped like a request: it must never be
    // answered as one. The connection goes on or closes; either way the
    // next request is not mistaken for part of that body.
    let smuggled = status_of("5e");
    let unread = format!(
        "POST /v1/nothing-here HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n{smuggled}{}",
        smuggled.len(),
        status_of("d1")
    );
    s.write_all(unread.as_bytes()).await.unwrap();
    let (status, body) = answers.next(&mut s).await.unwrap();
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("PG-NO-ROUTE"), "{body}");
    if let Some((status, body)) = answers.next(&mut s).await {
        assert!(!body.contains("5e"), "the unread body was served: {body}");
        assert_eq!(
            (status, body.contains("pairing request d1")),
            (404, true),
            "{body}"
        );
    }

    // The same with the body arriving after a pause, on a new connection.
    let mut s = connect(&f, &t).await;
    let mut answers = Answers::default();
    // The head and the body's first four bytes, then the rest.
    let (head, rest) = unread.split_at(unread.find("\r\n\r\n").unwrap() + 8);
    s.write_all(head.as_bytes()).await.unwrap();
    let (status, body) = answers.next(&mut s).await.unwrap();
    assert_eq!(status, 404, "{body}");
    // A real pause on the wire: the body comes after the answer.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = s.write_all(rest.as_bytes()).await;
    while let Some((_, body)) = answers.next(&mut s).await {
        assert!(!body.contains("5e"), "the unread body was served: {body}");
    }
    f.server.shutdown().await;
}
