//! The middleware stack, outermost first. The order matters and is deliberate:
//!
//! 1. **sensitive headers**: `Authorization`, `Cookie` and `Set-Cookie` are marked sensitive before
//!    anything could log them;
//! 2. **request id**: every later layer, log line and error body can name the request;
//! 3. **trace**: one span and one access-log line per request, with the final status;
//! 4. **compression**: outside the problem renderer, which must see uncompressed bodies;
//! 5. **CORS**: from configuration;
//! 6. **problem renderer**: every error below becomes `application/problem+json`;
//! 7. **panic isolation**: a panicking handler becomes a 500 problem; the server keeps serving;
//! 8. **timeout**: a slow handler is dropped and the client gets 503;
//! 9. **body limit**: enforced when a handler reads the body, so an oversized one gets 413.

mod problem;
mod request_id;
mod timeout;
mod trace;

use std::any::Any;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::sensitive_headers::SetSensitiveHeadersLayer;

pub use request_id::{REQUEST_ID_HEADER, RequestId};

use crate::blocking::panic_message;
use crate::config::ServerSettings;
use crate::http::error::ApiError;

/// Wraps every route (and the fallbacks) of `router` in keel's middleware stack.
pub fn apply<S: Clone + Send + Sync + 'static>(router: Router<S>, settings: &ServerSettings) -> Router<S> {
    router.layer(
        ServiceBuilder::new()
            .layer(SetSensitiveHeadersLayer::new([header::AUTHORIZATION, header::COOKIE, header::SET_COOKIE]))
            .layer(axum::middleware::from_fn(request_id::request_id))
            .layer(axum::middleware::from_fn(trace::trace))
            .layer(CompressionLayer::new())
            .option_layer(cors(&settings.cors_allowed_origins))
            .layer(axum::middleware::from_fn(problem::render_problems))
            .layer(CatchPanicLayer::custom(panic_response))
            .layer(axum::middleware::from_fn_with_state(settings.request_timeout(), timeout::timeout))
            .layer(DefaultBodyLimit::max(settings.body_limit_bytes)),
    )
}

fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        // Validated at start-up, so every origin parses.
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(CorsLayer::new().allow_origin(allow).allow_methods(tower_http::cors::Any).allow_headers(tower_http::cors::Any))
}

/// Logs the panic message (server-side detail) and answers a generic 500 problem.
fn panic_response(payload: Box<dyn Any + Send + 'static>) -> Response {
    let message = panic_message(payload.as_ref());
    ApiError::Internal(format!("handler panicked: {message}")).into_response()
}
