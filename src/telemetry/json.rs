//! One JSON object per log line, rendered by hand by a tracing layer of keel's own.
//!
//! A line: `{"timestamp":"…","level":"INFO","target":"…",<event fields>,"request":{…},
//! "span":{"name":"…",<span fields>},"spans":[{…},…]}`. `message` is an ordinary event field;
//! `request` (id, method, route) is there for a line logged while a request is handled (see
//! `request.rs`); `span` (the innermost) and `spans` (all of them, outermost first) for a line
//! logged inside spans, as tracing-subscriber's JSON formatter names them. A `log` record's line
//! names the record's own target, as tracing-subscriber's formatters do.
//!
//! Why not tracing-subscriber's JSON formatter (`bench/alternatives/fmt-json.patch` swaps it in;
//! `bench/alternatives.py` measures both): with it, a `GET /` costs 27,122 instructions against
//! 16,712 (+62%), and 24% more CPU time. It serialises each line through serde_json into a
//! buffer of its own and copies it on, and it keeps each span's fields as JSON text that it
//! parses back for every line logged inside the span. This layer renders a span's fields when
//! they are recorded and copies the text into each line, and renders each line into a reused
//! per-thread `String` that goes to the log writer in one piece. What a callsite's lines share
//! (level, target, the field names as keys) is escaped once per thread and copied after that.
//! Numbers are rendered with `itoa` and `ryu`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::{self, Write};
use std::hash::{BuildHasherDefault, Hasher};
use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;
use tracing::callsite::Identifier;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use super::request::RequestContext;
use super::writer::BatchWriter;

/// Writes every event as one JSON line to the log writer.
pub struct JsonLayer {
    out: BatchWriter,
}

impl JsonLayer {
    pub fn new(out: BatchWriter) -> Self {
        Self { out }
    }
}

/// A span as its lines show it: its fields, each rendered once, and the object they make,
/// `{"name":"…",<fields>}`, rendered again only when a field is recorded after the span starts.
struct SpanFields {
    /// Each field's name and its value as JSON, in the order first recorded. A field recorded
    /// again replaces its value, so that a line never carries a key twice.
    values: Vec<(&'static str, String)>,
    rendered: String,
}

impl SpanFields {
    fn render(&mut self, name: &str) {
        self.rendered.clear();
        self.rendered.push_str("{\"name\":");
        push_string(&mut self.rendered, name);
        for (key, value) in &self.values {
            self.rendered.push(',');
            push_string(&mut self.rendered, key);
            self.rendered.push(':');
            self.rendered.push_str(value);
        }
        self.rendered.push('}');
    }
}

impl FieldSink for SpanFields {
    fn value_slot(&mut self, field: &Field) -> Option<&mut String> {
        let at = match self.values.iter().position(|(key, _)| *key == field.name()) {
            Some(at) => {
                self.values[at].1.clear();
                at
            }
            None => {
                self.values.push((field.name(), String::new()));
                self.values.len() - 1
            }
        };
        Some(&mut self.values[at].1)
    }
}

/// Fields of a `log` record that tracing-log carries as fields and a line shows as its own
/// metadata (the target) or not at all (module, file, line), as tracing-subscriber's formatters
/// do.
const LOG_RECORD_FIELDS: &str = "log.";

impl<S> Layer<S> for JsonLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attributes: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = SpanFields { values: Vec::new(), rendered: String::new() };
        attributes.record(&mut FieldVisitor(&mut fields));
        fields.render(span.name());
        span.extensions_mut().insert(fields);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut extensions = span.extensions_mut();
        if let Some(fields) = extensions.get_mut::<SpanFields>() {
            values.record(&mut FieldVisitor(&mut *fields));
            fields.render(span.name());
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        with_scratch(|line| {
            let text = callsite_text(event.metadata());
            line.push_str("{\"timestamp\":\"");
            push_timestamp(line);
            // A `log` record comes through tracing-log's callsite, whose target is `log`: the
            // line names the record's own target, as tracing-subscriber's formatters do.
            let from_log = event.is_log();
            match from_log.then(|| event.normalized_metadata()).flatten() {
                Some(record) => push_level_and_target(line, &record),
                None => line.push_str(&text.level_and_target),
            }
            event.record(&mut FieldVisitor(EventLine { line: &mut *line, text: &text, from_log }));
            RequestContext::with_current(|request| {
                if let Some(request) = request {
                    push_request(line, request);
                }
            });
            // The event's parent (the one it names, or else the current span) as `span`, and
            // every span it is in, outermost first, as `spans`: a line inside a `db` span inside
            // an `operation` span names the operation too.
            if let Some(innermost) = ctx.event_span(event) {
                // One span's extensions borrowed at a time: the registry's lock is not
                // reentrant, and another thread may be waiting to record into the span.
                if let Some(fields) = innermost.extensions().get::<SpanFields>() {
                    line.push_str(",\"span\":");
                    line.push_str(&fields.rendered);
                }
                line.push_str(",\"spans\":[");
                let mut first = true;
                for span in innermost.scope().from_root() {
                    if let Some(fields) = span.extensions().get::<SpanFields>() {
                        if !first {
                            line.push(',');
                        }
                        first = false;
                        line.push_str(&fields.rendered);
                    }
                }
                line.push(']');
            }
            line.push_str("}\n");
            self.out.write_line(line.as_bytes());
        });
    }
}

/// Pushes what follows the timestamp for a line with this level and target, rendered afresh:
/// `","level":"INFO","target":"…"`.
fn push_level_and_target(line: &mut String, meta: &Metadata<'_>) {
    line.push_str("\",\"level\":\"");
    line.push_str(meta.level().as_str());
    line.push_str("\",\"target\":");
    push_string(line, meta.target());
}

/// Pushes the request a line is logged for: `,"request":{"id":…,"method":…,"route":…}`. The
/// id and the method go in as they are: a [`RequestId`](super::request::RequestId) holds only
/// `A-Z a-z 0-9 - _ . :`, and a method only HTTP token characters, neither of which JSON
/// escapes. The route is a template from the code, escaped like any string.
fn push_request(line: &mut String, request: &RequestContext) {
    line.push_str(",\"request\":{\"id\":\"");
    line.push_str(request.id.as_str());
    line.push_str("\",\"method\":\"");
    line.push_str(request.method.as_str());
    line.push_str("\",\"route\":");
    push_string(line, request.route);
    line.push('}');
}

/// What every line or span of one callsite shares, escaped once.
struct CallsiteText {
    callsite: Identifier,
    /// What follows the timestamp: `","level":"INFO","target":"keel::…"`.
    level_and_target: Box<str>,
    /// What precedes each field's value, by field index: `,"name":`.
    keys: Box<[Box<str>]>,
}

impl CallsiteText {
    fn new(meta: &'static Metadata<'static>) -> Self {
        let mut level_and_target = format!("\",\"level\":\"{}\",\"target\":", meta.level());
        push_string(&mut level_and_target, meta.target());
        let keys = meta
            .fields()
            .iter()
            .map(|field| {
                let mut key = String::from(",");
                push_string(&mut key, field.name());
                key.push(':');
                key.into_boxed_str()
            })
            .collect();
        Self { callsite: meta.callsite(), level_and_target: level_and_target.into_boxed_str(), keys }
    }
}

/// This thread's [`CallsiteText`] for `meta`'s callsite, rendered the first time the thread
/// logs from it. Callsites are static and few (one per `info!`, `info_span!`...), so the
/// table stays small; it is per thread so that reading it takes no lock.
fn callsite_text(meta: &'static Metadata<'static>) -> Rc<CallsiteText> {
    type ByAddress = HashMap<usize, Rc<CallsiteText>, BuildHasherDefault<AddressHasher>>;
    thread_local! {
        static CALLSITES: RefCell<ByAddress> = RefCell::default();
    }
    let address = std::ptr::from_ref(meta).addr();
    CALLSITES.with_borrow_mut(|callsites| {
        Rc::clone(callsites.entry(address).or_insert_with(|| Rc::new(CallsiteText::new(meta))))
    })
}

/// Hashes an address: distinct already, so one multiplication spreads them over the table.
#[derive(Default)]
struct AddressHasher(u64);

impl Hasher for AddressHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.write_u64(self.0.rotate_left(8) ^ u64::from(byte));
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn write_usize(&mut self, value: usize) {
        self.write_u64(value as u64);
    }

    fn finish(&self) -> u64 {
        // The table picks buckets from the low bits, which the multiplication leaves weakest.
        self.0 ^ (self.0 >> 32)
    }
}

/// Runs `render` with this thread's scratch `String`, emptied; a fresh one if it is in use (a
/// `Debug` impl that logs while its value is being rendered).
fn with_scratch<T>(render: impl FnOnce(&mut String) -> T) -> T {
    thread_local! {
        static SCRATCH: RefCell<String> = const { RefCell::new(String::new()) };
    }
    SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
        Ok(mut text) => {
            text.clear();
            render(&mut text)
        }
        Err(_) => render(&mut String::new()),
    })
}

/// Pushes the current time as RFC 3339 in UTC with microseconds, e.g.
/// `2026-11-24T09:30:00.123456Z`. The date and time of day change once a second, so each thread
/// keeps them rendered and renders only the fraction per line.
fn push_timestamp(line: &mut String) {
    thread_local! {
        static RENDERED_SECOND: RefCell<(u64, String)> = const { RefCell::new((0, String::new())) };
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    RENDERED_SECOND.with_borrow_mut(|(second, rendered)| {
        if *second != now.as_secs() || rendered.is_empty() {
            *second = now.as_secs();
            rendered.clear();
            let time = i64::try_from(now.as_secs())
                .ok()
                .and_then(|seconds| OffsetDateTime::from_unix_timestamp(seconds).ok())
                .unwrap_or(OffsetDateTime::UNIX_EPOCH);
            let _ = write!(
                rendered,
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
                time.year(),
                u8::from(time.month()),
                time.day(),
                time.hour(),
                time.minute(),
                time.second()
            );
        }
        line.push_str(rendered);
    });
    // `1` ahead of the microseconds keeps their leading zeros: 1_000_042 renders as "1000042".
    let mut digits = itoa::Buffer::new();
    let fraction = digits.format(1_000_000 + now.subsec_micros());
    line.push('.');
    line.push_str(&fraction[1..]);
    line.push('Z');
}

/// Where a field's JSON value goes: `None` leaves the field out.
trait FieldSink {
    fn value_slot(&mut self, field: &Field) -> Option<&mut String>;
}

impl<T: FieldSink> FieldSink for &mut T {
    fn value_slot(&mut self, field: &Field) -> Option<&mut String> {
        (**self).value_slot(field)
    }
}

/// An event's fields, rendered into its line as `,"name":value` pairs.
struct EventLine<'a> {
    line: &'a mut String,
    text: &'a CallsiteText,
    /// The event is a `log` record: its `log.*` fields are left out.
    from_log: bool,
}

impl FieldSink for EventLine<'_> {
    fn value_slot(&mut self, field: &Field) -> Option<&mut String> {
        match self.text.keys.get(field.index()) {
            _ if self.from_log && field.name().starts_with(LOG_RECORD_FIELDS) => return None,
            Some(key) if field.callsite() == self.text.callsite => self.line.push_str(key),
            // A field of another callsite: not expected from tracing, rendered all the same.
            _ => {
                self.line.push(',');
                push_string(self.line, field.name());
                self.line.push(':');
            }
        }
        Some(self.line)
    }
}

/// Renders each field's value as JSON where its sink says.
struct FieldVisitor<K>(K);

impl<K: FieldSink> FieldVisitor<K> {
    fn quoted_display(&mut self, field: &Field, value: fmt::Arguments<'_>) {
        if let Some(out) = self.0.value_slot(field) {
            out.push('"');
            // Writing into a `String` fails only if a `Display` impl reports an error; what it
            // wrote so far stays, and the line is still valid JSON.
            let _ = Escaped(&mut *out).write_fmt(value);
            out.push('"');
        }
    }
}

impl<K: FieldSink> Visit for FieldVisitor<K> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        if let Some(out) = self.0.value_slot(field) {
            push_f64(out, value);
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if let Some(out) = self.0.value_slot(field) {
            out.push_str(itoa::Buffer::new().format(value));
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if let Some(out) = self.0.value_slot(field) {
            out.push_str(itoa::Buffer::new().format(value));
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if let Some(out) = self.0.value_slot(field) {
            out.push_str(if value { "true" } else { "false" });
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if let Some(out) = self.0.value_slot(field) {
            push_string(out, value);
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.quoted_display(field, format_args!("{value}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.quoted_display(field, format_args!("{value:?}"));
    }
}

/// Pushes `value` as a JSON number (`null` when it has none). A value with at most three decimals,
/// like the access log's `latency_ms`, is rendered from integers: `0.052` comes out as ryu would
/// write it, about a tenth of the cost. Any other value goes to ryu.
fn push_f64(out: &mut String, value: f64) {
    if !value.is_finite() {
        out.push_str("null");
        return;
    }
    let thousandths = (value * 1000.0).round();
    if thousandths.abs() < 1e15 && thousandths / 1000.0 == value {
        // Exact in an i64 below 2^53, and `value` is the double nearest thousandths / 1000, so
        // the decimal text reads back as `value`.
        let thousandths = thousandths as i64;
        if thousandths < 0 {
            out.push('-');
        }
        let (whole, fraction) = (thousandths.unsigned_abs() / 1000, thousandths.unsigned_abs() % 1000);
        out.push_str(itoa::Buffer::new().format(whole));
        if fraction != 0 {
            let digits =
                [b'0' + (fraction / 100) as u8, b'0' + (fraction / 10 % 10) as u8, b'0' + (fraction % 10) as u8];
            let significant = if fraction % 100 == 0 {
                1
            } else if fraction % 10 == 0 {
                2
            } else {
                3
            };
            out.push('.');
            digits[..significant].iter().for_each(|&digit| out.push(char::from(digit)));
        }
        return;
    }
    out.push_str(ryu::Buffer::new().format_finite(value));
}

/// Pushes `value` as a JSON string, quoted and escaped.
fn push_string(out: &mut String, value: &str) {
    out.push('"');
    push_escaped(out, value);
    out.push('"');
}

fn needs_escape(byte: u8) -> bool {
    byte < 0x20 || byte == b'"' || byte == b'\\'
}

/// Whether any byte of `text` needs escaping, eight bytes at a time: most of what a line holds
/// (ids, routes, messages) needs none, and a byte-by-byte scan was a visible share of a
/// request's cost. A text of eight bytes or more ends with one more word that overlaps the
/// last, so no byte is ever looked at alone.
fn any_needs_escape(text: &[u8]) -> bool {
    let word = |bytes: &[u8]| u64::from_ne_bytes(bytes.try_into().unwrap_or([0; 8]));
    if text.len() < 8 {
        return text.iter().any(|&byte| needs_escape(byte));
    }
    text.chunks_exact(8).any(|chunk| word_needs_escape(word(chunk))) || word_needs_escape(word(&text[text.len() - 8..]))
}

/// Whether any of the eight bytes of `word` needs escaping.
fn word_needs_escape(word: u64) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    // The classic bit tricks: a high bit is set for some byte of `word` that is zero (or below
    // 0x20) exactly when there is one, which is all this needs to know.
    let zero_bytes = |word: u64| word.wrapping_sub(ONES) & !word & HIGHS;
    let control = word.wrapping_sub(ONES * 0x20) & !word & HIGHS;
    control | zero_bytes(word ^ (ONES * u64::from(b'"'))) | zero_bytes(word ^ (ONES * u64::from(b'\\'))) != 0
}

/// Pushes `text` escaped for the inside of a JSON string; text that needs no escaping is pushed
/// in one piece.
fn push_escaped(out: &mut String, text: &str) {
    if !any_needs_escape(text.as_bytes()) {
        out.push_str(text);
        return;
    }
    let mut plain = 0;
    for (index, byte) in text.bytes().enumerate().filter(|(_, byte)| needs_escape(*byte)) {
        out.push_str(&text[plain..index]);
        match byte {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            _ => {
                out.push_str("\\u00");
                out.push(char::from(b"0123456789abcdef"[usize::from(byte >> 4)]));
                out.push(char::from(b"0123456789abcdef"[usize::from(byte & 0xf)]));
            }
        }
        plain = index + 1;
    }
    out.push_str(&text[plain..]);
}

/// Escapes what a `Display` or `Debug` impl writes, for use inside a JSON string.
struct Escaped<'a>(&'a mut String);

impl Write for Escaped<'_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        push_escaped(self.0, text);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use serde_json::Value;
    use time::format_description::well_known::Rfc3339;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Capture {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn numbers_read_back_as_the_value_logged() {
        let rendered = |value: f64| {
            let mut out = String::new();
            push_f64(&mut out, value);
            out
        };
        assert_eq!(rendered(0.052), "0.052");
        assert_eq!(rendered(12.5), "12.5");
        assert_eq!(rendered(-3.25), "-3.25");
        assert_eq!(rendered(-0.001), "-0.001");
        assert_eq!(rendered(7.0), "7");
        assert_eq!(rendered(f64::NAN), "null");
        assert_eq!(rendered(f64::INFINITY), "null");
        for value in [0.052, 1.0 / 3.0, 0.1 + 0.2, 1e-9, 123_456.789, 1e300, -2.5e-7, 4_503_599_627_370.497, 0.0] {
            let text = rendered(value);
            assert_eq!(text.parse::<f64>().unwrap(), value, "{value} rendered as {text}");
            assert!(serde_json::from_str::<f64>(&text).is_ok(), "{text} is a JSON number");
        }
        for micros in 0..20_000_u64 {
            let value = micros as f64 / 1000.0;
            assert_eq!(rendered(value).parse::<f64>().unwrap(), value, "{value}");
        }
    }

    #[test]
    fn finds_every_byte_that_needs_escaping_wherever_it_sits() {
        for special in [b'"', b'\\', b'\n', 0x00, 0x1f] {
            for length in 1..20 {
                for at in 0..length {
                    let mut text = vec![b'a'; length];
                    text[at] = special;
                    assert!(any_needs_escape(&text), "{special:#x} at {at} of {length}");
                }
            }
        }
        for plain in
            [&b""[..], b"x", b"GET /v1/operations/{id} 0123456789abcdef", "caf\u{e9} \u{2713} ~!#[]".as_bytes()]
        {
            assert!(!any_needs_escape(plain), "{plain:?}");
        }
        let every_plain_byte: Vec<u8> = (0x20..=0xff).filter(|b| *b != b'"' && *b != b'\\').collect();
        assert!(!any_needs_escape(&every_plain_byte));
    }

    /// What `log` writes through the JSON layer: its writer is stopped, and so drained, before
    /// the output is read.
    fn logged(log: impl FnOnce()) -> String {
        let capture = Capture::default();
        let (writer, guard) = BatchWriter::spawn(capture.clone()).unwrap();
        let subscriber = tracing_subscriber::registry().with(JsonLayer::new(writer));
        tracing::subscriber::with_default(subscriber, log);
        drop(guard);
        String::from_utf8(capture.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn fields_recorded_after_a_span_starts_appear_in_its_lines() {
        let output = logged(|| {
            let span = tracing::info_span!("request", request_id = "r-1", user = tracing::field::Empty);
            span.record("user", "ada");
            tracing::info!(parent: &span, "after");
        });
        let line: Value = serde_json::from_str(output.trim()).unwrap();
        assert_eq!(line["span"]["name"], "request", "{output}");
        assert_eq!(line["span"]["request_id"], "r-1", "{output}");
        assert_eq!(line["span"]["user"], "ada", "{output}");
    }

    #[test]
    fn a_line_inside_nested_spans_names_every_span_outermost_first() {
        let output = logged(|| {
            let _operation = tracing::info_span!("operation", operation_id = "op-1").entered();
            let _db = tracing::info_span!("db", table = "keel_operations").entered();
            tracing::info!("claimed");
        });
        let line: Value = serde_json::from_str(output.trim()).unwrap();
        assert_eq!(line["spans"][0]["name"], "operation", "{output}");
        assert_eq!(line["spans"][0]["operation_id"], "op-1", "{output}");
        assert_eq!(line["spans"][1]["name"], "db", "{output}");
        assert_eq!(line["spans"][1]["table"], "keel_operations", "{output}");
        assert_eq!(line["spans"].as_array().map(Vec::len), Some(2), "{output}");
        assert_eq!(line["span"]["name"], "db", "the innermost: {output}");
    }

    #[test]
    fn a_log_record_names_its_own_target_and_nothing_of_the_bridge() {
        let output = logged(|| {
            let retries = 3;
            tracing_log::format_trace(
                &log::Record::builder()
                    .args(format_args!("poll returned {retries}"))
                    .level(log::Level::Warn)
                    .target("mio::poll")
                    .module_path(Some("mio::poll"))
                    .file(Some("src/poll.rs"))
                    .line(Some(42))
                    .build(),
            )
            .unwrap();
        });
        let line: Value = serde_json::from_str(output.trim()).unwrap();
        assert_eq!(line["target"], "mio::poll", "{output}");
        assert_eq!(line["level"], "WARN", "{output}");
        assert_eq!(line["message"], "poll returned 3", "{output}");
        let mut keys: Vec<&String> = line.as_object().unwrap().keys().collect();
        keys.sort();
        assert_eq!(keys, ["level", "message", "target", "timestamp"], "no `log.*` field: {output}");
    }

    #[test]
    fn a_span_field_recorded_again_is_written_once_with_its_last_value() {
        let output = logged(|| {
            let span = tracing::info_span!("request", user = "a", attempt = tracing::field::Empty);
            span.record("user", "b");
            span.record("attempt", 1);
            span.record("attempt", 2);
            tracing::info!(parent: &span, "after");
        });
        assert_eq!(output.matches("\"user\"").count(), 2, "once in `span`, once in `spans`: {output}");
        assert_eq!(output.matches("\"attempt\"").count(), 2, "{output}");
        let line: Value = serde_json::from_str(output.trim()).unwrap();
        assert_eq!(line["span"]["user"], "b", "{output}");
        assert_eq!(line["span"]["attempt"], 2, "{output}");
        assert_eq!(line["spans"][0], line["span"], "{output}");
    }

    #[test]
    fn an_event_with_an_explicit_parent_carries_that_span() {
        let output = logged(|| {
            let request = tracing::info_span!("request", request_id = "r-1");
            let _other = tracing::info_span!("other", request_id = "r-2").entered();
            tracing::info!(parent: &request, "named parent");
            tracing::info!("current span");
        });
        let lines: Vec<Value> = output.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
        assert_eq!(lines[0]["span"]["request_id"], "r-1", "{output}");
        assert_eq!(lines[1]["span"]["request_id"], "r-2", "{output}");
    }

    #[test]
    fn writes_one_valid_json_object_per_event_with_its_span() {
        let output = logged(|| {
            let span = tracing::info_span!("request", route = "/v1/{id}", request_id = %"abc\"1");
            let _entered = span.enter();
            tracing::info!(status = 404u16, latency_ms = 1.5, ok = false, note = "a\nb\u{1}", "request finished");
        });
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
        let timestamp = line["timestamp"].as_str().unwrap();
        assert_eq!(line["span"]["route"], "/v1/{id}");
        let logged_at = OffsetDateTime::parse(timestamp, &Rfc3339).unwrap();
        assert!((OffsetDateTime::now_utc() - logged_at).abs() < time::Duration::minutes(1), "{timestamp}");
        assert!(timestamp.len() == 27 && timestamp.ends_with('Z'), "microseconds, UTC: {timestamp}");
    }

    #[test]
    fn a_line_logged_while_a_request_is_handled_names_the_request() {
        use axum::http::Method;

        use crate::telemetry::request::{RequestContext, RequestId};

        let output = logged(|| {
            let id = RequestId::sanitised(b"req-7").unwrap();
            let request = RequestContext { id, method: Method::POST, route: "/v1/operations/{id}" };
            request.sync_scope(|| {
                let _span = tracing::info_span!("database", table = "operations").entered();
                tracing::info!("inside");
            });
            tracing::info!("after");
        });
        let lines: Vec<Value> = output.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
        assert_eq!(lines[0]["request"]["id"], "req-7", "{output}");
        assert_eq!(lines[0]["request"]["method"], "POST", "{output}");
        assert_eq!(lines[0]["request"]["route"], "/v1/operations/{id}", "{output}");
        assert_eq!(lines[0]["span"]["table"], "operations", "a handler's own span is kept: {output}");
        assert!(lines[1].get("request").is_none(), "{output}");
    }
}
