//! `x-request-id`: kept when the client sends a sane one, generated otherwise, put in the
//! request's span (see `trace.rs`) and echoed on the response, by tower-http's
//! `SetRequestIdLayer` and `PropagateRequestIdLayer`.
//!
//! An incoming id is untrusted input that lands in every log line of the request, so before
//! tower-http sees it, [`sanitise`] cuts it down to a safe alphabet and a bounded length; an id
//! with nothing usable left is removed, and a fresh one generated in its place.

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use tower_http::request_id::{MakeRequestId, RequestId};

pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The longest request id kept from a client.
const MAX_ID_LENGTH: usize = 64;

/// The request with its `x-request-id` made safe to log, or removed when nothing of it is.
pub fn sanitise(mut request: Request) -> Request {
    if let Some(raw) = request.headers().get(&REQUEST_ID_HEADER)
        && !is_sane(raw.as_bytes())
    {
        match sanitised(raw.as_bytes()) {
            Some(id) => request.headers_mut().insert(REQUEST_ID_HEADER, id),
            None => request.headers_mut().remove(REQUEST_ID_HEADER),
        };
    }
    request
}

fn is_safe(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b':')
}

fn is_sane(raw: &[u8]) -> bool {
    !raw.is_empty() && raw.len() <= MAX_ID_LENGTH && raw.iter().copied().all(is_safe)
}

/// Keeps the characters that are safe in logs and headers (`A-Z a-z 0-9 - _ . :`), at most 64
/// of them; `None` when nothing is left.
fn sanitised(raw: &[u8]) -> Option<HeaderValue> {
    let id: Vec<u8> = raw.iter().copied().filter(|byte| is_safe(*byte)).take(MAX_ID_LENGTH).collect();
    if id.is_empty() { None } else { HeaderValue::from_bytes(&id).ok() }
}

/// A fresh UUID v4 for a request that came without a usable id.
#[derive(Clone, Copy, Default)]
pub struct MakeUuid;

impl MakeRequestId for MakeUuid {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        let mut id = [0; uuid::fmt::Hyphenated::LENGTH];
        let id = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut id);
        HeaderValue::from_str(id).ok().map(RequestId::new)
    }
}

/// The id of a request that passed through keel's middleware.
pub fn of<B>(request: &axum::http::Request<B>) -> Option<&str> {
    request.headers().get(&REQUEST_ID_HEADER).and_then(|value| value.to_str().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(raw: &[u8]) -> Option<String> {
        sanitised(raw).map(|value| value.to_str().unwrap().to_owned())
    }

    #[test]
    fn keeps_a_sane_id() {
        assert!(is_sane(b"abc-123_x.y:z"));
        assert_eq!(id(b"abc-123_x.y:z").as_deref(), Some("abc-123_x.y:z"));
    }

    #[test]
    fn strips_characters_logs_should_not_carry_and_caps_length() {
        assert_eq!(id(b"a b\"c\n{d}").as_deref(), Some("abcd"));
        assert_eq!(id(&[b'x'; 500]).unwrap().len(), MAX_ID_LENGTH);
        assert_eq!(id("é∑".as_bytes()), None);
        assert_eq!(id(b""), None);
    }

    #[test]
    fn generates_a_uuid() {
        let request = axum::http::Request::new(());
        let made = MakeUuid.make_request_id(&request).unwrap();
        assert_eq!(made.header_value().len(), 36);
    }
}
