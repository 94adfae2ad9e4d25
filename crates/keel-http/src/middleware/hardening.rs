//! Headers every response carries so that a browser treats keel's answers as what they are:
//!
//! - `X-Content-Type-Options: nosniff` everywhere: a JSON body is never run as a script or
//!   rendered as a page because it happens to look like one;
//! - `Cache-Control: no-store` on the API: operations, their results and errors are per-caller,
//!   current state, which no shared cache or browser should keep;
//! - on the docs page, a `Content-Security-Policy` that lets Swagger UI's own files (served from
//!   the binary, see `http/mod.rs`) run and fetch `/openapi.json`, and nothing else: no other
//!   origin, no inline script, no framing; and `Cache-Control: no-cache`.
//!
//! A handler that sets one of these itself keeps its own (tower-http's `SetResponseHeaderLayer`
//! with `if_not_present`).

use axum::Router;
use axum::http::HeaderValue;
use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, X_CONTENT_TYPE_OPTIONS};
use tower::ServiceBuilder;
use tower::layer::util::{Identity, Stack};
use tower_http::set_header::SetResponseHeaderLayer;

/// The API's headers, for the whole application.
pub type ApiHeaders = Stack<SetResponseHeaderLayer<HeaderValue>, Stack<SetResponseHeaderLayer<HeaderValue>, Identity>>;

pub fn api() -> ServiceBuilder<ApiHeaders> {
    ServiceBuilder::new()
        .layer(SetResponseHeaderLayer::if_not_present(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")))
        .layer(SetResponseHeaderLayer::if_not_present(CACHE_CONTROL, HeaderValue::from_static("no-store")))
}

/// Swagger UI needs inline styles (its components set `style` attributes) and `data:` images
/// (its icons); its scripts are files of the same origin.
const DOCS_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; font-src 'self' data:; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// The docs page's router with its own headers.
pub fn docs<S: Clone + Send + Sync + 'static>(docs: Router<S>) -> Router<S> {
    docs.layer(SetResponseHeaderLayer::if_not_present(CONTENT_SECURITY_POLICY, HeaderValue::from_static(DOCS_POLICY)))
        .layer(SetResponseHeaderLayer::if_not_present(CACHE_CONTROL, HeaderValue::from_static("no-cache")))
}
