//! What keel tells its operators: logs and metrics, on the standard parts.
//!
//! - **Logs** are `tracing` events through tracing-subscriber's `fmt` layer: human-readable in
//!   development, one JSON object per line in production ([`json_layer`]: span fields flat at the
//!   top level, so `request_id` is on every line of a request), written by a batching writer off
//!   the request path. [`init`] installs it from [`keel_config::LogSettings`], with the panic hook.
//! - **Metrics** go through the `metrics` facade; [`metrics`] names them and installs the
//!   Prometheus recorder that `/metrics` renders.
//!
//! This crate depends on `keel-config` alone, so that every other crate may use it.
//!
//! ```ignore
//! let _guard = keel_telemetry::init(&settings.log)?; // keep it: dropping it flushes the logs
//! keel_telemetry::metrics::record_build_info(env!("CARGO_PKG_VERSION"), "abc123");
//! let text = keel_telemetry::metrics::render(); // what /metrics serves
//! ```

#![forbid(unsafe_code)]

mod json;
mod logs;
pub mod metrics;
mod writer;

pub use logs::{TelemetryGuard, init, json_layer};

/// The text of a panic payload, for logs and error details.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "non-string panic payload".to_owned())
}
