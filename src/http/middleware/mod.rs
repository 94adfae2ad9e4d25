//! The middleware stack, outermost first. The order matters and is deliberate:
//!
//! 1. **observe** (`observe.rs`): `Authorization`, `Cookie` and `Set-Cookie` marked sensitive
//!    before anything could log them; the request id, so every later layer, log line and error
//!    body can name the request; then one span, one access-log line and the metrics per request;
//! 2. **compression**, when `server.compression` is on: outside the problem renderer, which must
//!    see uncompressed bodies;
//! 3. **CORS**: from configuration;
//! 4. **guard** (`guard.rs`): the timeout (a slow handler is dropped and the client gets 503),
//!    panic isolation (500, and the server keeps serving), problem rendering (every error
//!    below becomes `application/problem+json`) and the body limit (enforced when a handler
//!    reads the body, so an oversized one gets 413).
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
use axum::http::HeaderValue;
use tower::ServiceBuilder;
use tower_http::compression::CompressionLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};

pub use request_id::{REQUEST_ID_HEADER, RequestId};

use crate::config::Settings;
use guard::GuardLayer;
use observe::ObserveLayer;

/// Wraps every route (and the fallbacks) of `router` in keel's middleware stack.
///
/// The optional layers (compression, CORS) are off by default. When they are off the whole stack
/// goes on in one `Router::layer`; an optional layer spliced in with `option_layer` would cost
/// every request a branch and a larger future even when off (about 300 instructions of a
/// `GET /` for the two). When one is on, the stack goes on in parts, one `Router::layer` each,
/// in the same order.
pub fn apply<S: Clone + Send + Sync + 'static>(router: Router<S>, settings: &Settings) -> Router<S> {
    let server = &settings.server;
    let observe = ObserveLayer::new(settings.metrics.enabled);
    let guard = GuardLayer::new(server.request_timeout(), server.body_limit_bytes);
    let cors = cors(&server.cors_allowed_origins);
    if cors.is_none() && !server.compression {
        return router.layer(ServiceBuilder::new().layer(observe).layer(guard));
    }
    let mut router = router.layer(guard);
    if let Some(cors) = cors {
        router = router.layer(cors);
    }
    if server.compression {
        router = router.layer(CompressionLayer::new());
    }
    router.layer(observe)
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
