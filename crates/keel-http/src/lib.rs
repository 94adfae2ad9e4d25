//! keel's HTTP platform: everything between a socket and a service's handlers, and the
//! operations API on top of `keel-operations`.
//!
//! - [`server`]: start-up and serving: [`server::Application`] binds, serves connections
//!   ([`connections`]: HTTP/1.1 and HTTP/2, header and idle timeouts, a connection cap) and
//!   drains on shutdown; [`server::serve`] is what a service's `main` calls;
//! - [`middleware`]: the stack every request goes through, tower-http layers in one
//!   `ServiceBuilder` (request ids, a `tracing` span per request, metrics, panics, CORS, auth,
//!   rate limits, body limits, timeouts);
//! - [`auth`] and [`rate_limit`]: who the caller is (API keys, JWT) and how much it may ask;
//! - [`error`]: every error as `application/problem+json`, mapped in one place ([`ApiError`]);
//! - [`extract`]: `Json`, `Query`, `Path` whose rejections are problem+json too;
//! - [`routes`](mod@routes): the operations API (`/v1/operations`), the health probes and
//!   `/metrics`; [`state`]: what handlers share ([`AppState`]); [`lifecycle`]: ready, draining;
//! - [`openapi`]: the OpenAPI document, with what only start-up knows (kinds, limits, auth);
//! - [`request`] and [`location`]: the route a request matched, its client's address, and the
//!   absolute URLs keel hands out.
//!
//! A service adds its own routes to [`routes()`] and hands them to [`app`] (or to
//! [`server::serve`]); its handlers take [`AppState`] and return `Result<_, ApiError>`. This crate
//! knows no service's routes or kinds.
//!
//! ```ignore
//! let routes = keel_http::routes().routes(utoipa_axum::routes!(my_handler));
//! keel_http::server::serve(settings, my_kinds::registry(), routes)?; // until SIGTERM, then drains
//! ```

#![forbid(unsafe_code)]

pub mod auth;
pub mod connections;
pub mod error;
pub mod extract;
pub mod lifecycle;
pub mod location;
pub mod middleware;
pub mod openapi;
pub mod rate_limit;
pub mod request;
pub mod routes;
pub mod server;
pub mod state;

use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::SwaggerUi;

pub use error::ApiError;
pub use middleware::App;
pub use state::{AppState, Shared};

use crate::routes::{health, metrics, operations};

/// The platform's documented routes, without middleware: the operations API and the health
/// probes. A service adds its own with `.routes(routes!(handler))`, which registers the handler
/// and its `#[utoipa::path]` documentation together.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(operations::submit, operations::list))
        .routes(routes!(operations::fetch, operations::remove))
        .routes(routes!(operations::wait))
        .routes(routes!(operations::cancel))
        .routes(routes!(operations::events))
}

/// Where the docs page and the document it shows are served.
pub(crate) const DOCS_PATH: &str = "/docs";
const DOCUMENT_PATH: &str = "/openapi.json";

/// The application: `routes` (plus `/metrics` unless it has a port of its own) behind keel's
/// middleware stack, the OpenAPI document at `/openapi.json`, its docs page at `/docs`, and
/// problem+json for unknown paths and methods.
pub fn app(routes: OpenApiRouter<AppState>, state: AppState) -> App {
    let metrics = &state.settings.metrics;
    let routes =
        if metrics.enabled && metrics.port.is_none() { routes.routes(routes!(metrics::metrics)) } else { routes };
    let (router, api) = routes.split_for_parts();
    let (document, public) = openapi::document(api, &state.settings, state.executor.registry());
    let router = router
        .merge(middleware::docs_headers(
            SwaggerUi::new(DOCS_PATH).external_url_unchecked(DOCUMENT_PATH, document).into(),
        ))
        .fallback(|| async { ApiError::NotFound("no route matches this path".to_owned()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed });
    let router = router.with_state(state.clone());
    let access = middleware::Access {
        auth: state.auth.clone(),
        rate_limits: rate_limit::RateLimits::from_settings(&state.settings.rate_limit),
        public,
    };
    middleware::apply_with_access(router, &state.settings, access)
}

/// The application for a separate metrics port: `/metrics` alone, with the same middleware.
pub fn metrics_app(state: AppState) -> App {
    let (router, _) = OpenApiRouter::new().routes(routes!(metrics::metrics)).split_for_parts();
    let router = router
        .fallback(|| async { ApiError::NotFound("this port serves /metrics only".to_owned()) })
        .with_state(state.clone());
    middleware::apply(router, &state.settings)
}
