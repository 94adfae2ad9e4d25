//! `x-request-id`: kept when the client sends a sane one, generated otherwise, echoed on the
//! response, and available to handlers and logs as the [`RequestId`] extension.
//!
//! An incoming id is untrusted input that lands in every log line of the request, so it is cut
//! down to a safe alphabet and a bounded length; an id with nothing usable left is replaced.

use axum::body::Bytes;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};

pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");
const MAX_LENGTH: usize = 64;

/// The request's id, as a header value: cloning it shares one buffer, so the request header,
/// the extension, the response header and an error body all use the same bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(HeaderValue);

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
        HeaderValue::try_from(id).ok().filter(|value| !value.is_empty()).map(Self)
    }

    pub fn generate() -> Self {
        let mut id = [0; uuid::fmt::Hyphenated::LENGTH];
        uuid::Uuid::new_v4().hyphenated().encode_lower(&mut id);
        // Owned bytes rather than a copied `Vec`: cloning a `Bytes` made from a `Vec` allocates
        // the first time, and the id is cloned into the extension and the response.
        Self(
            HeaderValue::from_maybe_shared(Bytes::from_owner(id))
                .unwrap_or_else(|_| HeaderValue::from_static("unavailable")),
        )
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII ever goes in, so this never falls back.
        self.0.to_str().unwrap_or("")
    }

    pub fn header_value(&self) -> HeaderValue {
        self.0.clone()
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_a_sane_id() {
        assert_eq!(RequestId::sanitised(b"abc-123_x.y:z").unwrap().as_str(), "abc-123_x.y:z");
    }

    #[test]
    fn strips_unsafe_characters_and_caps_length() {
        assert_eq!(RequestId::sanitised(b"a b\"c\n{d}").unwrap().as_str(), "abcd");
        assert_eq!(RequestId::sanitised(&[b'x'; 500]).unwrap().as_str().len(), MAX_LENGTH);
        assert_eq!(RequestId::sanitised("é∑".as_bytes()), None);
        assert_eq!(RequestId::sanitised(b""), None);
    }

    #[test]
    fn generates_a_uuid() {
        assert_eq!(RequestId::generate().as_str().len(), 36);
    }
}
