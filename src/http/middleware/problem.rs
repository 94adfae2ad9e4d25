//! The one place where error responses get their body.
//!
//! A [`Problem`] attached to a response (by `ApiError` or `Problem::into_response`) is written
//! out here with the request id. An error response that carries no problem (made by a layer or
//! a framework default) is replaced by one for its status, so that every error a client sees is
//! `application/problem+json`, whoever produced it.

use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::Response;

use crate::http::error::{PROBLEM_JSON, Problem};
use crate::telemetry::request::RequestContext;

/// Writes out the problem attached to `response`, or one for an unrendered error status, with
/// the current request's id; passes anything else through untouched.
pub fn render(mut response: Response) -> Response {
    let problem = match response.extensions_mut().remove::<Problem>() {
        Some(problem) => problem,
        None if is_unrendered_error(&response) => Problem::for_status(response.status()),
        None => return response,
    };
    let request_id = RequestContext::with_current(|request| request.map(|request| request.id.as_str().to_owned()));
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
