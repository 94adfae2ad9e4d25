//! The request metrics: a counter by method, route and status, a latency histogram by method and
//! route, and the number of requests in flight.
//!
//! The `metrics` macros look a series up in the recorder's registry by building and hashing its
//! labels, which allocates them first; done for every request that was a visible share of its
//! cost. Here each series is registered once, on the first request that needs it, in a table
//! shared by all routes, and its handles reused. Each route also keeps the few series it used
//! last in a [`RouteSeries`] of its own, which a request reads without a lock or a hash: a
//! route answers almost always with the same method and status.
//!
//! Labels stay bounded: the route is the matched template (never the raw path) and a method
//! outside the standard set is counted as `_OTHER`, so a client cannot create series at will.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, PoisonError, RwLock};
use std::time::Duration;

use axum::http::{Method, StatusCode};
use metrics::{Counter, Gauge, Histogram};

use crate::telemetry::metrics as names;

/// Handles for the request metrics, shared by every route of an application.
pub struct RequestMetrics {
    in_flight: Gauge,
    routes: RwLock<HashMap<Box<str>, Vec<MethodSeries>>>,
}

/// One route and method's series.
struct MethodSeries {
    method: &'static str,
    duration: Histogram,
    by_status: Vec<(StatusCode, Counter)>,
}

impl RequestMetrics {
    pub fn new() -> Self {
        Self { in_flight: metrics::gauge!(names::HTTP_REQUESTS_IN_FLIGHT), routes: RwLock::default() }
    }

    /// Records one answered request: through the route's own recent series when one matches,
    /// else through the shared table, remembering the series in a free slot.
    fn record(
        &self,
        recent: &RouteSeries,
        method: &Method,
        route: &'static str,
        status: StatusCode,
        elapsed: Duration,
    ) {
        let method = method_label(method);
        for slot in &recent.slots {
            // An empty slot takes this series, unless another thread fills it first with its
            // own: whoever filled it, the series is checked before it is used.
            let series = slot.get_or_init(|| self.series(method, route, status));
            if series.is(method, route, status) {
                series.record(elapsed);
                return;
            }
        }
        self.series(method, route, status).record(elapsed);
    }

    /// The handles for one route, method and status, from the shared table.
    fn series(&self, method: &'static str, route: &'static str, status: StatusCode) -> Series {
        {
            let routes = self.routes.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(series) = find(&routes, route, method)
                && let Some((_, requests)) = series.by_status.iter().find(|(s, _)| *s == status)
            {
                return Series::new(method, route, status, requests, &series.duration);
            }
        }
        self.register(method, route, status)
    }

    /// The slow path, once per new series: registers what is missing.
    #[cold]
    fn register(&self, method: &'static str, route: &'static str, status: StatusCode) -> Series {
        let mut routes = self.routes.write().unwrap_or_else(PoisonError::into_inner);
        let by_method = routes.entry(route.into()).or_default();
        let index = match by_method.iter().position(|series| series.method == method) {
            Some(index) => index,
            None => {
                let duration = names::request_duration(method, route);
                by_method.push(MethodSeries { method, duration, by_status: Vec::new() });
                by_method.len() - 1
            }
        };
        let series = &mut by_method[index];
        let requests = match series.by_status.iter().position(|(s, _)| *s == status) {
            Some(at) => &series.by_status[at].1,
            None => {
                let counter = metrics::counter!(
                    names::HTTP_REQUESTS,
                    "method" => method, "route" => route.to_owned(), "status" => status.as_str().to_owned()
                );
                series.by_status.push((status, counter));
                &series.by_status[series.by_status.len() - 1].1
            }
        };
        Series::new(method, route, status, requests, &series.duration)
    }
}

/// The handles for one route, method and status.
struct Series {
    route: &'static str,
    method: &'static str,
    status: StatusCode,
    requests: Counter,
    duration: Histogram,
}

impl Series {
    fn new(
        method: &'static str,
        route: &'static str,
        status: StatusCode,
        requests: &Counter,
        duration: &Histogram,
    ) -> Self {
        Self { route, method, status, requests: requests.clone(), duration: duration.clone() }
    }

    fn is(&self, method: &str, route: &str, status: StatusCode) -> bool {
        self.method == method && self.status == status && self.route == route
    }

    fn record(&self, elapsed: Duration) {
        self.requests.increment(1);
        self.duration.record(elapsed.as_secs_f64());
    }
}

/// The series one route recorded to first. Each slot is filled once; a request whose series is
/// in none of them goes to the shared table.
#[derive(Default)]
struct RouteSeries {
    slots: [OnceLock<Series>; 4],
}

fn find<'a>(routes: &'a HashMap<Box<str>, Vec<MethodSeries>>, route: &str, method: &str) -> Option<&'a MethodSeries> {
    routes.get(route)?.iter().find(|series| series.method == method)
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

/// One route's view of the request metrics: the shared table, the series the route used last,
/// and the route's template. Made once per route, with the route table (see `observe.rs`).
pub struct RouteMetrics {
    shared: Arc<RequestMetrics>,
    recent: RouteSeries,
    route: &'static str,
}

impl RouteMetrics {
    pub fn new(shared: Arc<RequestMetrics>, route: &'static str) -> Self {
        Self { shared, recent: RouteSeries::default(), route }
    }

    /// Counts a request to this route in flight until the returned guard is dropped, so a
    /// request whose client went away (its future dropped mid-way) is counted out too.
    pub fn enter(self: &Arc<Self>) -> InFlight {
        self.shared.in_flight.increment(1.0);
        InFlight { metrics: Arc::clone(self) }
    }
}

/// A request counted in flight; counted out when dropped.
pub struct InFlight {
    metrics: Arc<RouteMetrics>,
}

impl InFlight {
    /// Counts the request out and records how it was answered.
    pub fn finish(self, method: &Method, status: StatusCode, elapsed: Duration) {
        let metrics = &self.metrics;
        metrics.shared.record(&metrics.recent, method, metrics.route, status, elapsed);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.metrics.shared.in_flight.decrement(1.0);
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
