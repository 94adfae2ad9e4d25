//! What the guides in docs/guides/ build, checked once scripts/guides.py has followed them on a
//! copy of the tree (scripts/test-guides.sh makes this file a module of that copy's
//! tests/service/). Not part of this tree's own tests: here neither `/greet`, `wordcount` nor
//! `service.greeting` exists, and the examples and the demo kinds are still in.

use keel::config::ServiceSettings;

use crate::support::{get, keel_router, post_json, settings, settings_with};
use serde_json::json;

#[tokio::test]
async fn the_endpoint_guide_gives_a_documented_endpoint_behind_the_middleware() {
    let (app, _) = keel_router(settings());
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
    let (app, _) = keel_router(settings());
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

#[test]
fn the_configuration_guide_gives_a_key_with_a_default_an_override_and_a_check() {
    let greeting = |settings| ServiceSettings::from_settings(&settings).unwrap().greeting;
    assert_eq!(greeting(settings()), "Hello", "the default from config/default.toml");
    assert_eq!(greeting(settings_with(&[("APP_SERVICE__GREETING", "Hi")])), "Hi");
    let refused = keel::config::load_from([("APP_SERVICE__GREETING".to_owned(), " ".to_owned())]);
    let error = refused.unwrap_err().to_string();
    assert!(error.contains("service.greeting"), "{error}");
}

#[tokio::test]
async fn the_removal_guide_leaves_neither_the_examples_nor_the_demo_kinds() {
    let (app, _) = keel_router(settings());
    get(&app, "/examples/fanout?n=1&ms=1").await.problem(404, "not-found");
    post_json(&app, "/v1/operations", json!({ "kind": "sleep", "input": { "ms": 1 } }))
        .await
        .problem(422, "validation-failed");
    assert_eq!(keel::kinds::registry().names(), ["wordcount"], "the guide's kind is all that is left");
    let doc = get(&app, "/openapi.json").await.json();
    let paths: Vec<_> = doc["paths"].as_object().unwrap().keys().filter(|path| path.starts_with("/examples")).collect();
    assert!(paths.is_empty(), "{paths:?}");
    assert!(doc["tags"].as_array().unwrap().iter().all(|tag| tag["name"] != "examples"), "{}", doc["tags"]);
    assert!(doc["components"]["schemas"]["Submit.sleep"].is_null());
}
