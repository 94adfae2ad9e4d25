//! The one place where error responses get their body.
//!
//! A [`Problem`] attached to a response (by `ApiError` or `Problem::into_response`) is written
//! out here with the request id. An error response that carries no problem (made by a layer or
//! a framework default: tower-http's timeout, body limit and panic catcher, axum's rejections)
//! is replaced by one for its status (see [`Problem::for_status`]), so that every error a client
//! sees is `application/problem+json`, whoever produced it.
//!
//! It runs outside `PropagateRequestIdLayer`, so the response already carries its
//! `x-request-id`, which the problem repeats.

use axum::body::{Body, Bytes, HttpBody};
use axum::http::{HeaderValue, header};
use axum::response::Response;
use tower::BoxError;

use super::request_id::REQUEST_ID_HEADER;
use crate::error::{PROBLEM_JSON, Problem};

/// Writes out the problem attached to `response`, or one for an unrendered error status, with
/// the current request's id; passes anything else through untouched.
pub fn render<B>(response: Response<B>) -> Response
where
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let mut response = response.map(Body::new);
    let problem = match response.extensions_mut().remove::<Problem>() {
        Some(problem) => problem,
        None if is_unrendered_error(&response) => Problem::for_status(response.status()),
        None => return response,
    };
    let request_id = response.headers().get(&REQUEST_ID_HEADER).and_then(|id| id.to_str().ok()).map(str::to_owned);
    write(response, Problem { request_id, ..problem })
}

fn is_unrendered_error(response: &Response) -> bool {
    let status = response.status();
    (status.is_client_error() || status.is_server_error())
        && response.headers().get(header::CONTENT_TYPE).is_none_or(|ct| ct != PROBLEM_JSON)
}

fn write(response: Response, problem: Problem) -> Response {
    let (mut parts, _) = response.into_parts();
    let body = serde_json::to_vec(&problem).unwrap_or_else(|_| b"{}".to_vec());
    parts.status = problem.status_code();
    // The headers that described the old body: its length, and the encoding compression gave it.
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::CONTENT_ENCODING);
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    if let Some(secs) = problem.retry_after_secs {
        parts.headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    Response::from_parts(parts, Body::from(body))
}
