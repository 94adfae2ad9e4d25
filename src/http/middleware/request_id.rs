//! `x-request-id`: kept when the client sends a sane one, generated otherwise, echoed on the
//! response, and part of the request's [`RequestContext`](crate::telemetry::request::RequestContext):
//! the one place handlers, error bodies and log lines read it from.
//!
//! An incoming id is untrusted input that lands in every log line of the request, so it is cut
//! down to a safe alphabet and a bounded length (see [`RequestId::sanitised`]); an id with
//! nothing usable left is replaced.

use axum::extract::Request;
use axum::http::HeaderName;

pub use crate::telemetry::request::RequestId;

pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The id of `request`: the client's (sanitised) or a fresh one. The request's own
/// `x-request-id` header, if any, is left as the client sent it.
pub fn assign(request: &Request) -> RequestId {
    request
        .headers()
        .get(&REQUEST_ID_HEADER)
        .and_then(|value| RequestId::sanitised(value.as_bytes()))
        .unwrap_or_else(RequestId::generate)
}
