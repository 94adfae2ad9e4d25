//! `x-request-id`: kept when the client sends a sane one, generated otherwise, echoed on the
//! response, and available to handlers as the [`RequestId`] extension and to the logs through
//! the request's context.
//!
//! An incoming id is untrusted input that lands in every log line of the request, so it is cut
//! down to a safe alphabet and a bounded length (see [`RequestId::sanitised`]); an id with
//! nothing usable left is replaced.

use axum::extract::Request;
use axum::http::HeaderName;

pub use crate::telemetry::request::RequestId;

pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Gives `request` its id, the client's (sanitised) or a fresh one, as the [`RequestId`]
/// extension: what handlers, error bodies and anything forwarding the request should use. The
/// request's own `x-request-id` header, if any, is left as the client sent it.
pub fn assign(request: &mut Request) -> RequestId {
    let id = request
        .headers()
        .get(&REQUEST_ID_HEADER)
        .and_then(|value| RequestId::sanitised(value.as_bytes()))
        .unwrap_or_else(RequestId::generate);
    request.extensions_mut().insert(id.clone());
    id
}
