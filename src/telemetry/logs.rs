//! Logs and traces: tracing-subscriber with an env filter, human output for people and one JSON
//! object per line for log collectors.
//!
//! Lines go to stdout through the batching writer of `writer.rs`: a slow stdout (a full pipe, a
//! stalled log shipper) drops lines rather than stalling request handling. Keep the returned
//! guard alive until exit, or the last lines are lost.

use std::io::{self, IsTerminal};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use super::json::JsonLayer;
use super::writer::{BatchWriter, WriterGuard};
use crate::config::{LogFormat, LogSettings};

/// Writes out buffered log lines when dropped.
#[must_use = "dropping the guard stops log output"]
pub struct TelemetryGuard(#[allow(dead_code)] WriterGuard);

/// Installs the global subscriber. `RUST_LOG`, when set, wins over `log.filter`, so an operator
/// can turn up one module's logs without touching configuration.
///
/// Fails only when the writer thread cannot be started.
pub fn init(settings: &LogSettings) -> io::Result<TelemetryGuard> {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = BatchWriter::spawn(io::stdout())?;
    match settings.format {
        LogFormat::Json => tracing_subscriber::registry().with(filter).with(JsonLayer::new(writer)).init(),
        LogFormat::Pretty => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(writer)
            .with_ansi(std::io::stdout().is_terminal())
            .with_span_events(FmtSpan::NONE)
            .compact()
            .init(),
    }
    Ok(TelemetryGuard(guard))
}
