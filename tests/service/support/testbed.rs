//! The service the tests run: its routes and keel's operation layer, with the testkit's
//! operation kinds (`keel_operations::testkit::kinds`) and one route of the tests' own instead of
//! the demo kinds and the examples. The tests exercise the layer and the middleware through
//! these, so they keep passing when you delete `src/kinds/demo/` or `src/routes/examples/`
//! (docs/guides/ do).
//!
//! The kinds take the demo kinds' names and inputs (`sleep`, `fail`, `panic`, `flaky`), plus
//! `whoami`; only the tests of the demo kinds themselves (`demo_kinds.rs`) use the real registry.

use std::time::Duration;

use keel_http::AppState;
use keel_http::error::ApiError;
use keel_http::extract::Query;
use keel_operations::Registry;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The service's documented routes, plus `GET /testbed/sleep`.
pub fn routes() -> OpenApiRouter<AppState> {
    keel::routes::routes(&Default::default()).routes(routes!(sleep))
}

/// The tests' operation kinds.
pub fn registry() -> Registry {
    keel_operations::testkit::kinds::registry()
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct SleepParams {
    /// How long to take, in milliseconds.
    #[param(maximum = 600_000)]
    ms: u64,
}

/// Answers after `ms`: a slow handler, for timeouts and draining.
#[utoipa::path(get, path = "/testbed/sleep", params(SleepParams), responses((status = 200, body = String)))]
async fn sleep(Query(params): Query<SleepParams>) -> Result<String, ApiError> {
    if params.ms > 600_000 {
        return Err(ApiError::InvalidRequest("`ms` must be at most 600000".to_owned()));
    }
    tracing::info!(ms = params.ms, "napping");
    tokio::time::sleep(Duration::from_millis(params.ms)).await;
    Ok(format!("slept {} ms", params.ms))
}
