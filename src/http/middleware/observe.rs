//! The outermost middleware: what each request tells operators. It marks credentials sensitive
//! (`Authorization`, `Cookie`, `Set-Cookie`: a sensitive header value is never printed, so no
//! log line can leak one), gives the request its id and finds its route; while the request is
//! handled its [`RequestContext`] is current, so every line logged for it names it; when the
//! response head is ready it writes one access-log line and records the request metrics, then
//! echoes the id on the response.
//!
//! The context carries the method, the matched route (the template, never the raw path, so ids
//! do not explode cardinality) and the request id. Latency is measured to the response head,
//! not to the end of the body.
//!
//! A hand-written tower service rather than `axum::middleware::from_fn`: `from_fn` boxes its
//! future and clones the whole inner stack for every request, which the benchmark showed costing
//! several microseconds per layer. This one calls the inner service directly and keeps its state
//! in the returned future.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::http::StatusCode;
use axum::http::header::{self, HeaderMap, HeaderName};
use axum::response::Response;
use pin_project_lite::pin_project;
use tokio::task::futures::TaskLocalFuture;
use tower::{Layer, Service};
use tracing::Span;

use super::hardening::{self, Hardening};
use super::request_id::{self, REQUEST_ID_HEADER};
use super::request_metrics::{InFlight, RequestMetrics, RouteMetrics};
use super::route_table::RouteTable;
use crate::http::auth::API_KEY_HEADER;
use crate::telemetry::request::RequestContext;

/// Observes every request of the router it wraps.
#[derive(Clone)]
pub struct ObserveLayer {
    routes: Arc<RouteTable<ObservedRoute>>,
    open_spans: bool,
}

/// A route as the middleware sees it: its template, and its metrics unless they are off.
struct ObservedRoute {
    template: &'static str,
    hardening: Hardening,
    metrics: Option<Arc<RouteMetrics>>,
}

impl ObserveLayer {
    /// `templates`: the router's routes, to label requests with (see `route_table`);
    /// `record_metrics`: whether requests are counted (off when `metrics.enabled` is false);
    /// `open_spans`: whether each request also gets a tracing span (see [`request_span`]).
    pub fn new<I, P>(templates: I, record_metrics: bool, open_spans: bool) -> Self
    where
        I: IntoIterator<Item = P>,
        P: AsRef<str>,
    {
        let shared = record_metrics.then(|| Arc::new(RequestMetrics::new()));
        let routes = RouteTable::new(templates, |template| ObservedRoute {
            template,
            hardening: hardening::for_route(template),
            metrics: shared.as_ref().map(|shared| Arc::new(RouteMetrics::new(Arc::clone(shared), template))),
        });
        Self { routes: Arc::new(routes), open_spans }
    }
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Observe<S> {
        Observe { inner, routes: Arc::clone(&self.routes), open_spans: self.open_spans }
    }
}

#[derive(Clone)]
pub struct Observe<S> {
    inner: S,
    routes: Arc<RouteTable<ObservedRoute>>,
    open_spans: bool,
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
        let id = request_id::assign(&request);
        let route = self.routes.find(request.uri().path());
        let in_flight = route.metrics.as_ref().map(RouteMetrics::enter);
        let context = RequestContext { id, method: request.method().clone(), route: route.template };
        let span = if self.open_spans { request_span(&context) } else { Span::none() };
        if tracing::enabled!(tracing::Level::DEBUG) {
            let _entered = span.enter();
            context.clone().sync_scope(|| tracing::debug!("request started"));
        }
        // Builds the handler's future; its code runs when the future is polled, in the request's
        // context (a panic here is turned into a response, and logged, when guard is polled).
        let inner = self.inner.call(request);
        ObserveFuture { inner: context.scope(Logged { inner, started }), span, in_flight, hardening: route.hardening }
    }
}

pin_project! {
    /// The response future of [`Observe`]: the inner future, polled in the request's context.
    pub struct ObserveFuture<F> {
        // The context comes back from the scope, with the response, for the metrics and the
        // response's `x-request-id`.
        #[pin]
        inner: TaskLocalFuture<Option<RequestContext>, Logged<F>>,
        span: Span,
        // `None` when metrics are off. Dropped with the future, so a request whose client went
        // away is counted out too.
        in_flight: Option<InFlight>,
        hardening: Hardening,
    }
}

impl<F, B, E> Future for ObserveFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let _entered = this.span.enter();
        let (mut response, elapsed) = ready!(this.inner.as_mut().poll(cx))?;
        if let Some(context) = this.inner.take_value().flatten() {
            if let Some(in_flight) = this.in_flight.take() {
                in_flight.finish(&context.method, response.status(), elapsed);
            }
            response.headers_mut().insert(REQUEST_ID_HEADER, context.id.header_value());
        }
        mark_sensitive(response.headers_mut());
        hardening::apply(this.hardening, response.headers_mut());
        Poll::Ready(Ok(response))
    }
}

pin_project! {
    /// The handler's future, and the access line written when it is ready: in the request's
    /// context, like the handler's own lines.
    pub struct Logged<F> {
        #[pin]
        inner: F,
        started: Instant,
    }
}

impl<F, B, E> Future for Logged<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<(Response<B>, Duration), E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = ready!(this.inner.poll(cx))?;
        let elapsed = this.started.elapsed();
        log_finished(response.status(), elapsed);
        Poll::Ready(Ok((response, elapsed)))
    }
}

/// The request's span, for the human log format: its fields lead each of the request's lines,
/// as people reading a terminal expect (`request{method=GET route=/ request_id=…}: …`). The
/// JSON format names the request from its context instead, which costs a fraction of a span
/// (see `telemetry::request`), so in production no span is opened.
fn request_span(context: &RequestContext) -> Span {
    tracing::info_span!(
        "request",
        method = context.method.as_str(),
        route = context.route,
        request_id = context.id.as_str()
    )
}

/// The access-log line, written in the request's context.
fn log_finished(status: StatusCode, elapsed: Duration) {
    // Whole microseconds: `0.052` rather than `0.052123000000000004`, and quicker to render.
    let latency_ms = elapsed.as_micros() as u64 as f64 / 1000.0;
    // `message` as a plain string rather than a format string: the same line, rendered without
    // the formatting machinery.
    if status.is_server_error() {
        tracing::warn!(status = status.as_u16(), latency_ms, message = "request finished");
    } else {
        tracing::info!(status = status.as_u16(), latency_ms, message = "request finished");
    }
}

/// Headers that carry credentials.
const SENSITIVE: [HeaderName; 4] = [header::AUTHORIZATION, header::COOKIE, header::SET_COOKIE, API_KEY_HEADER];

/// One pass over the headers: a request carries a handful, and comparing a standard header
/// name is an integer comparison, where looking each credential header up would hash it.
fn mark_sensitive(headers: &mut HeaderMap) {
    for (name, value) in headers.iter_mut() {
        if SENSITIVE.contains(name) {
            value.set_sensitive(true);
        }
    }
}
