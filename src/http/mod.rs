//! The HTTP surface: routes, middleware and the error format. It uses the operation layer;
//! nothing there knows about HTTP.

pub mod error;
pub mod examples;
pub mod extract;
pub mod middleware;
pub mod routes;
pub mod state;

use axum::Router;
use axum::routing::get;

pub use state::AppState;

use crate::http::error::ApiError;

/// Every route keel serves, without middleware. Add an endpoint here.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(routes::root::root))
        .merge(routes::health::routes())
        .merge(routes::operations::routes())
        // Delete this line and the `examples` folder to drop the examples.
        .nest("/examples", examples::routes())
}

/// The application: `routes` behind keel's middleware stack, with problem+json for unknown
/// paths and methods. Tests pass extra routes through here to exercise the real stack.
pub fn app(routes: Router<AppState>, state: AppState) -> Router {
    let routes = routes
        .fallback(|| async { ApiError::NotFound("no route matches this path".to_owned()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed });
    middleware::apply(routes, &state.settings.server).with_state(state)
}

/// keel's router, ready to serve.
pub fn router(state: AppState) -> Router {
    app(routes(), state)
}
