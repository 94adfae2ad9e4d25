//! axum's extractors, with rejections turned into [`ApiError`] so that a bad body or query gets
//! our problem+json instead of axum's plain text. Use these instead of `axum::Json` and
//! `axum::extract::{Query, Path}` in handlers.

use axum::extract::FromRequest;
use axum::extract::FromRequestParts;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;

use crate::http::error::ApiError;

/// A JSON body. Malformed JSON is 400, JSON of the wrong shape 422, a missing
/// `Content-Type: application/json` 415, a body over the limit 413.
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

/// A query string; anything that does not parse is 400.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

/// Path parameters; anything that does not parse is 404, as the resource cannot exist.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::JsonSyntaxError(e) => Self::InvalidRequest(e.body_text()),
            JsonRejection::JsonDataError(e) => Self::Unprocessable(e.body_text()),
            JsonRejection::MissingJsonContentType(_) => {
                Self::UnsupportedMediaType("expected `Content-Type: application/json`".to_owned())
            }
            e if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Self::PayloadTooLarge,
            e => Self::InvalidRequest(e.body_text()),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::InvalidRequest(rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::NotFound(rejection.body_text())
    }
}
