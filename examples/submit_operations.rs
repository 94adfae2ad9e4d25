//! Submits exactly `count` operations to a running keel, `concurrency` at a time, and reports how
//! many were accepted. `make bench` uses it to measure memory per operation.
//!
//!     cargo run --release --example submit_operations -- http://127.0.0.1:8080 100000 64 '{"kind":"sleep","input":{"ms":1}}'

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let base = args.next().unwrap_or_else(|| "http://127.0.0.1:8080".to_owned());
    let count: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(1000);
    let concurrency: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(64);
    let body = args.next().unwrap_or_else(|| r#"{"kind":"sleep","input":{"ms":0}}"#.to_owned());

    let client = reqwest::Client::new();
    let url = format!("{base}/v1/operations");
    let next = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, url, body) = (client.clone(), url.clone(), body.clone());
            let (next, refused) = (next.clone(), refused.clone());
            tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < count {
                    let response =
                        client.post(&url).header("content-type", "application/json").body(body.clone()).send().await;
                    if !response.is_ok_and(|r| r.status().is_success()) {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("worker does not panic");
    }
    let refused = refused.load(Ordering::Relaxed);
    println!("{{\"submitted\": {count}, \"refused\": {refused}}}");
    if refused > 0 {
        std::process::exit(1);
    }
}
