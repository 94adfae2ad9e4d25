//! Logs: tracing-subscriber's registry with a target and level filter and its `fmt` layer,
//! human-readable for people (`log.format = "pretty"`) and one flat JSON object per line for log
//! collectors (`"json"`, see `json.rs`).
//!
//! Lines go to stdout through the non-blocking writer of `writer.rs` (a `MakeWriter`): a slow
//! stdout (a full pipe, a stalled log shipper) drops lines rather than stalling request
//! handling. Keep the returned guard alive until exit, or the last lines are lost.
//!
//! A panic anywhere is logged as one line, `panicked` with its message and location, at
//! `error`, inside whatever span was current (a request's, an operation's).

use std::io::{self, IsTerminal};

use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use super::json::{FlatJson, JsonSpanFields};
use super::writer::{BatchWriter, WriterGuard};
use keel_config::{LogFormat, LogSettings};

/// Writes out buffered log lines when dropped.
#[must_use = "dropping the guard stops log output"]
pub struct TelemetryGuard(#[allow(dead_code)] WriterGuard);

/// Installs the global subscriber. `RUST_LOG`, when set and valid, wins over `log.filter`, so an
/// operator can turn up one module's logs without touching configuration.
///
/// Fails only when the writer thread cannot be started.
pub fn init(settings: &LogSettings) -> io::Result<TelemetryGuard> {
    let directives = std::env::var("RUST_LOG")
        .ok()
        .filter(|directives| EnvFilter::try_new(directives).is_ok())
        .unwrap_or_else(|| settings.filter.clone());
    let (writer, guard) = BatchWriter::spawn(io::stdout())?;
    match Filter::parse(&directives) {
        Filter::Targets(targets) => install(targets, settings.format, writer),
        Filter::Spans(env_filter) => install(env_filter, settings.format, writer),
    }
    log_panics();
    Ok(TelemetryGuard(guard))
}

/// keel's JSON log format as a `fmt` layer writing to `writer`: what production uses, for a test
/// that reads what a request logs, or a subscriber of your own.
pub fn json_layer<S, W>(writer: W) -> impl Layer<S> + Send + Sync + 'static
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    W: for<'a> tracing_subscriber::fmt::MakeWriter<'a> + Send + Sync + 'static,
{
    tracing_subscriber::fmt::layer().fmt_fields(JsonSpanFields).event_format(FlatJson).with_writer(writer)
}

/// Replaces the default panic output (several lines of text on stderr) with one log line.
fn log_panics() {
    std::panic::set_hook(Box::new(|info| {
        let message = crate::panic_message(info.payload());
        let location = info.location().map(ToString::to_string).unwrap_or_default();
        tracing::error!(panic.message = message, panic.location = location, "panicked");
    }));
}

/// The log filter for `RUST_LOG`-style directives.
///
/// `EnvFilter` understands directives on spans and their fields (`[request{route=/}]=debug`),
/// and to do so it looks every span up, under a lock shared by all threads, each time a span is
/// created, entered, exited or closed: four times per request. Directives that name no span or
/// field (no `[`), the usual `info,keel=debug`, filter on target and level alone, which
/// `Targets` does the same way without tracking spans.
// Built once, at start-up: the size of its variants does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Filter {
    Targets(Targets),
    Spans(EnvFilter),
}

impl Filter {
    /// `info` when `directives` do not parse.
    pub fn parse(directives: &str) -> Self {
        if !directives.contains('[')
            && let Ok(targets) = directives.parse::<Targets>()
        {
            return Self::Targets(targets);
        }
        Self::Spans(EnvFilter::try_new(directives).unwrap_or_else(|_| EnvFilter::new("info")))
    }
}

fn install<F>(filter: F, format: LogFormat, writer: BatchWriter)
where
    F: Layer<Registry> + Send + Sync + 'static,
{
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Json => registry.with(json_layer(writer)).init(),
        LogFormat::Pretty => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(writer)
                    .with_ansi(std::io::stdout().is_terminal())
                    .with_span_events(FmtSpan::NONE)
                    .compact(),
            )
            .init(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing::field::{Field, Visit};
    use tracing::{Event, Level, Subscriber};
    use tracing_subscriber::layer::Context;

    use super::*;

    /// Keeps the message of every event that gets through.
    #[derive(Clone, Default)]
    struct Messages(Arc<Mutex<Vec<String>>>);

    impl<S: Subscriber> Layer<S> for Messages {
        fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
            struct Message<'a>(&'a mut Vec<String>);
            impl Visit for Message<'_> {
                fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
                    if field.name() == "message" {
                        self.0.push(format!("{value:?}"));
                    }
                }
            }
            event.record(&mut Message(&mut self.0.lock().unwrap()));
        }
    }

    /// The messages of `log` that `directives` let through, and whether `Targets` filtered them.
    fn passed(directives: &str, log: impl Fn()) -> (Vec<String>, bool) {
        let messages = Messages::default();
        let by_targets = match Filter::parse(directives) {
            Filter::Targets(targets) => {
                let subscriber = tracing_subscriber::registry().with(targets).with(messages.clone());
                tracing::subscriber::with_default(subscriber, &log);
                true
            }
            Filter::Spans(env_filter) => {
                let subscriber = tracing_subscriber::registry().with(env_filter).with(messages.clone());
                tracing::subscriber::with_default(subscriber, &log);
                false
            }
        };
        (messages.0.lock().unwrap().clone(), by_targets)
    }

    #[test]
    fn targets_and_levels_filter_as_rust_log_says() {
        let log = || {
            tracing::info!(target: "keel::http::middleware::trace", "access line");
            tracing::info!(target: "keel::operations", "operation line");
            tracing::debug!(target: "keel::operations", "operation detail");
            tracing::debug!(target: "hyper", "hyper detail");
        };
        assert_eq!(passed("info", log), (vec!["access line".into(), "operation line".into()], true));
        assert_eq!(passed("info,keel::http::middleware=warn", log), (vec!["operation line".into()], true));
        assert_eq!(
            passed("warn,keel=debug", log),
            (vec!["access line".into(), "operation line".into(), "operation detail".into()], true)
        );
        assert_eq!(passed("off", log), (vec![], true));
        let (fallback, _) = passed("not = a = filter", log);
        assert_eq!(fallback, ["access line", "operation line"], "falls back to info");
    }

    #[test]
    fn span_directives_filter_inside_the_span() {
        let log = || {
            tracing::debug!("outside");
            let span = tracing::span!(Level::INFO, "request", route = "/");
            let _entered = span.enter();
            tracing::debug!("inside");
        };
        assert_eq!(passed("info,[request]=debug", log), (vec!["inside".into()], false));
    }
}
