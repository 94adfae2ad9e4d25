//! The request-scoped examples (`src/routes/examples/`). Delete this file with that folder (the
//! guide in docs/guides/remove-the-examples.md says so); the middleware's own tests use the test bed's slow route instead.

use crate::support::{get, router, settings, settings_with};

#[tokio::test]
async fn fanout_runs_concurrently() {
    let (app, _) = router(settings());
    let answer = get(&app, "/examples/fanout?n=20&ms=200").await;
    assert_eq!(answer.status, 200);
    let body = answer.json();
    assert_eq!(body["results"].as_array().unwrap().len(), 20);
    // Serially this would take 4 s; the generous bound only rules that out.
    assert!(body["elapsed_ms"].as_u64().unwrap() < 2000, "{body}");
}

#[tokio::test]
async fn blocking_work_runs_and_answers() {
    let (app, _) = router(settings());
    let answer = get(&app, "/examples/blocking?limit=100000").await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json()["primes_below_limit"], 9592);
}

#[tokio::test]
async fn the_sleep_example_is_cut_off_by_the_request_timeout() {
    let (app, _) =
        router(settings_with(&[("APP_SERVER__REQUEST_TIMEOUT_MS", "50"), ("APP_OPERATIONS__MAX_WAIT_MS", "10")]));
    get(&app, "/examples/sleep?ms=5000").await.problem(503, "request-timeout");
    assert_eq!(get(&app, "/examples/sleep?ms=1").await.status, 200);
}

#[tokio::test]
async fn bad_parameters_are_400_problems() {
    let (app, _) = router(settings());
    for uri in [
        "/examples/fanout?n=abc&ms=1",
        "/examples/fanout?n=3",
        "/examples/fanout?n=0&ms=1",
        "/examples/fanout?n=1000000&ms=1",
        "/examples/blocking?limit=999999999999",
        "/examples/blocking?limit=1",
        "/examples/sleep?ms=99999999999999999999999",
        "/examples/sleep?ms=600001",
    ] {
        get(&app, uri).await.problem(400, "invalid-request");
    }
}

#[tokio::test]
async fn the_examples_are_documented() {
    let doc = get(&router(settings()).0, "/openapi.json").await.json();
    for path in ["/examples/fanout", "/examples/blocking", "/examples/sleep"] {
        let summary = doc["paths"][path]["get"]["summary"].as_str().unwrap_or_default();
        assert!(!summary.is_empty(), "{path} is documented: {}", doc["paths"][path]);
    }
    let tags = doc["tags"].as_array().unwrap();
    assert!(tags.iter().any(|tag| tag["name"] == "examples"), "their tag is described: {tags:?}");
}
