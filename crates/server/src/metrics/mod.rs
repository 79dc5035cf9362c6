//! What an instance counts for `/metrics` (Prometheus text format), kept
//! in atomics so that the request path takes no lock but a shared read
//! of its route's entry: TLS handshakes by outcome, requests by service,
//! route and status with a latency histogram, and store failures. Gauges
//! (the paired set, open connections, open pairing requests, the store's
//! answer time) are read when scraped ([`endpoint`]).

pub(crate) mod endpoint;
mod text;
mod track;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

pub(crate) use text::Text;
pub(crate) use track::track;

/// A service, as a label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Service {
    Gate,
    Master,
    Cas,
}

impl Service {
    const ALL: [Self; 3] = [Self::Gate, Self::Master, Self::Cas];

    fn index(self) -> usize {
        match self {
            Self::Gate => 0,
            Self::Master => 1,
            Self::Cas => 2,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Gate => "gate",
            Self::Master => "master",
            Self::Cas => "cas",
        }
    }
}

/// How a TLS handshake ended, as a label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Handshake {
    /// A full handshake.
    Full,
    /// A resumed session.
    Resumed,
    /// Refused: the client certificate did not verify.
    BadCertificate,
    /// Refused: no client certificate.
    NoCertificate,
    /// Refused: no protocol version or cipher suite in common.
    Incompatible,
    /// The client sent an alert or closed before the end.
    ClientAborted,
    /// Not finished within the handshake timeout.
    Timeout,
    /// Any other failure.
    Failed,
}

impl Handshake {
    const ALL: [Self; 8] = [
        Self::Full,
        Self::Resumed,
        Self::BadCertificate,
        Self::NoCertificate,
        Self::Incompatible,
        Self::ClientAborted,
        Self::Timeout,
        Self::Failed,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Resumed => "resumed",
            Self::BadCertificate => "bad_certificate",
            Self::NoCertificate => "no_certificate",
            Self::Incompatible => "incompatible",
            Self::ClientAborted => "client_aborted",
            Self::Timeout => "timeout",
            Self::Failed => "failed",
        }
    }

    /// The outcome of a refused handshake, from its error.
    pub(crate) fn of_error(e: &pairgate_tls::TlsError) -> Self {
        use pairgate_tls::TlsError;
        let TlsError::Io { source, .. } = e else {
            return match e {
                TlsError::HandshakeTimeout(_) => Self::Timeout,
                _ => Self::Failed,
            };
        };
        match source
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            Some(rustls::Error::InvalidCertificate(_)) => Self::BadCertificate,
            Some(rustls::Error::NoCertificatesPresented) => Self::NoCertificate,
            Some(rustls::Error::PeerIncompatible(_)) => Self::Incompatible,
            Some(rustls::Error::AlertReceived(_)) => Self::ClientAborted,
            Some(_) => Self::Failed,
            None => match source.kind() {
                std::io::ErrorKind::UnexpectedEof
                | std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::BrokenPipe => Self::ClientAborted,
                _ => Self::Failed,
            },
        }
    }
}

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 14] = [
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A latency histogram: counts per bucket (not cumulative until
/// written), the sum in nanoseconds, and the count.
#[derive(Debug, Default)]
pub(crate) struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    /// Counts one observation.
    pub(crate) fn observe(&self, took: Duration) {
        let secs = took.as_secs_f64();
        if let Some(slot) = BUCKETS
            .iter()
            .position(|upper| secs <= *upper)
            .and_then(|i| self.buckets.get(i))
        {
            slot.fetch_add(1, Ordering::Relaxed);
        }
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }
}

/// HTTP statuses counted per route: 100 to 599.
const STATUSES: usize = 500;

/// One route's counts.
#[derive(Debug)]
pub(crate) struct Route {
    statuses: Box<[AtomicU64; STATUSES]>,
    latency: Histogram,
}

impl Route {
    fn new() -> Self {
        Self {
            statuses: Box::new(std::array::from_fn(|_| AtomicU64::new(0))),
            latency: Histogram::default(),
        }
    }

    /// Counts one request answered `status` after `took`.
    pub(crate) fn record(&self, status: u16, took: Duration) {
        let slot = usize::from(status)
            .checked_sub(100)
            .and_then(|i| self.statuses.get(i));
        if let Some(slot) = slot {
            slot.fetch_add(1, Ordering::Relaxed);
        }
        self.latency.observe(took);
    }
}

/// Routes per service: the route is axum's matched path (a template such
/// as `/v1/pairing/{id}`, or `unmatched`), so their number is bounded by
/// the routers.
type Routes = RwLock<HashMap<Arc<str>, Arc<Route>>>;

/// The counts of one instance.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    handshakes: [[AtomicU64; Handshake::ALL.len()]; 3],
    routes: [Routes; 3],
}

/// Store failures answered as server errors, by every instance of the
/// process (the conversion to an answer has no instance at hand).
pub(crate) static STORE_ERRORS: AtomicU64 = AtomicU64::new(0);

impl Metrics {
    /// Counts a handshake of `service`.
    pub(crate) fn handshake(&self, service: Service, outcome: Handshake) {
        let i = Handshake::ALL
            .iter()
            .position(|h| *h == outcome)
            .unwrap_or(0);
        if let Some(slot) = self
            .handshakes
            .get(service.index())
            .and_then(|row| row.get(i))
        {
            slot.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The counts of `route` of `service`, made at its first request.
    pub(crate) fn route(&self, service: Service, route: &str) -> Arc<Route> {
        let Some(routes) = self.routes.get(service.index()) else {
            return Arc::new(Route::new());
        };
        let known = routes
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(route)
            .cloned();
        known.unwrap_or_else(|| {
            routes
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .entry(Arc::from(route))
                .or_insert_with(|| Arc::new(Route::new()))
                .clone()
        })
    }

    /// Counts a request of `service` on `route` answered `status` after
    /// `took`.
    #[cfg(test)]
    pub(crate) fn request(&self, service: Service, route: &str, status: u16, took: Duration) {
        self.route(service, route).record(status, took);
    }

    /// Writes the counters in Prometheus text format.
    pub(crate) fn write(&self, out: &mut Text) {
        out.help(
            "pairgate_tls_handshakes_total",
            "counter",
            "TLS handshakes by service and outcome",
        );
        for service in Service::ALL {
            for (i, outcome) in Handshake::ALL.iter().enumerate() {
                let n = self
                    .handshakes
                    .get(service.index())
                    .and_then(|row| row.get(i))
                    .map_or(0, |a| a.load(Ordering::Relaxed));
                out.sample(
                    "pairgate_tls_handshakes_total",
                    &[("service", service.name()), ("outcome", outcome.name())],
                    n as f64,
                );
            }
        }
        self.write_requests(out);
        out.help(
            "pairgate_store_errors_total",
            "counter",
            "store failures answered as server errors",
        );
        out.sample(
            "pairgate_store_errors_total",
            &[],
            STORE_ERRORS.load(Ordering::Relaxed) as f64,
        );
    }

    fn write_requests(&self, out: &mut Text) {
        let mut routes: Vec<(Service, Arc<str>, Arc<Route>)> = Vec::new();
        for service in Service::ALL {
            if let Some(map) = self.routes.get(service.index()) {
                let map = map
                    .read()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                routes.extend(map.iter().map(|(k, v)| (service, k.clone(), v.clone())));
            }
        }
        routes.sort_by(|a, b| (a.0.index(), &a.1).cmp(&(b.0.index(), &b.1)));
        out.help(
            "pairgate_http_requests_total",
            "counter",
            "requests by service, route and status",
        );
        for (service, route, entry) in &routes {
            for (i, slot) in entry.statuses.iter().enumerate() {
                let n = slot.load(Ordering::Relaxed);
                if n > 0 {
                    let status = (i + 100).to_string();
                    let labels = [
                        ("service", service.name()),
                        ("route", route),
                        ("status", &status),
                    ];
                    out.sample("pairgate_http_requests_total", &labels, n as f64);
                }
            }
        }
        out.help(
            "pairgate_http_request_duration_seconds",
            "histogram",
            "time from a request's head to its answer's head",
        );
        for (service, route, entry) in &routes {
            let labels = [("service", service.name()), ("route", &**route)];
            out.histogram(
                "pairgate_http_request_duration_seconds",
                &labels,
                &entry.latency,
            );
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_handshakes_are_written_as_prometheus_text() {
        let m = Metrics::default();
        m.handshake(Service::Master, Handshake::Full);
        m.handshake(Service::Master, Handshake::BadCertificate);
        m.request(Service::Master, "/v1/me", 200, Duration::from_micros(700));
        m.request(Service::Master, "/v1/me", 200, Duration::from_millis(30));
        m.request(Service::Master, "/v1/me", 403, Duration::from_secs(20));
        let mut out = Text::default();
        m.write(&mut out);
        let text = out.finish();
        for line in [
            "# TYPE pairgate_tls_handshakes_total counter",
            r#"pairgate_tls_handshakes_total{service="master",outcome="full"} 1"#,
            r#"pairgate_tls_handshakes_total{service="master",outcome="bad_certificate"} 1"#,
            r#"pairgate_tls_handshakes_total{service="gate",outcome="full"} 0"#,
            r#"pairgate_http_requests_total{service="master",route="/v1/me",status="200"} 2"#,
            r#"pairgate_http_requests_total{service="master",route="/v1/me",status="403"} 1"#,
            r#"pairgate_http_request_duration_seconds_bucket{service="master",route="/v1/me",le="0.0005"} 0"#,
            r#"pairgate_http_request_duration_seconds_bucket{service="master",route="/v1/me",le="0.001"} 1"#,
            r#"pairgate_http_request_duration_seconds_bucket{service="master",route="/v1/me",le="0.05"} 2"#,
            r#"pairgate_http_request_duration_seconds_bucket{service="master",route="/v1/me",le="10"} 2"#,
            r#"pairgate_http_request_duration_seconds_bucket{service="master",route="/v1/me",le="+Inf"} 3"#,
            r#"pairgate_http_request_duration_seconds_count{service="master",route="/v1/me"} 3"#,
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        let sum = text
            .lines()
            .find(|l| l.starts_with("pairgate_http_request_duration_seconds_sum"))
            .unwrap();
        assert!(sum.ends_with(" 20.0307"), "{sum}");
    }

    #[test]
    fn a_label_value_is_escaped() {
        let mut out = Text::default();
        out.sample("x", &[("route", "a\"b\\c\nd")], 1.0);
        assert_eq!(out.finish(), "x{route=\"a\\\"b\\\\c\\nd\"} 1\n");
    }
}
