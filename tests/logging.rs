//! What keel writes to its logs, read from the real binary's JSON output.

mod common;

use common::process::Process;
use serde_json::Value;

/// Starts keel with `filter`, sends `GET path` with `request_id` and `status` expected, and
/// returns the first line with `message` logged for that request.
async fn line_for_request(filter: &str, path: &str, request_id: &str, status: u16, message: &str) -> Value {
    let (mut process, address) = Process::start(&[("APP_LOG__FILTER", filter)]);
    let response =
        reqwest::Client::new().get(format!("http://{address}{path}")).header("x-request-id", request_id).send().await;
    assert_eq!(response.unwrap().status(), status);
    let (request_id, message) = (request_id.to_owned(), message.to_owned());
    tokio::task::spawn_blocking(move || {
        process.wait_for_log(|line| line["message"] == *message && line["request"]["id"] == *request_id)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_request_gets_one_access_line_carrying_its_request_id() {
    let line = line_for_request("info", "/v1/operations/missing", "trace-me-42", 404, "request finished").await;
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["status"], 404);
    assert!(line["latency_ms"].is_number());
    assert_eq!(line["request"]["method"], "GET");
    assert_eq!(line["request"]["route"], "/v1/operations/{id}", "the route template, never the raw path");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_line_logged_for_a_request_names_it() {
    let line = line_for_request("info,keel::http=debug", "/healthz", "context-9", 200, "request started").await;
    assert_eq!(line["level"], "DEBUG");
    assert_eq!(line["request"]["route"], "/healthz");
    assert!(line.get("span").is_none(), "production logs open no span per request: {line}");
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
