//! The request metrics: a counter by method, route and status, a latency histogram by method and
//! route, and the number of requests in flight, through the `metrics` facade.
//!
//! Labels stay bounded: the route is the matched template (never the raw path) and a method
//! outside the standard set is counted as `_OTHER`, so a client cannot create series at will.
//! Each series' handles are registered once and kept by route, so that a request does not build
//! and hash its labels in the recorder.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::extract::MatchedPath;
use axum::http::{Method, StatusCode};
use metrics::{Counter, Gauge, Histogram};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::request::UNMATCHED_ROUTE;
use keel_telemetry::metrics as names;

/// The request metrics of one application; shared by its routes.
pub struct RequestMetrics {
    in_flight: Gauge,
    routes: RwLock<HashMap<String, Vec<Series>>>,
}

/// One route, method and status's handles.
struct Series {
    method: &'static str,
    status: StatusCode,
    requests: Counter,
    duration: Histogram,
}

impl RequestMetrics {
    pub fn new() -> Arc<Self> {
        Arc::new(Self { in_flight: metrics::gauge!(names::HTTP_REQUESTS_IN_FLIGHT), routes: RwLock::default() })
    }

    fn record(&self, method: &'static str, route: &str, status: StatusCode, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        {
            let routes = self.routes.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(series) = find(&routes, route, method, status) {
                series.requests.increment(1);
                series.duration.record(seconds);
                return;
            }
        }
        let mut routes = self.routes.write().unwrap_or_else(PoisonError::into_inner);
        let by_route = routes.entry(route.to_owned()).or_default();
        if !by_route.iter().any(|series| series.method == method && series.status == status) {
            by_route.push(Series {
                method,
                status,
                requests: metrics::counter!(
                    names::HTTP_REQUESTS,
                    "method" => method, "route" => route.to_owned(), "status" => status.as_str().to_owned()
                ),
                duration: metrics::histogram!(
                    names::HTTP_REQUEST_DURATION, "method" => method, "route" => route.to_owned()
                ),
            });
        }
        if let Some(series) = find(&routes, route, method, status) {
            series.requests.increment(1);
            series.duration.record(seconds);
        }
    }
}

fn find<'a>(
    routes: &'a HashMap<String, Vec<Series>>,
    route: &str,
    method: &str,
    status: StatusCode,
) -> Option<&'a Series> {
    routes.get(route)?.iter().find(|series| series.method == method && series.status == status)
}

/// The middleware: measures the time to the response head. A tower layer of its own rather
/// than `axum::middleware::from_fn`, which boxes each request's future and clones the inner
/// service for it (docs/performance.md).
#[derive(Clone)]
pub struct RecordLayer {
    metrics: Arc<RequestMetrics>,
}

impl RecordLayer {
    pub fn new() -> Self {
        Self { metrics: RequestMetrics::new() }
    }
}

impl<S> Layer<S> for RecordLayer {
    type Service = Record<S>;

    fn layer(&self, inner: S) -> Record<S> {
        Record { inner, metrics: Arc::clone(&self.metrics) }
    }
}

#[derive(Clone)]
pub struct Record<S> {
    inner: S,
    metrics: Arc<RequestMetrics>,
}

impl<S, B, ResBody> Service<axum::http::Request<B>> for Record<S>
where
    S: Service<axum::http::Request<B>, Response = axum::http::Response<ResBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Recording<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: axum::http::Request<B>) -> Self::Future {
        let method = method_label(request.method());
        let route = request.extensions().get::<MatchedPath>().cloned();
        self.metrics.in_flight.increment(1.0);
        let in_flight = InFlight(Arc::clone(&self.metrics));
        Recording { inner: self.inner.call(request), started: Instant::now(), method, route, in_flight }
    }
}

pin_project! {
    /// The response future of [`Record`].
    pub struct Recording<F> {
        #[pin]
        inner: F,
        started: Instant,
        method: &'static str,
        route: Option<MatchedPath>,
        // Counted out when dropped, so that a request whose client went away (its future
        // dropped mid-way) is counted out too.
        in_flight: InFlight,
    }
}

impl<F, ResBody, E> Future for Recording<F>
where
    F: Future<Output = Result<axum::http::Response<ResBody>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        if let Ok(response) = &result {
            let route = this.route.as_ref().map_or(UNMATCHED_ROUTE, MatchedPath::as_str);
            this.in_flight.0.record(this.method, route, response.status(), this.started.elapsed());
        }
        Poll::Ready(result)
    }
}

/// A request counted in flight.
struct InFlight(Arc<RequestMetrics>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.decrement(1.0);
    }
}

/// The method as a label: the standard ones by name, any other as `_OTHER`.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "_OTHER",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_methods_keep_their_name_and_others_are_folded() {
        assert_eq!(method_label(&Method::DELETE), "DELETE");
        assert_eq!(method_label(&Method::from_bytes(b"BREW").unwrap()), "_OTHER");
    }
}
