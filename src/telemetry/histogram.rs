//! Latency histograms that keep only what Prometheus reads: a count per bucket and a sum.
//!
//! metrics-exporter-prometheus keeps every sample of a histogram, with the time it was taken,
//! until its upkeep folds the samples into buckets. For the request latency that was a queue
//! push and a clock reading per request, and at 100,000 requests a second several megabytes
//! held between two upkeeps. A histogram here is its buckets: a sample is a search of the
//! bounds and two atomic additions, and memory stays fixed whatever the traffic.
//!
//! They record through the `metrics` facade like any histogram (`metrics::Histogram` wraps one),
//! and `/metrics` renders them after the exporter's own series (see `metrics.rs`).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use metrics::HistogramFn;

/// One series: a count per bucket (not cumulative; the last is above every bound) and the sum of
/// the samples in nanoseconds. The count is the buckets' total, so a scrape never shows a
/// count that disagrees with the `+Inf` bucket.
pub struct SecondsHistogram {
    bounds: &'static [f64],
    buckets: Box<[AtomicU64]>,
    sum_nanos: AtomicU64,
}

impl SecondsHistogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self { bounds, buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(), sum_nanos: AtomicU64::new(0) }
    }

    /// Appends the series' lines: cumulative buckets, sum and count. `labels` is rendered
    /// already (`method="GET",route="/"`), or empty.
    fn render(&self, name: &str, labels: &str, out: &mut String) {
        let (bucket_labels, labels) = if labels.is_empty() {
            (String::new(), String::new())
        } else {
            (format!("{labels},"), format!("{{{labels}}}"))
        };
        let mut cumulative = 0;
        for (index, bucket) in self.buckets.iter().enumerate() {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = match self.bounds.get(index) {
                Some(bound) => writeln!(out, "{name}_bucket{{{bucket_labels}le=\"{bound}\"}} {cumulative}"),
                None => writeln!(out, "{name}_bucket{{{bucket_labels}le=\"+Inf\"}} {cumulative}"),
            };
        }
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum{labels} {sum}");
        let _ = writeln!(out, "{name}_count{labels} {cumulative}");
    }
}

impl HistogramFn for SecondsHistogram {
    /// Records `seconds`; a negative or NaN sample counts in the first bucket and adds nothing
    /// to the sum.
    fn record(&self, seconds: f64) {
        // The first bound at or above the sample: Prometheus buckets are `le`, less or equal.
        let bucket = self.bounds.partition_point(|bound| *bound < seconds);
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        // Saturating: NaN and negatives become 0, absurdly large samples the largest sum.
        self.sum_nanos.fetch_add((seconds * 1e9) as u64, Ordering::Relaxed);
    }
}

/// The series of one histogram name.
struct Family {
    name: &'static str,
    help: &'static str,
    series: Vec<(String, Arc<SecondsHistogram>)>,
}

/// Every histogram of this kind in the process. Series are registered once each (the request
/// metrics keep their handles), so the lock is taken on registration and at scrape time only.
static FAMILIES: Mutex<Vec<Family>> = Mutex::new(Vec::new());

/// The series `name{labels}` with `bounds` (in seconds), registered on first use; the same
/// name and labels give the same series. `help` describes the name the first time it is seen.
pub fn seconds_histogram(
    name: &'static str,
    help: &'static str,
    bounds: &'static [f64],
    labels: &[(&str, &str)],
) -> metrics::Histogram {
    let labels = render_labels(labels);
    let mut families = FAMILIES.lock().unwrap_or_else(PoisonError::into_inner);
    let family = match families.iter().position(|family| family.name == name) {
        Some(index) => &mut families[index],
        None => {
            families.push(Family { name, help, series: Vec::new() });
            families.last_mut().unwrap_or_else(|| unreachable!("just pushed"))
        }
    };
    let histogram = match family.series.iter().find(|(rendered, _)| *rendered == labels) {
        Some((_, histogram)) => Arc::clone(histogram),
        None => {
            let histogram = Arc::new(SecondsHistogram::new(bounds));
            family.series.push((labels, Arc::clone(&histogram)));
            histogram
        }
    };
    metrics::Histogram::from_arc(histogram)
}

/// Appends every registered histogram in the Prometheus text format.
pub fn render(out: &mut String) {
    let families = FAMILIES.lock().unwrap_or_else(PoisonError::into_inner);
    for family in families.iter() {
        let _ = writeln!(out, "# HELP {} {}", family.name, family.help);
        let _ = writeln!(out, "# TYPE {} histogram", family.name);
        for (labels, histogram) in &family.series {
            histogram.render(family.name, labels, out);
        }
        out.push('\n');
    }
}

/// `key="value",...`, with the value escaped as the text format asks (`\\`, `\"`, `\n`).
fn render_labels(labels: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (index, (key, value)) in labels.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        out.push_str(key);
        out.push_str("=\"");
        for character in value.chars() {
            match character {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                other => out.push(other),
            }
        }
        out.push('"');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDS: &[f64] = &[0.001, 0.01, 0.1];

    fn rendered(histogram: &SecondsHistogram) -> String {
        let mut out = String::new();
        histogram.render("latency_seconds", "route=\"/\"", &mut out);
        out
    }

    #[test]
    fn samples_fall_in_the_first_bucket_whose_bound_they_do_not_exceed() {
        let histogram = SecondsHistogram::new(BOUNDS);
        for seconds in [0.0005, 0.001, 0.002, 0.01, 0.5, 7.0] {
            histogram.record(seconds);
        }
        let text = rendered(&histogram);
        let expected = [
            "latency_seconds_bucket{route=\"/\",le=\"0.001\"} 2",
            "latency_seconds_bucket{route=\"/\",le=\"0.01\"} 4",
            "latency_seconds_bucket{route=\"/\",le=\"0.1\"} 4",
            "latency_seconds_bucket{route=\"/\",le=\"+Inf\"} 6",
            "latency_seconds_sum{route=\"/\"} 7.5135",
            "latency_seconds_count{route=\"/\"} 6",
        ];
        assert_eq!(text.lines().collect::<Vec<_>>(), expected);
    }

    #[test]
    fn a_nonsense_sample_is_counted_without_spoiling_the_sum() {
        let histogram = SecondsHistogram::new(BOUNDS);
        histogram.record(f64::NAN);
        histogram.record(-1.0);
        histogram.record(0.25);
        let text = rendered(&histogram);
        assert!(text.contains("latency_seconds_sum{route=\"/\"} 0.25\n"), "{text}");
        assert!(text.contains("latency_seconds_count{route=\"/\"} 3\n"), "{text}");
    }

    #[test]
    fn the_same_name_and_labels_give_the_same_series() {
        let labels = [("route", "/same"), ("method", "GET")];
        seconds_histogram("test_same_seconds", "help", BOUNDS, &labels).record(0.5);
        seconds_histogram("test_same_seconds", "help", BOUNDS, &labels).record(0.5);
        let mut out = String::new();
        render(&mut out);
        assert_eq!(out.matches("# TYPE test_same_seconds histogram").count(), 1, "{out}");
        assert!(out.contains("test_same_seconds_count{route=\"/same\",method=\"GET\"} 2\n"), "{out}");
    }

    #[test]
    fn a_series_without_labels_renders_without_braces() {
        let histogram = SecondsHistogram::new(BOUNDS);
        histogram.record(0.5);
        let mut out = String::new();
        histogram.render("plain_seconds", "", &mut out);
        assert!(out.starts_with("plain_seconds_bucket{le=\"0.001\"} 0\n"), "{out}");
        assert!(out.ends_with("plain_seconds_sum 0.5\nplain_seconds_count 1\n"), "{out}");
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(render_labels(&[("a", "x\"y\\z\nw"), ("b", "")]), r#"a="x\"y\\z\nw",b="""#);
    }
}
