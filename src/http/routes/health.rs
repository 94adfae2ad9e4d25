//! Probes. `/healthz`: the process is alive (restart it if not). `/readyz`: send it traffic now;
//! 503 while starting, while draining, and while the operation store does not answer.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde_json::{Value, json};

use crate::http::error::ApiError;
use crate::http::state::AppState;
use crate::lifecycle::Phase;

pub fn routes() -> Router<AppState> {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz))
}

async fn healthz() -> Json<Value> {
    Json(json!({ "status": "alive" }))
}

async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
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
    Ok(Json(json!({ "status": "ready" })))
}
