//! The demo kinds (`src/kinds/demo/`) through the HTTP surface, as keel registers
//! them. Delete this file with that folder (docs/guides/remove-the-examples.md says so); every other test runs
//! on the test bed's own kinds.

use std::time::Duration;

use crate::support::{get, keel_router, post_json, settings};
use keel_http::App;
use serde_json::{Value, json};

async fn submitted(app: &App, kind: &str, input: Value) -> String {
    let answer = post_json(app, "/v1/operations", json!({ "kind": kind, "input": input })).await;
    assert_eq!(answer.status, 202, "{}", answer.text());
    answer.json()["id"].as_str().unwrap().to_owned()
}

/// Long-polls until the operation is done; a minute at most.
async fn finished(app: &App, id: &str) -> Value {
    for _ in 0..60 {
        let op = get(app, &format!("/v1/operations/{id}/wait?timeout_ms=1000")).await.json();
        if op["done"] == true {
            return op;
        }
    }
    panic!("operation {id} not done within a minute");
}

#[tokio::test(start_paused = true)]
async fn sleep_and_fanout_produce_their_results() {
    let (app, _) = keel_router(settings());
    let sleep = submitted(&app, "sleep", json!({ "ms": 1000, "steps": 4 })).await;
    let fanout = submitted(&app, "fanout", json!({ "n": 5, "ms": 100 })).await;
    let sleep = finished(&app, &sleep).await;
    assert_eq!(sleep["result"], json!({ "slept_ms": 1000, "steps": 4 }));
    assert_eq!(sleep["progress"]["message"], "step 4 of 4");
    let fanout = finished(&app, &fanout).await;
    assert_eq!(fanout["result"], json!({ "completion_order": [0, 1, 2, 3, 4] }));
    assert_eq!(fanout["progress"]["message"], "5 of 5 sub-tasks done");
}

#[tokio::test]
async fn the_failing_kinds_fail_and_flaky_succeeds_on_a_later_attempt() {
    let (app, _) = keel_router(settings());
    let fail = finished(&app, &submitted(&app, "fail", json!({ "message": "no such customer" })).await).await;
    assert_eq!((fail["status"].as_str(), fail["error"]["detail"].as_str()), (Some("failed"), Some("no such customer")));
    let panic = finished(&app, &submitted(&app, "panic", json!({ "message": "internal secret" })).await).await;
    assert_eq!(panic["error"]["type"], "internal");
    assert!(!panic["error"].to_string().contains("internal secret"), "a panic's text stays in the log: {panic}");
    let flaky = finished(&app, &submitted(&app, "flaky", json!({ "failures": 1 })).await).await;
    assert_eq!((flaky["status"].as_str(), flaky["result"]["attempt"].as_u64()), (Some("succeeded"), Some(2)));
}

#[tokio::test]
async fn digest_is_deterministic_and_stops_when_cancelled() {
    let (app, state) = keel_router(settings());
    let first = finished(&app, &submitted(&app, "digest", json!({ "rounds": 1000 })).await).await;
    assert_eq!(first["result"]["rounds"], 1000);
    assert_eq!(first["result"]["digest"].as_str().map(str::len), Some(16));
    let again = finished(&app, &submitted(&app, "digest", json!({ "rounds": 1000 })).await).await;
    assert_eq!(again["result"], first["result"], "deterministic");

    let huge = submitted(&app, "digest", json!({ "rounds": 10_000_000_000u64 })).await;
    // Cancelled while it runs on the blocking pool: waits for the change to `running`.
    let mut changes = state.executor.watch(&huge).await.unwrap();
    let running = changes.wait_for(|op| op.status == keel_operations::Status::Running);
    tokio::time::timeout(Duration::from_secs(60), running).await.expect("it starts within a minute").unwrap();
    let cancel = post_json(&app, &format!("/v1/operations/{huge}/cancel"), json!({})).await;
    assert_eq!(cancel.json()["status"], "canceled");
    // Cancelled blocking work checks its token between chunks and gives its pool place back.
    let next = finished(&app, &submitted(&app, "digest", json!({ "rounds": 10 })).await).await;
    assert_eq!(next["status"], "succeeded");
}

#[tokio::test]
async fn out_of_range_input_is_422_and_creates_nothing() {
    let (app, _) = keel_router(settings());
    for (kind, input) in [
        ("sleep", json!({ "ms": 3_600_001 })),
        ("fanout", json!({ "n": 0, "ms": 1 })),
        ("digest", json!({ "rounds": 0 })),
        ("flaky", json!({ "failures": 11 })),
        ("fail", json!({ "message": "x".repeat(1001) })),
    ] {
        let answer = post_json(&app, "/v1/operations", json!({ "kind": kind, "input": input })).await;
        answer.problem(422, "validation-failed");
    }
    assert_eq!(get(&app, "/v1/operations").await.json()["operations"], json!([]));
}

#[tokio::test]
async fn the_document_states_each_demo_kinds_input_and_result() {
    let doc = get(&keel_router(settings()).0, "/openapi.json").await.json();
    let schemas = &doc["components"]["schemas"];
    for kind in ["sleep", "fanout", "digest", "fail", "panic", "flaky"] {
        assert!(schemas[format!("Submit.{kind}").as_str()].is_object(), "{kind} is documented");
    }
    let sleep = &schemas["SleepInput"];
    assert_eq!(sleep["required"], json!(["ms"]));
    assert_eq!(sleep["properties"]["ms"]["maximum"], 3_600_000, "the limit `validate` enforces");
    assert_eq!(schemas["Submit.sleep"]["required"], json!(["kind", "input"]));
    assert_eq!(schemas["Submit.fail"]["required"], json!(["kind"]), "`{{}}` is a valid `fail` input");
    let results = schemas["Operation"]["properties"]["result"]["anyOf"].as_array().unwrap();
    assert!(results.contains(&json!({ "$ref": "#/components/schemas/SleepOutput" })), "{results:?}");
}
