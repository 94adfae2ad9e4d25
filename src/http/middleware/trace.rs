//! One span per request, one access-log line and the request's metrics. Logs and metrics
//! share this pass because both need the matched route and the latency.
//!
//! The span carries the method, the matched route (the template, never the raw path, so ids do
//! not explode cardinality) and the request id, so every line logged while handling the request
//! can be tied back to it.

use std::future::Future;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::response::Response;
use tracing::{Instrument, Span};

use super::request_id::RequestId;
use crate::telemetry::metrics as names;

pub struct Observation {
    span: Span,
    method: String,
    route: String,
    started: Instant,
}

impl Observation {
    pub fn start(request: &Request, id: &RequestId) -> Self {
        let route = request.extensions().get::<MatchedPath>().map_or("<unmatched>", MatchedPath::as_str).to_owned();
        let method = request.method().as_str().to_owned();
        let span = tracing::info_span!("request", method = %method, route = %route, request_id = %id.as_str());
        Self { span, method, route, started: Instant::now() }
    }

    /// Runs `response` inside the request's span, then logs and counts it.
    pub async fn finish_with(self, response: impl Future<Output = Response>) -> Response {
        let Self { span, method, route, started } = self;
        async move {
            tracing::debug!("request started");
            let in_flight = InFlight::enter();
            let response = response.await;
            drop(in_flight);
            let status = response.status().as_u16();
            let elapsed = started.elapsed().as_secs_f64();
            let latency_ms = elapsed * 1000.0;
            if response.status().is_server_error() {
                tracing::warn!(status, latency_ms, "request finished");
            } else {
                tracing::info!(status, latency_ms, "request finished");
            }
            metrics::counter!(names::HTTP_REQUESTS, "method" => method.clone(), "route" => route.clone(), "status" => status.to_string())
                .increment(1);
            metrics::histogram!(names::HTTP_REQUEST_DURATION, "method" => method, "route" => route).record(elapsed);
            response
        }
        .instrument(span)
        .await
    }
}

/// Counts a request in flight until dropped, so a request whose client went away (its future
/// dropped mid-way) is counted out too.
struct InFlight;

impl InFlight {
    fn enter() -> Self {
        metrics::gauge!(names::HTTP_REQUESTS_IN_FLIGHT).increment(1.0);
        Self
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        metrics::gauge!(names::HTTP_REQUESTS_IN_FLIGHT).decrement(1.0);
    }
}
