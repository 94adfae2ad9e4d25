//! This service's HTTP routes, beside the platform's (`keel_http::routes()`: the operations API
//! and the health probes). Add an endpoint: a handler in a file of its own here, with its
//! `#[utoipa::path]`, and one `.routes(routes!(...))` line in [`routes()`].

pub mod examples;
pub mod root;

use keel_http::AppState;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::config::ServiceSettings;

/// Every route this service serves, the platform's included, without middleware. `_service` is
/// this service's own settings, for the handlers that need them
/// (docs/guides/add-a-configuration-key.md).
pub fn routes(_service: &ServiceSettings) -> OpenApiRouter<AppState> {
    keel_http::routes()
        .routes(routes!(root::root))
        // The examples: delete this line and `pub mod examples;` to drop them
        // (docs/guides/remove-the-examples.md says what else goes with them).
        .nest("/examples", examples::routes())
}
