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

use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use metrics::{Counter, Gauge, Histogram};

use super::trace::UNMATCHED;
use crate::telemetry::metrics as names;

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

/// Counts a request in flight until dropped, so that a request whose client went away (its
/// future dropped mid-way) is counted out too.
struct InFlight<'a>(&'a Gauge);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// The middleware: measures the time to the response head.
pub async fn record(State(metrics): State<Arc<RequestMetrics>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    let route = request.extensions().get::<MatchedPath>().cloned();
    metrics.in_flight.increment(1.0);
    let _in_flight = InFlight(&metrics.in_flight);
    let response = next.run(request).await;
    let route = route.as_ref().map_or(UNMATCHED, MatchedPath::as_str);
    metrics.record(method, route, response.status(), started.elapsed());
    response
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
