//! The innermost middleware: what keeps one request from hurting the service or the client.
//!
//! - **timeout**: past the request timeout the handler's future is dropped (its work stops at
//!   its next `.await`) and the client gets 503: the server was slow, the client did nothing
//!   wrong, so not 408. Only the response head is timed; a streaming body (SSE) is not cut.
//! - **panic isolation**: a panicking handler becomes a 500 problem; the panic message is
//!   logged, never sent; the server keeps serving.
//! - **problem rendering**: every error response leaves as `application/problem+json`.
//!
//! One middleware for the three, for the reason given in `observe.rs`.

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt;

use super::problem;
use super::request_id::RequestId;
use crate::blocking::panic_message;
use crate::http::error::ApiError;

pub async fn guard(State(timeout): State<Duration>, request: Request, next: Next) -> Response {
    let request_id = request.extensions().get::<RequestId>().cloned();
    let response = match tokio::time::timeout(timeout, AssertUnwindSafe(next.run(request)).catch_unwind()).await {
        Ok(Ok(response)) => response,
        Ok(Err(payload)) => {
            ApiError::Internal(format!("handler panicked: {}", panic_message(payload.as_ref()))).into_response()
        }
        Err(_) => ApiError::Timeout.into_response(),
    };
    problem::render(response, request_id.as_ref())
}
