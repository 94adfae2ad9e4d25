//! What keel tells its operators: logs (tracing) and metrics (Prometheus).

mod histogram;
mod json;
mod logs;
pub mod metrics;
pub mod request;
mod writer;

pub use logs::{TelemetryGuard, init};
