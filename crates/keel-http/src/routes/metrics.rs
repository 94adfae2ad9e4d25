//! `GET /metrics`: Prometheus text format. Gauges that describe the store (running, queued) are
//! read from it at scrape time, so they are right even when other replicas share the store.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::state::AppState;
use keel_telemetry::metrics as names;

const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Metrics in the Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "service", responses(
    (status = 200, description = "Prometheus text exposition format", body = String, content_type = "text/plain")
))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    match state.executor.counts().await {
        Ok(counts) => {
            metrics::gauge!(names::OPERATIONS_RUNNING).set(counts.running as f64);
            metrics::gauge!(names::OPERATIONS_QUEUED).set(counts.queued as f64);
        }
        Err(error) => tracing::warn!(%error, "metrics: cannot count operations"),
    }
    ([(header::CONTENT_TYPE, PROMETHEUS_TEXT)], names::render())
}
