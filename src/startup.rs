//! The wiring `main` and the tests share: this service's kinds and routes on keel's server.
//! Each function records `keel_build_info` (this service's version) before it builds.

use std::sync::Arc;

use keel_config::Settings;
use keel_http::server::StartupError;
use keel_http::{App, AppState};
use keel_operations::{OperationStore, Registry};
use utoipa_axum::router::OpenApiRouter;

pub use keel_http::server::Application;

use crate::config::ServiceSettings;
use crate::{kinds, routes};

/// Serves until SIGTERM or Ctrl-C, then drains: what `keel serve` runs.
pub fn serve(settings: Settings) -> Result<(), String> {
    let service = ServiceSettings::from_settings(&settings).map_err(|error| error.to_string())?;
    record_build_info(&settings);
    keel_http::server::serve(settings, kinds::registry(), routes::routes(&service))
}

/// The application with this service's kinds and routes, listening but not yet serving.
pub async fn application(settings: Settings) -> Result<Application, StartupError> {
    let service = ServiceSettings::from_settings(&settings)?;
    application_with(settings, kinds::registry(), routes::routes(&service)).await
}

/// [`application`] with the given kinds and routes (the tests' own, for example).
pub async fn application_with(
    settings: Settings,
    registry: Registry,
    routes: OpenApiRouter<AppState>,
) -> Result<Application, StartupError> {
    record_build_info(&settings);
    Application::build_with(settings, registry, routes).await
}

/// The shared state around the in-memory store, for in-process requests; needs a tokio runtime.
pub fn build_state(settings: Settings, registry: Registry) -> AppState {
    record_build_info(&settings);
    keel_http::server::build_state(settings, registry)
}

/// The shared state around `store`.
pub fn build_state_with_store(settings: Settings, registry: Registry, store: Arc<dyn OperationStore>) -> AppState {
    record_build_info(&settings);
    keel_http::server::build_state_with_store(settings, registry, store)
}

/// This service's routes behind keel's middleware, around `state`, in-process.
pub fn router(state: AppState) -> Result<App, StartupError> {
    let service = ServiceSettings::from_settings(&state.settings)?;
    Ok(keel_http::app(routes::routes(&service), state))
}

/// `keel_build_info`: this service's version and the commit it was built from (build.rs).
fn record_build_info(settings: &Settings) {
    if settings.metrics.enabled {
        keel_telemetry::metrics::record_build_info(env!("CARGO_PKG_VERSION"), env!("KEEL_GIT_COMMIT"));
    }
}
