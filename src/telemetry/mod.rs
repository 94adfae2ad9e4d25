//! What keel tells its operators: logs (tracing) and metrics (Prometheus).

mod json;
mod logs;
pub mod metrics;
mod writer;

pub use logs::{TelemetryGuard, init, json_layer};
