//! Prometheus metrics: the names keel records, and the process-wide recorder behind `/metrics`.
//!
//! Recording goes through the `metrics` facade, so the operation layer records without knowing
//! about Prometheus or HTTP. Labels are bounded by design: routes are templates (never raw paths),
//! kinds and statuses come from fixed sets.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const HTTP_REQUESTS: &str = "http_requests_total";
pub const HTTP_REQUEST_DURATION: &str = "http_request_duration_seconds";
pub const HTTP_REQUESTS_IN_FLIGHT: &str = "http_requests_in_flight";
pub const OPERATIONS_SUBMITTED: &str = "operations_submitted_total";
pub const OPERATIONS_FINISHED: &str = "operations_finished_total";
pub const OPERATIONS_REJECTED: &str = "operations_rejected_total";
pub const OPERATIONS_RETRIED: &str = "operations_retried_total";
pub const OPERATIONS_RUNNING: &str = "operations_running";
pub const OPERATIONS_QUEUED: &str = "operations_queued";
pub const OPERATION_RUN_DURATION: &str = "operation_run_duration_seconds";
pub const PROCESS_UPTIME: &str = "process_uptime_seconds";
pub const BUILD_INFO: &str = "keel_build_info";

/// Latency buckets, in seconds, from 1 ms to a minute.
const SECONDS_BUCKETS: &[f64] = &[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// How often histogram samples are folded into their buckets.
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

struct Recorder {
    handle: PrometheusHandle,
    started: Instant,
}

static RECORDER: OnceLock<Recorder> = OnceLock::new();

/// The process-wide recorder, installed on first use. A process has one global recorder, so
/// every `Application` in it (tests start many) shares it.
pub fn recorder() -> &'static PrometheusHandle {
    &RECORDER.get_or_init(install).handle
}

fn install() -> Recorder {
    let builder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), SECONDS_BUCKETS)
        .unwrap_or_else(|_| PrometheusBuilder::new());
    let recorder = builder.build_recorder();
    let handle = recorder.handle();
    if metrics::set_global_recorder(recorder).is_err() {
        tracing::warn!("another metrics recorder is installed; /metrics will show only what it does not take");
    }
    describe();
    Recorder { handle, started: Instant::now() }
}

fn describe() {
    describe_counter!(OPERATIONS_RETRIED, "Operations queued again after a retryable failure, by kind");
    describe_counter!(HTTP_REQUESTS, "HTTP requests answered, by method, route template and status");
    describe_gauge!(HTTP_REQUESTS_IN_FLIGHT, "HTTP requests being handled now");
    describe_histogram!(
        HTTP_REQUEST_DURATION,
        Unit::Seconds,
        "Time to the response head, by method and route template"
    );
    describe_counter!(OPERATIONS_SUBMITTED, "Operations accepted, by kind");
    describe_counter!(OPERATIONS_FINISHED, "Operations that reached a terminal status, by kind and status");
    describe_counter!(OPERATIONS_REJECTED, "Submissions refused, by reason (queue_full, shutting_down)");
    describe_gauge!(OPERATIONS_RUNNING, "Operations running now");
    describe_gauge!(OPERATIONS_QUEUED, "Operations waiting for a slot");
    describe_histogram!(OPERATION_RUN_DURATION, Unit::Seconds, "How long operations ran, by kind");
    describe_gauge!(PROCESS_UPTIME, Unit::Seconds, "Seconds since the metrics recorder started");
    describe_gauge!(BUILD_INFO, "Always 1; the labels carry the version and git commit");
}

/// Records `keel_build_info` for the service: its version and the git commit it was built from.
/// The service calls it at start-up with its own `CARGO_PKG_VERSION`; a library's would say
/// nothing about what runs.
pub fn record_build_info(version: &'static str, commit: &'static str) {
    recorder();
    metrics::gauge!(BUILD_INFO, "version" => version, "commit" => commit).set(1.0);
}

/// Renders the Prometheus text format, refreshing the uptime first.
pub fn render() -> String {
    let recorder = RECORDER.get_or_init(install);
    metrics::gauge!(PROCESS_UPTIME).set(recorder.started.elapsed().as_secs_f64());
    recorder.handle.render()
}
