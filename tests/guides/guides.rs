//! What the README's guides build, checked once scripts/guides.py has followed them on a copy
//! of the tree (scripts/test-guides.sh copies this file into that copy's tests/). Not part of
//! this tree's own tests: here neither `/greet` nor `wordcount` exists.

mod common;

use common::{get, post_json, router, settings};
use serde_json::json;

#[tokio::test]
async fn the_endpoint_guide_gives_a_documented_endpoint_behind_the_middleware() {
    let (app, _) = router(settings());
    let answer = get(&app, "/greet?name=x").await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.text(), "Hello, x!");
    assert!(answer.header("x-request-id").is_some(), "the middleware stack is around it");
    let long = "n".repeat(101);
    get(&app, &format!("/greet?name={long}")).await.problem(400, "invalid-request");
    get(&app, "/greet").await.problem(400, "invalid-request");
    let doc = get(&app, "/openapi.json").await.json();
    assert!(
        doc["paths"]["/greet"]["get"]["summary"].as_str().is_some_and(|s| !s.is_empty()),
        "{}",
        doc["paths"]["/greet"]
    );
}

#[tokio::test]
async fn the_kind_guide_gives_a_kind_that_runs_and_is_documented() {
    let (app, _) = router(settings());
    let answer =
        post_json(&app, "/v1/operations", json!({ "kind": "wordcount", "input": { "text": "a b A c", "top": 1 } }))
            .await;
    assert_eq!(answer.status, 202, "{}", answer.text());
    let id = answer.json()["id"].as_str().unwrap().to_owned();
    // A long poll: answers as soon as the operation is done.
    let done = get(&app, &format!("/v1/operations/{id}/wait?timeout_ms=1500")).await.json();
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["result"], json!({ "words": 4, "top": [{ "word": "a", "count": 2 }] }));
    post_json(&app, "/v1/operations", json!({ "kind": "wordcount", "input": { "text": "a", "top": 0 } }))
        .await
        .problem(422, "validation-failed");
    let doc = get(&app, "/openapi.json").await.json();
    assert_eq!(doc["components"]["schemas"]["WordCountInput"]["properties"]["top"]["maximum"], 100);
}
