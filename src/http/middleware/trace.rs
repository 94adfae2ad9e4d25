//! What each request tells operators: one span, one access-log line and its metrics. Logs and
//! metrics share this one pass because both need the matched route and the latency.
//!
//! The span carries the method, the matched route (the template, never the raw path, so ids do
//! not explode cardinality) and the request id, so every line logged while handling the request
//! can be tied back to it.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use super::request_id::RequestId;
use crate::telemetry::metrics as names;

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

pub async fn trace(request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map_or("<unmatched>", MatchedPath::as_str).to_owned();
    let request_id = request.extensions().get::<RequestId>().map_or("", |id| id.0.as_str()).to_owned();
    let span = tracing::info_span!("request", method = %request.method(), route = %route, request_id = %request_id);
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    async move {
        tracing::debug!("request started");
        let in_flight = InFlight::enter();
        let response = next.run(request).await;
        drop(in_flight);
        let status = response.status().as_u16();
        let elapsed = started.elapsed().as_secs_f64();
        let latency_ms = elapsed * 1000.0;
        metrics::counter!(names::HTTP_REQUESTS, "method" => method.clone(), "route" => route.clone(), "status" => status.to_string())
            .increment(1);
        metrics::histogram!(names::HTTP_REQUEST_DURATION, "method" => method, "route" => route).record(elapsed);
        if response.status().is_server_error() {
            tracing::warn!(status, latency_ms, "request finished");
        } else {
            tracing::info!(status, latency_ms, "request finished");
        }
        response
    }
    .instrument(span)
    .await
}
