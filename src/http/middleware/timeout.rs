//! The request timeout. Past it the handler's future is dropped (so its work stops at its next
//! `.await`) and the client gets 503: the server was too slow, the client did nothing wrong, so
//! not 408. Only the response head is timed; a streaming body (Server-Sent Events) is not cut.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::http::error::ApiError;

pub async fn timeout(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::Timeout.into_response(),
    }
}
