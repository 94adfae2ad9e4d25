//! The middleware stack: tower-http's layers, in this order, outermost first.
//!
//! 1. `Authorization`, `X-API-Key` and `Cookie` marked sensitive (`SetSensitiveRequestHeadersLayer`)
//!    before anything could log them;
//! 2. the request id: a client's sanitised (`request_id.rs`), or a fresh UUID
//!    (`SetRequestIdLayer`);
//! 3. **problem rendering** (`problem.rs`): every error response leaves as
//!    `application/problem+json`, with the request id;
//! 4. the request id echoed on the response (`PropagateRequestIdLayer`), and the hardening headers
//!    (`hardening.rs`);
//! 5. **the request's span and access line** (`TraceLayer`, `trace.rs`);
//! 6. the request metrics, when `metrics.enabled` (`request_metrics.rs`);
//! 7. **panic isolation** (`CatchPanicLayer`): a panicking handler becomes a 500 problem, the panic
//!    is logged, never sent, and the server keeps serving;
//! 8. CORS, when `server.cors_allowed_origins` is set (before access control, so that a preflight
//!    request needs no credential);
//! 9. authentication, then rate limits, when on ([`Access`]; `http/auth/`, `http/rate_limit.rs`):
//!    who the caller is, then whether it may call again so soon. A caller that may not call is
//!    refused before its body is read;
//! 10. **the body limit** (`RequestBodyLimitLayer`): a `Content-Length` over
//!     `server.body_limit_bytes` is refused with 413 before the body is read (and before any
//!     `100 Continue`), a body that grows past it while read too;
//! 11. **the timeout** (`TimeoutLayer`): past `server.request_timeout_ms` the handler's future is
//!     dropped and the client gets 503 (the server was slow; the client did nothing wrong, so not
//!     408). Only the response head is timed; a streaming body (SSE) is not cut;
//! 12. compression, when `server.compression` is on (inside the problem renderer, which drops the
//!     encoding of any body it replaces).
//!
//! The layers go on with `Router::layer`, so they run after routing: axum's `MatchedPath` is
//! known to all of them, and a handler can extract it, `OriginalUri` and the rest as usual.

mod hardening;
mod problem;
pub mod request_id;
mod request_metrics;
mod trace;

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::header::{self, HeaderName};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tower::{BoxError, ServiceBuilder};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::{SetSensitiveRequestHeadersLayer, SetSensitiveResponseHeadersLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

pub use hardening::docs as docs_headers;
pub use request_id::REQUEST_ID_HEADER;

use crate::auth::{API_KEY_HEADER, Authenticator, PublicRoutes, authenticate};
use crate::error::ApiError;
use crate::rate_limit::{self, RateLimits};
use crate::request::ClientAddr;
use keel_config::Settings;
use keel_telemetry::panic_message;

/// A router behind keel's middleware: what keel serves, and what tests send requests to with
/// `tower::ServiceExt::oneshot`. Cheap to clone.
#[derive(Clone)]
pub struct App {
    router: Router,
    /// The client's address, on a connection's own copy, when something needs it (rate limits
    /// for anonymous callers): each request then carries it as a [`ClientAddr`].
    peer: Option<std::net::IpAddr>,
}

impl App {
    /// This app, for one connection from `peer`: its requests carry [`ClientAddr`].
    pub fn for_peer(&self, peer: std::net::IpAddr) -> Self {
        Self { router: self.router.clone(), peer: Some(peer) }
    }
}

/// Headers that carry credentials: never printed by any layer that logs headers.
const SENSITIVE: [HeaderName; 4] = [header::AUTHORIZATION, header::COOKIE, header::SET_COOKIE, API_KEY_HEADER];

/// Who may call, checked innermost (each only when on): authentication, then rate limits, which
/// need the caller it finds.
#[derive(Default)]
pub struct Access {
    pub auth: Option<Arc<Authenticator>>,
    pub rate_limits: Option<Arc<RateLimits>>,
    /// The routes that need no caller, and count against no rate limit.
    pub public: PublicRoutes,
}

/// Puts `router` behind keel's middleware, with no access control.
pub fn apply(router: Router, settings: &Settings) -> App {
    apply_with_access(router, settings, Access::default())
}

/// Puts `router` behind keel's middleware and `access`.
pub fn apply_with_access(mut router: Router, settings: &Settings, access: Access) -> App {
    let server = &settings.server;
    // Only when on, so that it costs nothing when off. Innermost, as it changes the body's type.
    if server.compression {
        router = router.layer(CompressionLayer::new());
    }
    // The rest in one `Router::layer`: each call wraps every route in a boxed service of its own.
    let stack = ServiceBuilder::new()
        .layer(SetSensitiveRequestHeadersLayer::new(SENSITIVE))
        .map_request(request_id::sanitise)
        .layer(SetRequestIdLayer::new(REQUEST_ID_HEADER, request_id::MakeUuid))
        .map_response(problem::render)
        .layer(PropagateRequestIdLayer::new(REQUEST_ID_HEADER))
        .layer(SetSensitiveResponseHeadersLayer::new([header::SET_COOKIE]))
        .layer(hardening::api())
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(trace::RequestSpan)
                .on_request(trace::RequestStarted)
                .on_response(trace::AccessLog)
                .on_body_chunk(())
                .on_eos(())
                .on_failure(()),
        )
        .option_layer(settings.metrics.enabled.then(request_metrics::RecordLayer::new))
        .layer(CatchPanicLayer::custom(panicked))
        // Outside access control, so that a preflight request needs no credential.
        .option_layer(cors(&server.cors_allowed_origins))
        .option_layer(
            access.auth.map(|auth| axum::middleware::from_fn_with_state((auth, access.public.clone()), authenticate)),
        )
        .option_layer(
            access
                .rate_limits
                .map(|limits| axum::middleware::from_fn_with_state((limits, access.public), rate_limit::limit)),
        )
        // Whichever of those are on, the service below them answers with axum's body.
        .map_response(boxed_body)
        .layer(RequestBodyLimitLayer::new(server.body_limit_bytes))
        .layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, server.request_timeout()))
        // axum's extractors apply a default limit of their own unless told: the same one.
        .layer(DefaultBodyLimit::max(server.body_limit_bytes));
    App { router: router.layer(stack), peer: None }
}

fn boxed_body<B>(response: Response<B>) -> Response
where
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    response.map(Body::new)
}

/// A panic caught by `CatchPanicLayer`: the panic hook has logged it with its location (see
/// `telemetry`); the client gets a 500 problem without the message.
fn panicked(payload: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::Internal(format!("handler panicked: {}", panic_message(payload.as_ref()))).into_response()
}

impl<B> tower::Service<axum::http::Request<B>> for App
where
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = axum::routing::future::RouteFuture<Infallible>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        <Router as tower::Service<Request>>::poll_ready(&mut self.router, cx)
    }

    fn call(&mut self, mut request: axum::http::Request<B>) -> Self::Future {
        if let Some(peer) = self.peer {
            request.extensions_mut().insert(ClientAddr(peer));
        }
        self.router.call(request.map(Body::new))
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
