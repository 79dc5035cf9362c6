//! The proxy case of `pairgate bench all`: the fleet's kept-alive
//! connections through `/app/hello` to an nginx application (pinned to
//! the client's core, so neither front pays for it), pairgate's master
//! beside nginx doing the same job, then a sustained run through the
//! master that reports its errors and the sockets left in TIME_WAIT
//! towards the application (each is a connection opened and closed).

use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use pairgate_tls::client::TlsClient;
use serde_json::{Value, json};

use super::fleet::BenchTerminal;
use super::load::{self, Run, Target};
use super::nginx::{Nginx, Tls};
use super::wire::Request;

/// The applications behind the two fronts: one each, so that each
/// front's TIME_WAIT sockets are counted on its own.
pub struct Upstreams {
    /// Behind pairgate's master.
    pub pairgate: Nginx,
    /// Behind the nginx front.
    pub nginx: Nginx,
}

impl Upstreams {
    /// Starts both on `cpu` (the client's core).
    pub fn start(nginx: &Path, dir: &Path, cpu: Option<usize>) -> Result<Self> {
        Ok(Self {
            pairgate: Nginx::upstream(nginx, &dir.join("upstream-pairgate"), cpu)?,
            nginx: Nginx::upstream(nginx, &dir.join("upstream-nginx"), cpu)?,
        })
    }
}

/// nginx as the proxying front, admitting the paired `fleet`.
pub fn start_front(
    nginx: &Path,
    dir: &Path,
    tls: &Tls<'_>,
    cpu: Option<usize>,
    fleet: &[BenchTerminal],
    upstream: &Nginx,
) -> Result<Nginx> {
    let paired: Vec<String> = fleet
        .iter()
        .filter_map(|t| t.key.cert.first())
        .map(|der| sha1_hex(der))
        .collect();
    Nginx::proxy_front(nginx, dir, tls, cpu, &paired, &upstream.addr)
}

/// nginx's `$ssl_client_fingerprint`: SHA-1 of the certificate, lower-case
/// hex (nginx's choice; pairgate's fingerprints are SHA-256).
fn sha1_hex(der: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
        der,
    ))
}

/// What the case measured.
pub struct ProxyFigures {
    /// Through pairgate's master.
    pub pairgate: Run,
    /// Through the nginx front.
    pub nginx: Run,
    /// The sustained run through the master.
    pub sustained: Run,
    /// How long it ran.
    pub sustained_for: Duration,
    /// TIME_WAIT sockets towards each application after each run:
    /// pairgate's, nginx's, pairgate's after the sustained run.
    pub time_wait: [usize; 3],
}

/// The runs: `connections` kept-alive connections for `duration` through
/// each front, then `sustained` through the master.
pub async fn measure(
    master: &Target,
    ours: &[TlsClient],
    front: &Target,
    theirs: &[TlsClient],
    upstreams: &Upstreams,
    (duration, sustained, connections): (Duration, Duration, usize),
) -> ProxyFigures {
    let hello = Request::get("/app/hello");
    let pairgate = load::kept_alive(master, ours, &hello, duration, connections).await;
    let after_pairgate = time_wait_towards(&upstreams.pairgate.addr);
    let nginx = load::kept_alive(front, theirs, &hello, duration, connections).await;
    let after_nginx = time_wait_towards(&upstreams.nginx.addr);
    let long = load::kept_alive(master, ours, &hello, sustained, connections).await;
    let after_sustained = time_wait_towards(&upstreams.pairgate.addr);
    ProxyFigures {
        pairgate,
        nginx,
        sustained: long,
        sustained_for: sustained,
        time_wait: [after_pairgate, after_nginx, after_sustained],
    }
}

impl ProxyFigures {
    /// The sustained run and the TIME_WAIT counts, as JSON.
    pub fn sustained_json(&self) -> Value {
        json!({
            "seconds": self.sustained_for.as_secs_f64(),
            "run": self.sustained.to_json(),
            "time_wait_towards_upstream": {
                "pairgate_after_run": self.time_wait[0],
                "nginx_after_run": self.time_wait[1],
                "pairgate_after_sustained": self.time_wait[2],
            },
        })
    }
}

/// Sockets in TIME_WAIT with `addr`'s port at either end, from
/// `/proc/net/tcp` and `tcp6` (0 when they cannot be read).
pub fn time_wait_towards(addr: &str) -> usize {
    let Some(port) = addr
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse::<u16>().ok())
    else {
        return 0;
    };
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .map(|table| count_time_wait(&table, port))
        .sum()
}

/// TIME_WAIT (state `06`) rows of a `/proc/net/tcp` table with `port` at
/// either end.
fn count_time_wait(table: &str, port: u16) -> usize {
    let port_of = |field: &str| {
        field
            .rsplit_once(':')
            .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
    };
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            matches!(fields.as_slice(), [_, local, remote, "06", ..]
                if port_of(local) == Some(port) || port_of(remote) == Some(port))
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_wait_rows_are_counted_at_either_end() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue\n\
   0: 0100007F:1F90 0100007F:A000 06 00000000:00000000\n\
   1: 0100007F:A001 0100007F:1F90 06 00000000:00000000\n\
   2: 0100007F:A002 0100007F:1F90 01 00000000:00000000\n\
   3: 0100007F:A003 0100007F:1F91 06 00000000:00000000\n";
        assert_eq!(count_time_wait(table, 0x1F90), 2);
        assert_eq!(count_time_wait(table, 0x1F91), 1);
        assert_eq!(count_time_wait(table, 80), 0);
    }

    #[test]
    fn fingerprints_are_nginx_s_sha1() {
        // SHA-1 of the empty input, as nginx would print it.
        assert_eq!(sha1_hex(b""), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    }
}
