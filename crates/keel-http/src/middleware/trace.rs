//! One `tracing` span per request, opened by tower-http's `TraceLayer`, and one access-log line
//! when the response head is ready.
//!
//! The span is named `request` and carries the request id, the method, the matched route (the
//! template, never the raw path, so that ids do not explode cardinality) and, once answered,
//! the status and the latency in milliseconds. Every line logged while the request is handled
//! (by a handler, by authentication, by the rate limiter, by the operation layer on submission)
//! is inside the span, so the log formats, and any other subscriber layer (OpenTelemetry,
//! Sentry, tokio-console), see which request it belongs to.
//!
//! Work a handler spawns runs outside the span unless it is carried along:
//! `tokio::spawn(work.instrument(tracing::Span::current()))`.

use std::time::Duration;

use axum::extract::Request;
use axum::http::Response;
use tower_http::trace::{MakeSpan, OnRequest, OnResponse};
use tracing::Span;
use tracing::field::Empty;

use super::request_id;
use crate::request::route_of;

/// Opens the `request` span.
#[derive(Clone, Copy, Default)]
pub struct RequestSpan;

impl MakeSpan<axum::body::Body> for RequestSpan {
    fn make_span(&mut self, request: &Request) -> Span {
        tracing::info_span!(
            "request",
            request_id = request_id::of(request).unwrap_or_default(),
            method = request.method().as_str(),
            route = route_of(request),
            status = Empty,
            latency_ms = Empty,
        )
    }
}

/// Logs `request started` at `debug`, inside the span: off unless asked for (`keel_http=debug`).
#[derive(Clone, Copy, Default)]
pub struct RequestStarted;

impl<B> OnRequest<B> for RequestStarted {
    fn on_request(&mut self, _: &axum::http::Request<B>, _: &Span) {
        tracing::debug!("request started");
    }
}

/// Records the status and latency on the span and writes the access line inside it: `info`,
/// or `warn` for a server error.
#[derive(Clone, Copy, Default)]
pub struct AccessLog;

impl<B> OnResponse<B> for AccessLog {
    fn on_response(self, response: &Response<B>, latency: Duration, span: &Span) {
        let status = response.status();
        // Whole microseconds: `0.052` rather than `0.052123000000000004`.
        let latency_ms = latency.as_micros() as f64 / 1000.0;
        span.record("status", status.as_u16());
        span.record("latency_ms", latency_ms);
        if status.is_server_error() {
            tracing::warn!("request finished");
        } else {
            tracing::info!("request finished");
        }
    }
}
