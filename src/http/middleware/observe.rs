//! The outermost middleware: what each request tells operators. It marks credentials sensitive
//! (`Authorization`, `Cookie`, `Set-Cookie`: a sensitive header value is never printed, so no
//! log line can leak one), gives the request its id and opens its span; when the response head
//! is ready it writes one access-log line and records the request metrics, then echoes the id
//! on the response.
//!
//! The span carries the method, the matched route (the template, never the raw path, so ids do
//! not explode cardinality) and the request id, so every line logged while handling the request
//! can be tied back to it. Latency is measured to the response head, not to the end of the body.
//!
//! A hand-written tower service rather than `axum::middleware::from_fn`: `from_fn` boxes its
//! future and clones the whole inner stack for every request, which the benchmark showed costing
//! several microseconds per layer. This one calls the inner service directly and keeps its state
//! in the returned future.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::http::header::{self, HeaderMap, HeaderName};
use axum::response::Response;
use pin_project_lite::pin_project;
use tower::{Layer, Service};
use tracing::Span;

use super::request_id::{self, REQUEST_ID_HEADER, RequestId};
use super::request_metrics::{InFlight, RequestMetrics, RouteMetrics};

/// Observes every request of the routes it wraps.
#[derive(Clone)]
pub struct ObserveLayer {
    metrics: Option<Arc<RequestMetrics>>,
}

impl ObserveLayer {
    /// `record_metrics`: whether requests are counted (off when `metrics.enabled` is false).
    pub fn new(record_metrics: bool) -> Self {
        Self { metrics: record_metrics.then(|| Arc::new(RequestMetrics::new())) }
    }
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Observe<S> {
        // axum calls `layer` once per route, so each route gets metrics of its own.
        Observe { inner, metrics: self.metrics.as_ref().map(|shared| Arc::new(RouteMetrics::new(Arc::clone(shared)))) }
    }
}

#[derive(Clone)]
pub struct Observe<S> {
    inner: S,
    metrics: Option<Arc<RouteMetrics>>,
}

impl<S, B> Service<Request> for Observe<S>
where
    S: Service<Request, Response = Response<B>>,
{
    type Response = Response<B>;
    type Error = S::Error;
    type Future = ObserveFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let started = Instant::now();
        mark_sensitive(request.headers_mut());
        let id = request_id::assign(&mut request);
        let method = request.method().clone();
        let route = route_label(request.extensions().get::<MatchedPath>());
        let span = tracing::info_span!("request", method = method.as_str(), route, request_id = id.as_str());
        let in_flight = self.metrics.as_ref().map(|metrics| metrics.enter(route));
        tracing::debug!(parent: &span, "request started");
        // Not called inside the span: an axum service only builds its future here, and what a
        // handler logs happens when that future is polled, inside the span. Entering a span
        // costs a little on every request.
        let inner = self.inner.call(request);
        ObserveFuture { inner, span, observation: Observation { id, method, started, in_flight } }
    }
}

pin_project! {
    /// The response future of [`Observe`]: the inner future, polled inside the request's span.
    pub struct ObserveFuture<F> {
        #[pin]
        inner: F,
        span: Span,
        observation: Observation,
    }
}

impl<F, B, E> Future for ObserveFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _entered = this.span.enter();
        let mut response = ready!(this.inner.poll(cx))?;
        this.observation.finish(this.span, &response);
        mark_sensitive(response.headers_mut());
        response.headers_mut().insert(REQUEST_ID_HEADER, this.observation.id.header_value());
        Poll::Ready(Ok(response))
    }
}

/// What is known of a request while it is handled.
struct Observation {
    id: RequestId,
    method: Method,
    started: Instant,
    /// `None` when metrics are off, and once the request is recorded.
    in_flight: Option<InFlight>,
}

impl Observation {
    /// Writes the access-log line and records the metrics. The line names `span` as its parent:
    /// it is the current span too, but naming it spares a look-up.
    fn finish<B>(&mut self, span: &Span, response: &Response<B>) {
        let elapsed = self.started.elapsed();
        let status = response.status();
        // Whole microseconds: `0.052` rather than `0.052123000000000004`, and quicker to render.
        let latency_ms = elapsed.as_micros() as u64 as f64 / 1000.0;
        // `message` as a plain string rather than a format string: the same line, rendered
        // without the formatting machinery.
        if status.is_server_error() {
            tracing::warn!(parent: span, status = status.as_u16(), latency_ms, message = "request finished");
        } else {
            tracing::info!(parent: span, status = status.as_u16(), latency_ms, message = "request finished");
        }
        if let Some(in_flight) = self.in_flight.take() {
            in_flight.finish(&self.method, status, elapsed);
        }
    }
}

/// Headers that carry credentials.
const SENSITIVE: [HeaderName; 3] = [header::AUTHORIZATION, header::COOKIE, header::SET_COOKIE];

/// One pass over the headers: a request carries a handful, and comparing a standard header
/// name is an integer comparison, where looking each credential header up would hash it.
fn mark_sensitive(headers: &mut HeaderMap) {
    for (name, value) in headers.iter_mut() {
        if SENSITIVE.contains(name) {
            value.set_sensitive(true);
        }
    }
}

/// The matched route's template; the span and the metrics copy it rather than keep the
/// `MatchedPath`, whose reference count every worker would touch on every request.
fn route_label(route: Option<&MatchedPath>) -> &str {
    route.map_or("<unmatched>", MatchedPath::as_str)
}
