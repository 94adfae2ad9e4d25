//! The middleware stack, outermost first. The order matters and is deliberate:
//!
//! 1. **observe** (`observe.rs`): `Authorization`, `X-API-Key`, `Cookie` and `Set-Cookie`
//!    marked sensitive before anything could log them; the request id and the matched route, so
//!    every later layer, log line and error body can name the request; then one access-log line
//!    and the metrics per request, and the hardening headers on every response (`hardening.rs`);
//! 2. **guard** (`guard.rs`): the timeout (a slow handler is dropped and the client gets 503),
//!    panic isolation (500, and the server keeps serving), problem rendering (every error
//!    below becomes `application/problem+json`) and the body limit (enforced when a handler
//!    reads the body, so an oversized one gets 413);
//! 3. **CORS**, when `server.cors_allowed_origins` is set;
//! 4. **compression**, when `server.compression` is on. Inside the problem renderer, which drops
//!    the encoding of any body it replaces;
//! 5. **authentication**, then **rate limits**, when on (`http/auth/`, `http/rate_limit.rs`,
//!    added by `http::app`): who the caller is, then whether it may call again so soon.
//!
//! observe and guard wrap the whole router, once: axum's `Router::layer` would wrap each route
//! on its own and clone the wrapped route for every request (see `route_table.rs`, which is how
//! observe knows the route outside the router). The optional layers go on with
//! `Router::layer`, so that they cost nothing when they are off.

mod guard;
mod hardening;
mod observe;
mod problem;
mod request_id;
mod request_metrics;
mod route_table;

use std::convert::Infallible;
use std::task::{Context, Poll};

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::Request;
use axum::http::HeaderValue;
use axum::response::Response;
use tower::{BoxError, Layer, Service};
use tower_http::compression::CompressionLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};

pub use request_id::{REQUEST_ID_HEADER, RequestId};
pub use route_table::UNMATCHED as UNMATCHED_ROUTE;

use crate::config::{LogFormat, Settings};
use guard::{Guard, GuardFuture, GuardLayer};
use observe::{Observe, ObserveFuture, ObserveLayer};

/// A router behind keel's middleware: what keel serves, and what tests send requests to with
/// `tower::ServiceExt::oneshot`. Cheap to clone.
#[derive(Clone)]
pub struct App {
    inner: Observe<Guard<Router>>,
    /// The client's address, on a connection's own copy, when something needs it (rate limits
    /// for anonymous callers): each request then carries it as a [`ClientAddr`].
    peer: Option<std::net::IpAddr>,
}

/// The address of the client that sent a request, as its TCP connection says (never a header a
/// client could forge).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub std::net::IpAddr);

impl App {
    /// This app, for one connection from `peer`: its requests carry [`ClientAddr`].
    pub fn for_peer(&self, peer: std::net::IpAddr) -> Self {
        Self { inner: self.inner.clone(), peer: Some(peer) }
    }
}

/// Puts `router` behind keel's middleware. `templates` are its routes (axum's syntax:
/// `/v1/operations/{id}`), which requests are labelled with in logs and metrics; a request to
/// a path that matches none of them is labelled `<unmatched>`.
pub fn apply<I, P>(mut router: Router, templates: I, settings: &Settings) -> App
where
    I: IntoIterator<Item = P>,
    P: AsRef<str>,
{
    let server = &settings.server;
    if server.compression {
        router = router.layer(CompressionLayer::new());
    }
    if let Some(cors) = cors(&server.cors_allowed_origins) {
        router = router.layer(cors);
    }
    let guard = GuardLayer::new(server.request_timeout(), server.body_limit_bytes);
    let open_spans = settings.log.format == LogFormat::Pretty;
    let observe = ObserveLayer::new(templates, settings.metrics.enabled, open_spans);
    App { inner: observe.layer(guard.layer(router)), peer: None }
}

impl<B> Service<Request<B>> for App
where
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = ObserveFuture<GuardFuture<<Router as Service<Request>>::Future>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        if let Some(peer) = self.peer {
            request.extensions_mut().insert(ClientAddr(peer));
        }
        // hyper's body, boxed once as axum would box it.
        self.inner.call(request.map(Body::new))
    }
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
