//! One span per request and one access-log line when the response head is ready.
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

pub async fn trace(request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map_or("<unmatched>", MatchedPath::as_str).to_owned();
    let request_id = request.extensions().get::<RequestId>().map_or("", |id| id.0.as_str()).to_owned();
    let span = tracing::info_span!("request", method = %request.method(), route = %route, request_id = %request_id);
    let started = Instant::now();
    async move {
        tracing::debug!("request started");
        let response = next.run(request).await;
        let status = response.status().as_u16();
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
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
