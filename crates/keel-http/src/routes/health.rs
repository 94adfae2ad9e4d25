//! Probes. `/healthz`: the process is alive (restart it if not). `/readyz`: send it traffic now;
//! 503 while starting, while draining, and while the operation store does not answer.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ApiError, Problem};
use crate::lifecycle::Phase;
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ready")]
    status: &'static str,
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "service", responses((status = 200, description = "Alive", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "alive" })
}

/// Readiness: send this instance traffic now.
#[utoipa::path(get, path = "/readyz", tag = "service", responses(
    (status = 200, description = "Ready for traffic", body = Health),
    (status = 503, description = "Starting, draining, or a dependency is down", body = Problem, content_type = "application/problem+json"),
))]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    let not_ready =
        |detail: &str| ApiError::Unavailable { kind: "not-ready", detail: detail.to_owned(), retry_after_secs: 1 };
    match state.lifecycle.phase() {
        Phase::Starting => return Err(not_ready("starting")),
        Phase::Draining => return Err(not_ready("draining: shutting down")),
        Phase::Ready => {}
    }
    if let Err(error) = state.executor.check_store().await {
        tracing::warn!(%error, "readiness: operation store unavailable");
        return Err(ApiError::Unavailable {
            kind: "dependency-unavailable",
            detail: "the operation store does not answer".to_owned(),
            retry_after_secs: 5,
        });
    }
    Ok(Json(Health { status: "ready" }))
}
