//! `x-request-id`: kept when the client sends a sane one, generated otherwise, echoed on the
//! response, and available to handlers and logs as the [`RequestId`] extension.
//!
//! An incoming id is untrusted input that lands in every log line of the request, so it is cut
//! down to a safe alphabet and a bounded length; an id with nothing usable left is replaced.

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");
const MAX_LENGTH: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

impl RequestId {
    /// Keeps the characters that are safe in logs and headers (`A-Z a-z 0-9 - _ . :`), at most
    /// 64 of them; `None` when nothing is left.
    pub fn sanitised(raw: &[u8]) -> Option<Self> {
        let id: String = raw
            .iter()
            .copied()
            .filter(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
            .take(MAX_LENGTH)
            .map(char::from)
            .collect();
        (!id.is_empty()).then_some(Self(id))
    }

    pub fn generate() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }
}

pub async fn request_id(mut request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(&REQUEST_ID_HEADER)
        .and_then(|value| RequestId::sanitised(value.as_bytes()))
        .unwrap_or_else(RequestId::generate);
    // Sanitised ids are plain ASCII, so they are always valid header values.
    let header = HeaderValue::from_str(&id.0).unwrap_or_else(|_| HeaderValue::from_static("invalid"));
    request.headers_mut().insert(REQUEST_ID_HEADER, header.clone());
    request.extensions_mut().insert(id);
    let mut response = next.run(request).await;
    response.headers_mut().insert(REQUEST_ID_HEADER, header);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_a_sane_id() {
        assert_eq!(RequestId::sanitised(b"abc-123_x.y:z").unwrap().0, "abc-123_x.y:z");
    }

    #[test]
    fn strips_unsafe_characters_and_caps_length() {
        assert_eq!(RequestId::sanitised(b"a b\"c\n{d}").unwrap().0, "abcd");
        assert_eq!(RequestId::sanitised(&[b'x'; 500]).unwrap().0.len(), MAX_LENGTH);
        assert_eq!(RequestId::sanitised("é∑".as_bytes()), None);
        assert_eq!(RequestId::sanitised(b""), None);
    }
}
