//! The production log format: one flat JSON object per line, as a tracing-subscriber
//! [`FormatEvent`] for its `fmt` layer.
//!
//! A line: `{"timestamp":"…","level":"INFO","target":"…",<span fields>,<event fields>}`. The
//! fields of every span the event is in, outermost first, come before the event's own, all at the
//! top level: the request span's `request_id`, `method`, `route`, `status` and `latency_ms`, the
//! operation span's `operation_id`, `kind`, `attempt` and `owner`, then `message` and whatever
//! the event adds. A log collector indexes `request_id` wherever the line came from, which the
//! stock JSON format would nest under `span` (the innermost span only) or `spans` (a list).
//!
//! Span fields are stored as JSON by tracing-subscriber's [`JsonFields`] when the span is
//! created or recorded to, and copied into each line as they are: nothing is parsed per line.
//! A name given twice (by two spans, or a span and the event) appears twice, the innermost last,
//! which is the one a JSON reader keeps.

use std::fmt;

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// Formats each event as one flat JSON object; pair it with [`JsonFields`] for span fields.
#[derive(Debug, Default, Clone, Copy)]
pub struct FlatJson;

impl<S> FormatEvent<S, JsonFields> for FlatJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // A `log` record's own target and level, not those of the bridge's callsite.
        let normalized = event.normalized_metadata();
        let metadata = normalized.as_ref().unwrap_or_else(|| event.metadata());
        let now = OffsetDateTime::now_utc();
        writer.write_str("{\"timestamp\":")?;
        write_json(&mut writer, &now.format(&Rfc3339).unwrap_or_default())?;
        write!(writer, ",\"level\":\"{}\",\"target\":", metadata.level())?;
        write_json(&mut writer, metadata.target())?;
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                if let Some(fields) = extensions.get::<FormattedFields<JsonFields>>() {
                    // `{"a":1,"b":2}`, spliced in without its braces.
                    let inner = fields.fields.trim().trim_start_matches('{').trim_end_matches('}');
                    if !inner.is_empty() {
                        writer.write_char(',')?;
                        writer.write_str(inner)?;
                    }
                }
            }
        }
        let mut visitor = EventFields { writer: &mut writer, result: Ok(()) };
        event.record(&mut visitor);
        visitor.result?;
        writer.write_str("}\n")
    }
}

/// Writes an event's fields as `,"name":value` pairs, skipping the `log` bridge's own.
struct EventFields<'a, 'w> {
    writer: &'a mut Writer<'w>,
    result: fmt::Result,
}

impl EventFields<'_, '_> {
    fn pair(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        if self.result.is_err() || field.name().starts_with("log.") {
            return;
        }
        self.result = (|| {
            self.writer.write_char(',')?;
            write_json(self.writer, field.name())?;
            self.writer.write_char(':')?;
            value(self.writer)
        })();
    }
}

impl Visit for EventFields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.pair(field, |w| write_json(w, value));
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
        // JSON has no NaN or infinity: those go as strings.
        if value.is_finite() {
            self.pair(field, |w| write_json_value(w, &Value::from(value)));
        } else {
            self.pair(field, |w| write_json(w, &value.to_string()));
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.pair(field, |w| write_json(w, &value.to_string()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.pair(field, |w| write_json(w, &format!("{value:?}")));
    }
}

fn write_json(writer: &mut Writer<'_>, text: &str) -> fmt::Result {
    write_json_value(writer, &Value::from(text))
}

fn write_json_value(writer: &mut Writer<'_>, value: &Value) -> fmt::Result {
    // `Value`'s `Display` is its compact JSON, escaped as JSON requires.
    write!(writer, "{value}")
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

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
            .fmt_fields(JsonFields::new())
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
            tracing::info!(answer = 42, ratio = 0.5, quoted = "a \"b\"\n", "hello {}", "world");
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
        assert_eq!(line["quoted"], "a \"b\"\n");
        assert!(line["timestamp"].as_str().unwrap().ends_with('Z'));
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
        let lines = lines(|| tracing::info!(nan = f64::NAN, "odd"));
        assert_eq!(lines[0]["nan"], "NaN");
    }
}
