//! What keel writes to its logs, read from the real binary's JSON output.

use crate::support::process::Process;
use serde_json::Value;

/// `GET path` with `x-request-id: request_id` and, if given, `authorization` and `cookie`.
async fn get(address: &str, path: &str, request_id: &str, credentials: Option<(&str, &str)>) -> reqwest::Response {
    let mut request = reqwest::Client::new().get(format!("http://{address}{path}")).header("x-request-id", request_id);
    if let Some((authorization, cookie)) = credentials {
        request = request.header("authorization", authorization).header("cookie", cookie);
    }
    request.send().await.unwrap()
}

/// Starts keel with `filter`, sends `GET path` with `request_id` and `status` expected, and
/// returns the first line with `message` logged for that request.
async fn line_for_request(filter: &str, path: &str, request_id: &str, status: u16, message: &str) -> Value {
    let (mut process, address) = Process::start(&[("APP_LOG__FILTER", filter)]);
    assert_eq!(get(&address, path, request_id, None).await.status(), status);
    let (request_id, message) = (request_id.to_owned(), message.to_owned());
    tokio::task::spawn_blocking(move || {
        process.wait_for_log(|line| line["message"] == *message && line["request_id"] == *request_id)
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
    assert_eq!(line["method"], "GET");
    assert_eq!(line["route"], "/v1/operations/{id}", "the route template, never the raw path");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_line_logged_for_a_request_names_it() {
    let line = line_for_request("info,keel_http=debug", "/healthz", "context-9", 200, "request started").await;
    assert_eq!(line["level"], "DEBUG");
    assert_eq!(line["route"], "/healthz");
    assert_eq!(line["method"], "GET");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_never_reach_the_logs() {
    let (mut process, address) = Process::start(&[("APP_LOG__FILTER", "trace")]);
    let credentials = ("Bearer top-secret-token", "session=top-secret-cookie");
    assert_eq!(get(&address, "/", "creds-1", Some(credentials)).await.status(), 200);
    let leaked = tokio::task::spawn_blocking(move || {
        let mut leaked = Vec::new();
        process.wait_for_log(|line| {
            if line.to_string().contains("top-secret") {
                leaked.push(line.clone());
            }
            line["message"] == "request finished" && line["request_id"] == "creds-1"
        });
        leaked
    })
    .await
    .unwrap();
    assert!(leaked.is_empty(), "{leaked:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handlers_own_lines_are_in_its_requests_span() {
    let (mut process, address) = Process::testbed(&[("APP_LOG__FILTER", "info")]);
    assert_eq!(get(&address, "/testbed/sleep?ms=1", "span-1", None).await.status(), 200);
    let line = tokio::task::spawn_blocking(move || {
        process.wait_for_log(|line| line["message"] == "napping" && line["request_id"] == "span-1")
    })
    .await
    .unwrap();
    assert_eq!(line["route"], "/testbed/sleep");
    assert_eq!(line["method"], "GET");
    assert_eq!(line["ms"], 1, "the event's own fields beside the span's: {line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operations_lines_name_it_and_a_panic_is_one_line_with_its_location() {
    let (mut process, address) = Process::testbed(&[("APP_LOG__FILTER", "info,keel_operations=debug")]);
    let submitted = reqwest::Client::new()
        .post(format!("http://{address}/v1/operations"))
        .json(&serde_json::json!({ "kind": "panic", "input": { "message": "kaboom" } }))
        .send()
        .await
        .unwrap();
    assert_eq!(submitted.status(), 202);
    let id = submitted.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let (started, panicked) = tokio::task::spawn_blocking(move || {
        let started =
            process.wait_for_log(|line| line["message"] == "operation started" && line["operation_id"] == *id);
        let panicked = process.wait_for_log(|line| line["message"] == "panicked" && line["operation_id"] == *id);
        (started, panicked)
    })
    .await
    .unwrap();
    for line in [&started, &panicked] {
        assert_eq!(line["kind"], "panic", "{line}");
        assert_eq!(line["attempt"], 1, "{line}");
        assert_eq!(line["owner"], "anonymous", "{line}");
    }
    assert_eq!(panicked["level"], "ERROR");
    assert_eq!(panicked["panic.message"], "kaboom");
    assert!(panicked["panic.location"].as_str().unwrap().contains("testkit/kinds.rs:"), "{panicked}");
}
