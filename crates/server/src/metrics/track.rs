//! The layer that counts every request of a service and opens its log
//! span. A plain tower service (as the master's paired check is) rather
//! than `from_fn`, which boxes a clone of the route and a future on every
//! request: this one adds two clock reads, a few atomic additions and a
//! span (disabled at the master unless debugging) to each.
//!
//! The span (`request`, with a process-wide request number, the service
//! and the client certificate's fingerprint where there is one) is what
//! lets `PAIRGATE_LOG_FORMAT=json` lines be joined to a request and a
//! terminal; the gate's and CAS's are at info level, the master's at
//! debug (`PAIRGATE_LOG=debug`). It never carries a body, a header or a
//! secret.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::response::Response;
use tracing::Instrument as _;
use tracing::instrument::Instrumented;

use super::{Metrics, Route, Service};
use crate::http::Peer;

/// Numbers requests for the logs.
static NEXT_REQUEST: AtomicU64 = AtomicU64::new(1);

/// `router` with every request counted under `service`, by the route
/// axum matched (`unmatched` for none).
pub(crate) fn track(router: axum::Router, metrics: Arc<Metrics>, service: Service) -> axum::Router {
    router.layer(TrackLayer { metrics, service })
}

#[derive(Clone)]
struct TrackLayer {
    metrics: Arc<Metrics>,
    service: Service,
}

impl<S> tower::Layer<S> for TrackLayer {
    type Service = Tracked<S>;

    fn layer(&self, inner: S) -> Tracked<S> {
        Tracked {
            inner,
            route: Arc::new(RouteCounts {
                layer: self.clone(),
                last: OnceLock::new(),
            }),
        }
    }
}

/// A route's service, counted. axum clones it for every request, so what
/// it adds is one reference count.
#[derive(Clone)]
pub(crate) struct Tracked<S> {
    inner: S,
    route: Arc<RouteCounts>,
}

/// Where one route's service counts.
struct RouteCounts {
    layer: TrackLayer,
    /// The counts of the route this service last answered: axum layers
    /// each route on its own, so after the first request the route's
    /// entry is at hand without a lookup.
    last: OnceLock<(Box<str>, Arc<Route>)>,
}

impl RouteCounts {
    /// The counts of the route `request` matched.
    fn of(&self, request: &Request) -> Arc<Route> {
        let path = request
            .extensions()
            .get::<MatchedPath>()
            .map_or("unmatched", MatchedPath::as_str);
        if let Some((cached, route)) = self.last.get()
            && **cached == *path
        {
            return route.clone();
        }
        let route = self.layer.metrics.route(self.layer.service, path);
        let _ = self.last.set((path.into(), route.clone()));
        route
    }
}

impl<S> tower::Service<Request> for Tracked<S>
where
    S: tower::Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Counted<Instrumented<S::Future>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let route = self.route.of(&request);
        let service = self.route.layer.service.name();
        // The master's span is at debug level: at its request rates a
        // span per request would cost a few percent of the CPU at info.
        // (Field values are computed only for an enabled span.)
        let span = if self.route.layer.service == Service::Master {
            tracing::debug_span!(
                "request",
                id = NEXT_REQUEST.fetch_add(1, Ordering::Relaxed),
                service,
                fingerprint = tracing::field::Empty
            )
        } else {
            tracing::info_span!(
                "request",
                id = NEXT_REQUEST.fetch_add(1, Ordering::Relaxed),
                service,
                fingerprint = tracing::field::Empty
            )
        };
        if !span.is_disabled()
            && let Some(peer) = request.extensions().get::<Peer>()
        {
            span.record("fingerprint", tracing::field::display(&peer.fingerprint));
        }
        Counted {
            inner: self.inner.call(request).instrument(span),
            started: Instant::now(),
            route,
        }
    }
}

pin_project_lite::pin_project! {
    /// A request's answer, counted when it is ready.
    pub(crate) struct Counted<F> {
        #[pin]
        inner: F,
        started: Instant,
        route: Arc<Route>,
    }
}

impl<F, E> Future for Counted<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let answer = std::task::ready!(this.inner.poll(cx));
        if let Ok(response) = &answer {
            let status = response.status().as_u16();
            this.route.record(status, this.started.elapsed());
        }
        Poll::Ready(answer)
    }
}
