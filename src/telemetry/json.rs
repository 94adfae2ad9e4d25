//! One JSON object per log line, written straight into the output buffer.
//!
//! tracing-subscriber's own JSON format stores each span's fields as JSON text and parses that
//! text back for every line logged inside the span. With an access-log line per request that
//! was the largest user-space cost of a request (see the README's performance notes). Here a
//! span's fields are rendered once, as an object body (`"k":v,...`), and copied verbatim into
//! each line; nothing is allocated per line.
//!
//! A line: `{"timestamp":"…","level":"INFO","target":"…",<event fields>,"span":{"name":"…",<span fields>}}`.
//! `message` is an ordinary event field.

use std::fmt::{self, Write};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// Formats events as JSON lines.
pub struct JsonLines;

/// Renders fields as the body of a JSON object, for spans and events alike.
pub struct JsonFields;

impl<'w> FormatFields<'w> for JsonFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut visitor = JsonVisitor { writer, first: true, result: Ok(()) };
        fields.record(&mut visitor);
        visitor.result
    }

    fn add_fields(&self, current: &'w mut FormattedFields<Self>, fields: &tracing::span::Record<'_>) -> fmt::Result {
        let first = current.fields.is_empty();
        let mut visitor = JsonVisitor { writer: current.as_writer(), first, result: Ok(()) };
        fields.record(&mut visitor);
        visitor.result
    }
}

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let meta = event.metadata();
        writer.write_str("{\"timestamp\":\"")?;
        write_timestamp(&mut writer)?;
        write!(writer, "\",\"level\":\"{}\",\"target\":", meta.level())?;
        write_string(&mut writer, meta.target())?;
        let mut visitor = JsonVisitor { writer: writer.by_ref(), first: false, result: Ok(()) };
        event.record(&mut visitor);
        visitor.result?;
        if let Some(span) = ctx.lookup_current() {
            writer.write_str(",\"span\":{\"name\":")?;
            write_string(&mut writer, span.name())?;
            if let Some(fields) = span.extensions().get::<FormattedFields<N>>()
                && !fields.fields.is_empty()
            {
                writer.write_char(',')?;
                writer.write_str(&fields.fields)?;
            }
            writer.write_char('}')?;
        }
        writer.write_str("}\n")
    }
}

fn write_timestamp(writer: &mut Writer<'_>) -> fmt::Result {
    let mut buffer = [0u8; 40];
    let mut cursor = &mut buffer[..];
    let written = OffsetDateTime::now_utc().format_into(&mut cursor, &Rfc3339).map_err(|_| fmt::Error)?;
    writer.write_str(std::str::from_utf8(&buffer[..written]).map_err(|_| fmt::Error)?)
}

struct JsonVisitor<'w> {
    writer: Writer<'w>,
    first: bool,
    result: fmt::Result,
}

impl JsonVisitor<'_> {
    fn key(&mut self, field: &Field) -> fmt::Result {
        if !std::mem::take(&mut self.first) {
            self.writer.write_char(',')?;
        }
        write_string(&mut self.writer, field.name())?;
        self.writer.write_char(':')
    }

    fn raw(&mut self, field: &Field, value: fmt::Arguments<'_>) {
        if self.result.is_ok() {
            self.result = self.key(field).and_then(|()| self.writer.write_fmt(value));
        }
    }

    fn quoted(&mut self, field: &Field, value: fmt::Arguments<'_>) {
        if self.result.is_ok() {
            self.result = self.key(field).and_then(|()| {
                self.writer.write_char('"')?;
                Escaped(&mut self.writer).write_fmt(value)?;
                self.writer.write_char('"')
            });
        }
    }
}

impl Visit for JsonVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        if value.is_finite() {
            self.raw(field, format_args!("{value}"));
        } else {
            self.raw(field, format_args!("null"));
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.raw(field, format_args!("{value}"));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.raw(field, format_args!("{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.raw(field, format_args!("{value}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.quoted(field, format_args!("{value}"));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.quoted(field, format_args!("{value}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.quoted(field, format_args!("{value:?}"));
    }
}

fn write_string(writer: &mut impl Write, value: &str) -> fmt::Result {
    writer.write_char('"')?;
    Escaped(&mut *writer).write_str(value)?;
    writer.write_char('"')
}

/// Escapes what it is given for use inside a JSON string.
struct Escaped<W>(W);

impl<W: Write> Write for Escaped<W> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let mut plain = 0;
        for (index, byte) in text.bytes().enumerate() {
            let escape = match byte {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0..=0x1f => "",
                _ => continue,
            };
            self.0.write_str(&text[plain..index])?;
            if escape.is_empty() {
                write!(self.0, "\\u{byte:04x}")?;
            } else {
                self.0.write_str(escape)?;
            }
            plain = index + 1;
        }
        self.0.write_str(&text[plain..])
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use serde_json::Value;
    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Capture {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Capture {
        type Writer = Capture;
        fn make_writer(&'a self) -> Capture {
            self.clone()
        }
    }

    #[test]
    fn writes_one_valid_json_object_per_event_with_its_span() {
        let capture = Capture::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(capture.clone())
            .fmt_fields(JsonFields)
            .event_format(JsonLines)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("request", route = "/v1/{id}", request_id = %"abc\"1");
            let _entered = span.enter();
            tracing::info!(status = 404u16, latency_ms = 1.5, ok = false, note = "a\nb\u{1}", "request finished");
        });
        let output = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
        assert_eq!(output.lines().count(), 1, "{output}");
        let line: Value = serde_json::from_str(output.trim()).unwrap();
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["message"], "request finished");
        assert_eq!(line["status"], 404);
        assert_eq!(line["latency_ms"], 1.5);
        assert_eq!(line["ok"], false);
        assert_eq!(line["note"], "a\nb\u{1}");
        assert_eq!(line["span"]["name"], "request");
        assert_eq!(line["span"]["route"], "/v1/{id}");
        assert_eq!(line["span"]["request_id"], "abc\"1");
        assert!(OffsetDateTime::parse(line["timestamp"].as_str().unwrap(), &Rfc3339).is_ok());
    }
}
