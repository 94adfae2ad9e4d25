//! axum's extractors, with rejections turned into [`ApiError`] so that a bad body or query gets
//! our problem+json instead of axum's plain text. Use these instead of `axum::Json` and
//! `axum::extract::{Query, Path}` in handlers.

use axum::extract::FromRequest;
use axum::extract::FromRequestParts;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;

use crate::error::ApiError;
use keel_operations::kind::whole_float_as_integer;

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

/// An optional whole number of a JSON body, sent as `476` or as `476.0`: JSON Schema's `integer`
/// takes both, and so do generated clients; serde's `u64` takes only the first. Use with
/// `#[serde(default, deserialize_with = "whole_number")]` on an `Option<u64>` field.
pub fn whole_number<'de, D>(deserializer: D) -> Result<Option<u64>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    use serde::Deserialize;
    use serde::de::Error;
    let Some(number) = Option::<serde_json::Number>::deserialize(deserializer)? else { return Ok(None) };
    number
        .as_u64()
        .or_else(|| whole_float_as_integer(&number).and_then(|whole| whole.as_u64()))
        .map(Some)
        .ok_or_else(|| D::Error::custom(format!("invalid value: {number}, expected a whole number of at least 0")))
}

/// An optional count from a query string, of any size: digits (a `.0` fraction allowed), and a
/// number past `usize` taken as `usize::MAX`, for a parameter whose large values are lowered to
/// a maximum anyway (`page_size`, as AIP-158 asks). Anything else is refused.
pub fn saturating_count<'de, D>(deserializer: D) -> Result<Option<usize>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    use serde::Deserialize;
    use serde::de::Error;
    let Some(text) = Option::<String>::deserialize(deserializer)? else { return Ok(None) };
    let digits = match text.split_once('.') {
        Some((whole, fraction)) if !fraction.is_empty() && fraction.bytes().all(|b| b == b'0') => whole,
        Some(_) => "",
        None => text.as_str(),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(D::Error::custom(format!("invalid value: {text:?}, expected a whole number")));
    }
    Ok(Some(digits.parse::<usize>().unwrap_or(usize::MAX)))
}

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
