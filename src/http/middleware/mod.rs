//! The middleware stack, outermost first. The order matters and is deliberate:
//!
//! 1. **observe** (`observe.rs`): `Authorization`, `Cookie` and `Set-Cookie` marked sensitive
//!    before anything could log them; the request id, so every later layer, log line and error
//!    body can name the request; then one span, one access-log line and the metrics per request;
//! 2. **compression**, when `server.compression` is on: outside the problem renderer, which must
//!    see uncompressed bodies;
//! 3. **CORS**: from configuration;
//! 4. **guard** (`guard.rs`): the timeout (a slow handler is dropped and the client gets 503),
//!    panic isolation (500, and the server keeps serving), and problem rendering (every error
//!    below becomes `application/problem+json`);
//! 5. **body limit**: enforced when a handler reads the body, so an oversized one gets 413.
//!
//! axum applies these layers to each route separately, so every layer is paid for on every
//! request; `observe` and `guard` are hand-written and gather several concerns each for that
//! reason.

mod guard;
mod observe;
mod problem;
mod request_id;
mod request_metrics;

use axum::Router;
use axum::body::Body;
use axum::extract::DefaultBodyLimit;
use axum::http::HeaderValue;
use axum::response::Response;
use tower::ServiceBuilder;
use tower_http::compression::{CompressionBody, CompressionLayer};
use tower_http::cors::{AllowOrigin, CorsLayer};

pub use request_id::{REQUEST_ID_HEADER, RequestId};

use crate::config::Settings;
use guard::GuardLayer;
use observe::ObserveLayer;

/// Wraps every route (and the fallbacks) of `router` in keel's middleware stack.
pub fn apply<S: Clone + Send + Sync + 'static>(router: Router<S>, settings: &Settings) -> Router<S> {
    let server = &settings.server;
    router.layer(
        ServiceBuilder::new()
            .layer(ObserveLayer::new(settings.metrics.enabled))
            .option_layer(
                server.compression.then(|| ServiceBuilder::new().map_response(box_body).layer(CompressionLayer::new())),
            )
            .option_layer(cors(&server.cors_allowed_origins))
            .layer(GuardLayer::new(server.request_timeout()))
            .layer(DefaultBodyLimit::max(server.body_limit_bytes)),
    )
}

/// A compressed response's body, boxed: the stack answers with one body type whether
/// compression is on or off.
fn box_body(response: Response<CompressionBody<Body>>) -> Response {
    response.map(Body::new)
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
