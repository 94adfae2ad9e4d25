//! Submits trivial operations to running keel replicas at a fixed rate, then reports how long
//! each waited in the queue: `started_at - created_at`, as p50 and p99 in milliseconds.
//! `make bench` uses it for the Postgres store's queue latency at half its measured throughput.
//!
//!     cargo run --release --example queue_latency -- 1000 5 http://127.0.0.1:8081 http://127.0.0.1:8082

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let rate: u64 = args.next().and_then(|n| n.parse().ok()).unwrap_or(1000);
    let seconds: u64 = args.next().and_then(|n| n.parse().ok()).unwrap_or(5);
    let bases: Vec<String> = args.collect();
    let bases = if bases.is_empty() { vec!["http://127.0.0.1:8080".to_owned()] } else { bases };
    let client = reqwest::Client::new();

    // Submissions on a fixed schedule, spread over the replicas; each in a task of its own, so
    // that a slow answer does not delay the next submission.
    let mut ticks = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate.max(1)));
    let mut submissions = Vec::new();
    for n in 0..rate * seconds {
        ticks.tick().await;
        let url = format!("{}/v1/operations", bases[n as usize % bases.len()]);
        let client = client.clone();
        submissions.push(tokio::spawn(async move {
            let answer =
                client.post(url).json(&serde_json::json!({ "kind": "sleep", "input": { "ms": 0 } })).send().await;
            let operation: Value = answer.ok()?.json().await.ok()?;
            operation["id"].as_str().map(str::to_owned)
        }));
    }
    let mut ids = Vec::new();
    for submission in submissions {
        ids.extend(submission.await.ok().flatten());
    }
    let refused = rate * seconds - ids.len() as u64;

    let waits = futures_util::stream::iter(ids.into_iter().enumerate()).map(|(n, id)| {
        let client = client.clone();
        let url = format!("{}/v1/operations/{id}/wait?timeout_ms=10000", bases[n % bases.len()]);
        async move {
            let operation: Value = client.get(url).send().await.ok()?.json().await.ok()?;
            let at = |field: &str| OffsetDateTime::parse(operation[field].as_str()?, &Rfc3339).ok();
            Some((at("started_at")? - at("created_at")?).as_seconds_f64() * 1000.0)
        }
    });
    let mut waited: Vec<f64> = waits.buffer_unordered(64).filter_map(|w| async move { w }).collect().await;
    waited.sort_by(f64::total_cmp);
    let percentile =
        |p: f64| waited.get(((waited.len() as f64 * p) as usize).min(waited.len().saturating_sub(1))).copied();
    println!(
        "{{\"operations\": {}, \"refused\": {refused}, \"p50_ms\": {}, \"p99_ms\": {}}}",
        waited.len(),
        percentile(0.50).unwrap_or(f64::NAN),
        percentile(0.99).unwrap_or(f64::NAN)
    );
}
