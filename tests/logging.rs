//! What keel writes to its logs, read from the real binary's JSON output.

mod common;

use common::process::Process;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_request_gets_one_access_line_carrying_its_request_id() {
    let (mut process, address) = Process::start(&[("APP_LOG__FILTER", "info")]);
    let response = reqwest::Client::new()
        .get(format!("http://{address}/v1/operations/missing"))
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let line = tokio::task::spawn_blocking(move || {
        process.wait_for_log(|line| line["message"] == "request finished" && line["request"]["id"] == "trace-me-42")
    })
    .await
    .unwrap();
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["status"], 404);
    assert!(line["latency_ms"].is_number());
    assert_eq!(line["request"]["method"], "GET");
    assert_eq!(line["request"]["route"], "/v1/operations/{id}", "the route template, never the raw path");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_line_logged_for_a_request_names_it() {
    let (mut process, address) = Process::start(&[("APP_LOG__FILTER", "info,keel::http=debug")]);
    let response = reqwest::Client::new()
        .get(format!("http://{address}/healthz"))
        .header("x-request-id", "context-9")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let started = tokio::task::spawn_blocking(move || {
        process.wait_for_log(|line| line["message"] == "request started" && line["request"]["id"] == "context-9")
    })
    .await
    .unwrap();
    assert_eq!(started["level"], "DEBUG");
    assert_eq!(started["request"]["route"], "/healthz");
    assert!(started.get("span").is_none(), "production logs open no span per request: {started}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_never_reach_the_logs() {
    let (mut process, address) = Process::start(&[("APP_LOG__FILTER", "trace")]);
    let response = reqwest::Client::new()
        .get(format!("http://{address}/"))
        .header("authorization", "Bearer top-secret-token")
        .header("cookie", "session=top-secret-cookie")
        .header("x-request-id", "creds-1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let leaked = tokio::task::spawn_blocking(move || {
        let mut leaked = Vec::new();
        process.wait_for_log(|line| {
            if line.to_string().contains("top-secret") {
                leaked.push(line.clone());
            }
            line["message"] == "request finished" && line["request"]["id"] == "creds-1"
        });
        leaked
    })
    .await
    .unwrap();
    assert!(leaked.is_empty(), "{leaked:?}");
}
