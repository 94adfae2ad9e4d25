//! The production log format: one flat JSON object per line, as tracing-subscriber's
//! [`FormatEvent`] and [`FormatFields`] for its `fmt` layer.
//!
//! A line: `{"timestamp":"…","level":"INFO","target":"…",<span fields>,<event fields>}`. The
//! fields of every span the event is in, outermost first, come before the event's own, all at the
//! top level: the request span's `request_id`, `method`, `route`, `status` and `latency_ms`, the
//! operation span's `operation_id`, `kind`, `attempt` and `owner`, then `message` and whatever
//! the event adds. A log collector finds `request_id` at the same place on every line, where the
//! stock JSON format nests it under `span` (the innermost span only) or `spans` (a list).
//!
//! A span's fields are rendered as JSON once, when they are recorded ([`JsonSpanFields`] keeps
//! them as `"name":value` pairs, appending a field recorded later), and copied into each line:
//! nothing is parsed or rendered again per line. A name given twice (by two spans, a span and the
//! event, or a field recorded twice) appears twice, the innermost or latest last, which is the
//! value a JSON reader keeps.

use std::fmt::{self, Write};

use tracing::field::{Field, Visit};
use tracing::span::Record;
use tracing::{Event, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// Formats each event as one flat JSON object; pair it with [`JsonSpanFields`].
#[derive(Debug, Default, Clone, Copy)]
pub struct FlatJson;

impl<S> FormatEvent<S, JsonSpanFields> for FlatJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonSpanFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // A `log` record's own target and level, not those of the bridge's callsite.
        let normalized = event.normalized_metadata();
        let metadata = normalized.as_ref().unwrap_or_else(|| event.metadata());
        writer.write_str("{\"timestamp\":\"")?;
        SystemTime.format_time(&mut writer)?;
        write!(writer, "\",\"level\":\"{}\",\"target\":", metadata.level())?;
        write_string(&mut writer, metadata.target())?;
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                if let Some(fields) = extensions.get::<FormattedFields<JsonSpanFields>>() {
                    writer.write_str(&fields.fields)?;
                }
            }
        }
        let mut pairs = Pairs { writer: &mut writer, result: Ok(()) };
        event.record(&mut pairs);
        pairs.result?;
        writer.write_str("}\n")
    }
}

/// A span's fields as `,"name":value` pairs: what [`FlatJson`] copies into each line.
#[derive(Debug, Default, Clone, Copy)]
pub struct JsonSpanFields;

impl<'writer> FormatFields<'writer> for JsonSpanFields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut pairs = Pairs { writer: &mut writer, result: Ok(()) };
        fields.record(&mut pairs);
        pairs.result
    }

    fn add_fields(&self, current: &'writer mut FormattedFields<Self>, fields: &Record<'_>) -> fmt::Result {
        // Appended, not merged: see the module's docs.
        let mut writer = current.as_writer();
        let mut pairs = Pairs { writer: &mut writer, result: Ok(()) };
        fields.record(&mut pairs);
        pairs.result
    }
}

/// Writes fields as `,"name":value` pairs, skipping the `log` bridge's own.
struct Pairs<'a, 'w> {
    writer: &'a mut Writer<'w>,
    result: fmt::Result,
}

impl Pairs<'_, '_> {
    fn pair(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        if self.result.is_err() || field.name().starts_with("log.") {
            return;
        }
        self.result = (|| {
            self.writer.write_char(',')?;
            write_string(self.writer, field.name())?;
            self.writer.write_char(':')?;
            value(self.writer)
        })();
    }
}

impl Visit for Pairs<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.pair(field, |w| write_string(w, value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.pair(field, |w| write!(w, "{value}"));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.pair(field, |w| write!(w, "{value}"));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.pair(field, |w| write!(w, "{value}"));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // JSON has no NaN or infinity: those go as strings. `{:?}` keeps a whole number's `.0`.
        if value.is_finite() {
            self.pair(field, |w| write!(w, "{value:?}"));
        } else {
            self.pair(field, |w| write!(w, "\"{value}\""));
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.pair(field, |w| write_display(w, value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.pair(field, |w| {
            w.write_char('"')?;
            write!(Escaped(&mut *w), "{value:?}")?;
            w.write_char('"')
        });
    }
}

fn write_string(writer: &mut impl Write, text: &str) -> fmt::Result {
    writer.write_char('"')?;
    Escaped(&mut *writer).write_str(text)?;
    writer.write_char('"')
}

fn write_display(writer: &mut impl Write, value: &dyn fmt::Display) -> fmt::Result {
    writer.write_char('"')?;
    write!(Escaped(&mut *writer), "{value}")?;
    writer.write_char('"')
}

/// Escapes what passes through as the inside of a JSON string (RFC 8259 §7).
struct Escaped<W>(W);

impl<W: Write> Write for Escaped<W> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let mut plain = 0;
        for (at, byte) in text.bytes().enumerate() {
            let escape = match byte {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0..=0x1f => "",
                _ => continue,
            };
            self.0.write_str(&text[plain..at])?;
            if escape.is_empty() {
                write!(self.0, "\\u{byte:04x}")?;
            } else {
                self.0.write_str(escape)?;
            }
            plain = at + 1;
        }
        self.0.write_str(&text[plain..])
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use serde_json::Value;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn lines(log: impl FnOnce()) -> Vec<Value> {
        let captured = Captured::default();
        let out = captured.clone();
        let layer = tracing_subscriber::fmt::layer()
            .fmt_fields(JsonSpanFields)
            .event_format(FlatJson)
            .with_writer(move || out.clone());
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), log);
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        text.lines().map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))).collect()
    }

    #[test]
    fn a_line_carries_its_spans_fields_at_the_top_level() {
        let lines = lines(|| {
            let request = tracing::info_span!("request", request_id = "req-7", status = tracing::field::Empty);
            let _entered = request.enter();
            request.record("status", 200);
            let inner = tracing::info_span!("inner", step = 2);
            let _inner = inner.enter();
            tracing::info!(answer = 42, ratio = 0.5, whole = 3.0, yes = true, "hello {}", "world");
        });
        assert_eq!(lines.len(), 1);
        let line = &lines[0];
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["message"], "hello world");
        assert_eq!(line["request_id"], "req-7");
        assert_eq!(line["status"], 200, "recorded after the span started");
        assert_eq!(line["step"], 2);
        assert_eq!(line["answer"], 42);
        assert_eq!(line["ratio"], 0.5);
        assert_eq!(line["whole"], 3.0);
        assert_eq!(line["yes"], true);
        let timestamp = line["timestamp"].as_str().unwrap();
        assert!(timestamp.ends_with('Z') && timestamp.contains('T'), "{timestamp}");
    }

    #[test]
    fn strings_are_escaped_wherever_they_come_from() {
        let nasty = "quote \" backslash \\ newline \n tab \t bell \u{7} é ✓";
        let lines = lines(|| {
            let span = tracing::info_span!("request", id = nasty);
            let _entered = span.enter();
            tracing::info!(text = nasty, debug = ?nasty, shown = %nasty, "{nasty}");
        });
        let line = &lines[0];
        for key in ["id", "text", "shown", "message"] {
            assert_eq!(line[key], nasty, "{key}");
        }
        assert_eq!(line["debug"], format!("{nasty:?}"));
    }

    #[test]
    fn a_line_outside_spans_has_its_own_fields_alone() {
        let lines = lines(|| tracing::warn!(error = %"disk full", "cannot write"));
        assert_eq!(lines[0]["level"], "WARN");
        assert_eq!(lines[0]["error"], "disk full");
        assert!(lines[0].get("request_id").is_none());
    }

    #[test]
    fn numbers_json_cannot_hold_become_strings() {
        let lines = lines(|| tracing::info!(nan = f64::NAN, infinite = f64::INFINITY, "odd"));
        assert_eq!(lines[0]["nan"], "NaN");
        assert_eq!(lines[0]["infinite"], "inf");
    }
}
