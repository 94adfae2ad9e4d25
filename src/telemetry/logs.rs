//! Logs and traces: tracing-subscriber with an env filter, human output for people and one JSON
//! object per line for log collectors.
//!
//! Writing goes through a non-blocking, lossy writer: a slow stdout (a full pipe, a stalled log
//! shipper) drops lines rather than stalling request handling. Its worker thread drains every
//! queued line into a buffer and then flushes, so under load many lines cost one `write` instead
//! of one each, and when idle a line still appears at once. Keep the returned guard alive until
//! exit, or the last lines are lost.

use std::io::{BufWriter, IsTerminal};

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

use super::json::{JsonFields, JsonLines};
use crate::config::{LogFormat, LogSettings};

/// Flushes buffered log lines when dropped.
#[must_use = "dropping the guard stops log output"]
pub struct TelemetryGuard(#[allow(dead_code)] WorkerGuard);

/// Installs the global subscriber. `RUST_LOG`, when set, wins over `log.filter`, so an operator
/// can turn up one module's logs without touching configuration.
pub fn init(settings: &LogSettings) -> TelemetryGuard {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = tracing_appender::non_blocking(BufWriter::with_capacity(64 * 1024, std::io::stdout()));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(std::io::stdout().is_terminal())
        .with_span_events(FmtSpan::NONE);
    match settings.format {
        LogFormat::Json => builder.fmt_fields(JsonFields).event_format(JsonLines).init(),
        LogFormat::Pretty => builder.compact().init(),
    }
    TelemetryGuard(guard)
}
