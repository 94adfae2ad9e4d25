//! `/v1/operations` through the HTTP surface: in-process for the rules, over a real socket for
//! long polls and Server-Sent Events.

use std::time::Duration;

use crate::support::{Answer, get, post_json, router, send, settings, settings_with, spawn_app};
use axum::body::Body;
use axum::http::Request;
use keel_http::App;
use keel_http::AppState;
use keel_operations::Status;
use serde_json::{Value, json};

async fn submit(app: &App, body: Value) -> Answer {
    post_json(app, "/v1/operations", body).await
}

async fn submit_with(app: &App, body: Value, headers: &[(&str, &str)]) -> Answer {
    let mut request = Request::post("/v1/operations").header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    send(app, request.body(Body::from(body.to_string())).unwrap()).await
}

async fn submitted_id(app: &App, body: Value) -> String {
    let answer = submit(app, body).await;
    assert_eq!(answer.status, 202, "{}", answer.text());
    answer.json()["id"].as_str().unwrap().to_owned()
}

async fn until_status(state: &AppState, id: &str, status: Status) {
    let mut changes = state.executor.watch(id).await.unwrap();
    changes.wait_for(|op| op.status == status).await.unwrap();
}

async fn total(app: &App) -> usize {
    get(app, "/v1/operations?page_size=1000").await.json()["operations"].as_array().unwrap().len()
}

/// Submits on a real server and returns the `Operation-Location` and `Location` it answered,
/// the operation's id, and the server, still running.
async fn submitted_locations(
    settings: keel_config::Settings,
    host: Option<&str>,
) -> (String, String, String, crate::support::TestApp) {
    let server = spawn_app(settings).await;
    let mut request = server
        .client
        .post(format!("{}/v1/operations", server.address))
        .json(&json!({ "kind": "sleep", "input": { "ms": 0 } }));
    if let Some(host) = host {
        request = request.header("host", host);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 202);
    let header = |name: &str| response.headers().get(name).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    let (operation_location, location) = (header("operation-location"), header("location"));
    let id = response.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    (operation_location, location, id, server)
}

#[tokio::test]
async fn the_operation_location_is_absolute_from_the_requests_host() {
    let (operation_location, location, id, _server) = submitted_locations(settings(), None).await;
    assert!(operation_location.starts_with("http://127.0.0.1:"), "{operation_location}");
    assert!(operation_location.ends_with(&format!("/v1/operations/{id}")), "{operation_location}");
    assert_eq!(location, operation_location);
    // What a generic poller does with it: follow it as it is.
    let polled = reqwest::get(&operation_location).await.unwrap();
    assert_eq!(polled.status(), 200, "{operation_location}");
}

#[tokio::test]
async fn the_configured_public_url_is_the_base_whatever_host_the_client_sends() {
    let settings = settings_with(&[("APP_SERVER__PUBLIC_URL", "https://api.example.com/billing/")]);
    let (operation_location, location, id, _server) = submitted_locations(settings, Some("evil.test")).await;
    assert_eq!(operation_location, format!("https://api.example.com/billing/v1/operations/{id}"));
    assert_eq!(location, operation_location);
}

#[tokio::test]
async fn a_host_that_is_not_a_plain_host_never_reaches_the_location() {
    let (app, _) = router(settings());
    let body = json!({ "kind": "sleep", "input": { "ms": 0 } });
    for host in ["evil.test/phish", "user@evil.test", "evil.test:1:2", "evil_test", "x.test?y"] {
        let answer = submit_with(&app, body.clone(), &[("host", host), ("x-forwarded-host", "evil.test")]).await;
        assert_eq!(answer.status, 202, "{host}");
        let id = answer.json()["id"].as_str().unwrap().to_owned();
        assert_eq!(answer.header("operation-location"), Some(format!("/v1/operations/{id}").as_str()), "{host}");
    }
    let forwarded = [("host", "keel.internal:8080"), ("x-forwarded-host", "evil.test"), ("x-forwarded-proto", "https")];
    let answer = submit_with(&app, body, &forwarded).await;
    let id = answer.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(
        answer.header("operation-location"),
        Some(format!("http://keel.internal:8080/v1/operations/{id}").as_str()),
        "X-Forwarded-* are never read"
    );
}

#[tokio::test]
async fn a_submission_is_accepted_with_its_location() {
    let (app, _) = router(settings());
    let answer = submit(&app, json!({ "kind": "sleep", "input": { "ms": 10 } })).await;
    assert_eq!(answer.status, 202);
    let op = answer.json();
    let location = format!("/v1/operations/{}", op["id"].as_str().unwrap());
    assert_eq!(answer.header("location"), Some(location.as_str()));
    assert_eq!(answer.header("operation-location"), Some(location.as_str()));
    assert_eq!(answer.header("retry-after"), Some("1"));
    assert_eq!(op["kind"], "sleep");
    assert_eq!(op["done"], false);
    assert_eq!(op["input"], json!({ "ms": 10 }));
    assert!(op["id"].as_str().unwrap().len() >= 32, "unguessable: 128 random bits");
    for field in ["created_at", "deadline_at"] {
        let stamp = op[field].as_str().unwrap();
        assert!(time::OffsetDateTime::parse(stamp, &time::format_description::well_known::Rfc3339).is_ok(), "{stamp}");
    }
    let fetched = get(&app, &location).await;
    assert_eq!(fetched.status, 200);
    assert_eq!(fetched.json()["id"], op["id"]);
}

#[tokio::test]
async fn an_unknown_or_malformed_id_is_404() {
    let (app, _) = router(settings());
    get(&app, "/v1/operations/0123456789abcdef0123456789abcdef").await.problem(404, "not-found");
    get(&app, &format!("/v1/operations/{}", "x".repeat(5000))).await.problem(404, "not-found");
    get(&app, "/v1/operations/..%2F..%2Fetc%2Fpasswd").await.problem(404, "not-found");
    get(&app, "/v1/operations/%FF%FE").await.problem(404, "not-found");
}

#[tokio::test]
async fn bad_submissions_are_refused_and_create_nothing() {
    let (app, _) = router(settings());
    let cases = [
        json!({ "kind": "no-such-kind" }),
        json!({ "kind": "sleep", "input": { "ms": "soon" } }),
        json!({ "kind": "sleep", "input": { "ms": 1, "surprise": true } }),
        json!({ "kind": "sleep", "input": { "ms": 1, "steps": 0 } }),
        json!({ "kind": "sleep", "input": { "ms": 1 }, "timeout_ms": 0 }),
        json!({ "kind": "sleep", "input": { "ms": 1 }, "timeout_ms": 999_999_999_999u64 }),
        json!({ "kind": "sleep", "input": { "ms": 1 }, "priority": "high" }),
        json!({ "input": { "ms": 1 } }),
        json!([1, 2, 3]),
    ];
    for body in cases {
        let answer = submit(&app, body.clone()).await;
        assert_eq!(answer.status, 422, "{body} → {}", answer.text());
        answer.problem(422, "validation-failed");
    }
    assert_eq!(total(&app).await, 0);
}

#[tokio::test]
async fn the_same_idempotency_key_and_body_return_the_same_operation() {
    let (app, _) = router(settings());
    let body = json!({ "kind": "sleep", "input": { "ms": 10 } });
    let first = submit_with(&app, body.clone(), &[("idempotency-key", "order-7")]).await;
    let retry = submit_with(&app, body, &[("idempotency-key", "order-7")]).await;
    assert_eq!(first.status, 202);
    assert_eq!(retry.status, 202);
    assert_eq!(first.json()["id"], retry.json()["id"]);
    let other = json!({ "kind": "sleep", "input": { "ms": 11 } });
    // The IETF Idempotency-Key draft: another payload under a used key is a 422.
    submit_with(&app, other, &[("idempotency-key", "order-7")]).await.problem(422, "idempotency-key-reused");
    assert_eq!(total(&app).await, 1);
}

#[tokio::test]
async fn a_key_outlives_its_deleted_operation_and_never_runs_the_request_twice() {
    let (app, _) = router(settings());
    let body = json!({ "kind": "sleep", "input": { "ms": 1 } });
    let id = submit_with(&app, body.clone(), &[("idempotency-key", "order-8")]).await.json()["id"].clone();
    let id = id.as_str().unwrap();
    get(&app, &format!("/v1/operations/{id}/wait?timeout_ms=1000")).await;
    let delete = Request::delete(format!("/v1/operations/{id}")).body(Body::empty()).unwrap();
    assert_eq!(send(&app, delete).await.status, 204);
    let gone = submit_with(&app, body, &[("idempotency-key", "order-8")]).await.problem(410, "operation-gone");
    assert!(gone["detail"].as_str().unwrap().contains(id), "names the operation the key created: {gone}");
    let other = json!({ "kind": "sleep", "input": { "ms": 2 } });
    submit_with(&app, other, &[("idempotency-key", "order-8")]).await.problem(422, "idempotency-key-reused");
    assert_eq!(total(&app).await, 0, "nothing was created again");
}

#[tokio::test]
async fn an_expired_key_submits_anew() {
    let (app, _) = router(settings_with(&[("APP_OPERATIONS__IDEMPOTENCY_KEY_TTL_MS", "1")]));
    let body = json!({ "kind": "sleep", "input": { "ms": 1 } });
    let first = submit_with(&app, body.clone(), &[("idempotency-key", "order-9")]).await;
    // The key expires a millisecond after the submission's `created_at`; wait until that instant
    // has passed on the wall clock, which is the clock keys expire by.
    let created = first.json()["created_at"].as_str().unwrap().to_owned();
    let created = time::OffsetDateTime::parse(&created, &time::format_description::well_known::Rfc3339).unwrap();
    let expired = created + Duration::from_millis(2);
    while time::OffsetDateTime::now_utc() < expired {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let second = submit_with(&app, body, &[("idempotency-key", "order-9")]).await;
    assert_eq!((first.status.as_u16(), second.status.as_u16()), (202, 202));
    assert_ne!(first.json()["id"], second.json()["id"]);
}

#[tokio::test]
async fn the_key_expiry_is_published_in_the_document() {
    let (app, _) = router(settings_with(&[("APP_OPERATIONS__IDEMPOTENCY_KEY_TTL_MS", "7200000")]));
    let doc = get(&app, "/openapi.json").await.json();
    let parameters = doc["paths"]["/v1/operations"]["post"]["parameters"].as_array().unwrap().clone();
    let key = parameters.iter().find(|p| p["name"] == "Idempotency-Key").unwrap();
    assert!(key["description"].as_str().unwrap().contains("keeps keys for 7200 seconds"), "{key}");
}

#[tokio::test]
async fn a_poll_of_an_unfinished_operation_says_when_to_poll_again() {
    let (app, state) = router(settings());
    let id = submitted_id(&app, json!({ "kind": "sleep", "input": { "ms": 60_000 } })).await;
    let running = get(&app, &format!("/v1/operations/{id}")).await;
    assert_eq!(running.status, 200);
    assert_eq!(running.header("retry-after"), Some("1"));
    let pending = get(&app, &format!("/v1/operations/{id}/wait?timeout_ms=10")).await;
    assert_eq!(pending.header("retry-after"), Some("1"));
    state.executor.cancel(&id).await.unwrap();
    let done = get(&app, &format!("/v1/operations/{id}")).await;
    assert_eq!(done.json()["done"], true);
    assert_eq!(done.header("retry-after"), None, "nothing to poll for once done");
    let waited = get(&app, &format!("/v1/operations/{id}/wait?timeout_ms=10")).await;
    assert_eq!(waited.header("retry-after"), None);
}

#[tokio::test]
async fn malformed_idempotency_keys_are_400() {
    let (app, _) = router(settings());
    let body = json!({ "kind": "sleep", "input": { "ms": 1 } });
    let long = "k".repeat(300);
    submit_with(&app, body.clone(), &[("idempotency-key", long.as_str())]).await.problem(400, "invalid-request");
    submit_with(&app, body.clone(), &[("idempotency-key", "a b")]).await.problem(400, "invalid-request");
    submit_with(&app, body, &[("idempotency-key", "one"), ("idempotency-key", "two")])
        .await
        .problem(400, "invalid-request");
    assert_eq!(total(&app).await, 0);
}

#[tokio::test]
async fn prefer_wait_answers_200_when_the_operation_ends_in_time() {
    let (app, _) = router(settings());
    let answer = submit_with(&app, json!({ "kind": "sleep", "input": { "ms": 20 } }), &[("prefer", "wait=1")]).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.header("preference-applied"), Some("wait=1"));
    let op = answer.json();
    assert_eq!((op["status"].as_str(), op["done"].as_bool()), (Some("succeeded"), Some(true)));
    assert_eq!(op["result"], json!({ "slept_ms": 20, "steps": 1 }));
}

#[tokio::test]
async fn prefer_wait_answers_202_when_the_operation_is_still_running() {
    let (app, _) = router(settings());
    let answer = submit_with(
        &app,
        json!({ "kind": "sleep", "input": { "ms": 60_000 } }),
        &[("prefer", "respond-async, wait=1")],
    )
    .await;
    assert_eq!(answer.status, 202);
    assert_eq!(answer.json()["done"], false);
    assert!(answer.header("operation-location").is_some());
    let garbled =
        submit_with(&app, json!({ "kind": "sleep", "input": { "ms": 1 } }), &[("prefer", "wait=soon;;==")]).await;
    assert_eq!(garbled.status, 202, "a preference that does not parse is ignored (RFC 7240)");
}

#[tokio::test]
async fn a_full_queue_answers_503_with_retry_after_and_creates_nothing() {
    let (app, state) =
        router(settings_with(&[("APP_OPERATIONS__MAX_RUNNING", "1"), ("APP_OPERATIONS__QUEUE_CAPACITY", "1")]));
    let running = submitted_id(&app, json!({ "kind": "sleep", "input": { "ms": 60_000 } })).await;
    until_status(&state, &running, Status::Running).await;
    submitted_id(&app, json!({ "kind": "sleep", "input": { "ms": 1 } })).await;
    let refused = submit(&app, json!({ "kind": "sleep", "input": { "ms": 1 } })).await;
    refused.problem(503, "queue-full");
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert_eq!(total(&app).await, 2);
}

#[tokio::test]
async fn listing_is_newest_first_in_pages_that_neither_skip_nor_repeat() {
    let (app, _) = router(settings());
    let mut created = Vec::new();
    for _ in 0..5 {
        created.push(submitted_id(&app, json!({ "kind": "sleep", "input": { "ms": 60_000 } })).await);
    }
    let mut seen = Vec::new();
    let mut uri = "/v1/operations?page_size=2".to_owned();
    loop {
        let page = get(&app, &uri).await.json();
        seen.extend(page["operations"].as_array().unwrap().iter().map(|op| op["id"].as_str().unwrap().to_owned()));
        submitted_id(&app, json!({ "kind": "fail", "input": { "after_ms": 60_000 } })).await;
        match page["next_page_token"].as_str() {
            Some(token) => uri = format!("/v1/operations?page_size=2&page_token={token}"),
            None => break,
        }
    }
    created.reverse();
    assert_eq!(seen, created);
    let failing = get(&app, "/v1/operations?kind=fail&page_size=100").await.json();
    assert_eq!(failing["operations"].as_array().unwrap().len(), 3);
    let filtered = get(&app, "/v1/operations?status=succeeded").await.json();
    assert_eq!(filtered["operations"], json!([]));
}

#[tokio::test]
async fn bad_listing_parameters_are_400() {
    let (app, _) = router(settings());
    for uri in [
        "/v1/operations?page_size=0",
        "/v1/operations?page_size=-1",
        "/v1/operations?page_size=2.5",
        "/v1/operations?page_token=garbage",
        "/v1/operations?page_token=v1.zz",
        "/v1/operations?status=exploded",
        "/v1/operations?colour=blue",
    ] {
        get(&app, uri).await.problem(400, "invalid-request");
    }
    for large in ["100000", "99999999999999999999999"] {
        let answer = get(&app, &format!("/v1/operations?page_size={large}")).await;
        assert_eq!(answer.status, 200, "{large}: lowered to the maximum");
    }
}

#[tokio::test]
async fn wait_answers_when_done_or_when_the_timeout_passes() {
    let (app, _) = router(settings());
    let quick = submitted_id(&app, json!({ "kind": "sleep", "input": { "ms": 20 } })).await;
    let done = get(&app, &format!("/v1/operations/{quick}/wait?timeout_ms=1000")).await;
    assert_eq!(done.status, 200);
    assert_eq!(done.json()["done"], true);

    let slow = submitted_id(&app, json!({ "kind": "sleep", "input": { "ms": 60_000 } })).await;
    let pending = get(&app, &format!("/v1/operations/{slow}/wait?timeout_ms=10")).await;
    assert_eq!(pending.status, 200);
    assert_eq!(pending.json()["done"], false);

    get(&app, &format!("/v1/operations/{slow}/wait?timeout_ms=999999999")).await.problem(400, "invalid-request");
    get(&app, &format!("/v1/operations/{slow}/wait?timeout_ms=soon")).await.problem(400, "invalid-request");
    get(&app, "/v1/operations/nope/wait?timeout_ms=10").await.problem(404, "not-found");
}

#[tokio::test]
async fn cancel_ends_an_operation_and_refuses_a_finished_one() {
    let (app, state) = router(settings());
    let id = submitted_id(&app, json!({ "kind": "sleep", "input": { "ms": 60_000, "steps": 10 } })).await;
    until_status(&state, &id, Status::Running).await;
    let cancel = post_json(&app, &format!("/v1/operations/{id}/cancel"), json!({})).await;
    assert_eq!(cancel.status, 200, "the cancel has taken effect: nothing left to accept");
    let op = cancel.json();
    assert_eq!((op["status"].as_str(), op["done"].as_bool()), (Some("canceled"), Some(true)));
    assert_eq!(op["error"]["type"], "canceled");
    post_json(&app, &format!("/v1/operations/{id}/cancel"), json!({})).await.problem(409, "operation-finished");
    post_json(&app, "/v1/operations/nope/cancel", json!({})).await.problem(404, "not-found");
}

#[tokio::test]
async fn delete_forgets_a_finished_operation_only() {
    let (app, _) = router(settings());
    let delete = |id: &str| Request::delete(format!("/v1/operations/{id}")).body(Body::empty()).unwrap();
    let running = submitted_id(&app, json!({ "kind": "sleep", "input": { "ms": 60_000 } })).await;
    send(&app, delete(&running)).await.problem(409, "operation-not-finished");
    let finished = submitted_id(&app, json!({ "kind": "sleep", "input": { "ms": 1 } })).await;
    get(&app, &format!("/v1/operations/{finished}/wait?timeout_ms=1000")).await;
    assert_eq!(send(&app, delete(&finished)).await.status, 204);
    get(&app, &format!("/v1/operations/{finished}")).await.problem(404, "not-found");
    send(&app, delete(&finished)).await.problem(404, "not-found");
}

#[tokio::test]
async fn a_panicking_operation_fails_and_the_service_carries_on() {
    let (app, _) = router(settings());
    let id = submitted_id(&app, json!({ "kind": "panic", "input": { "message": "internal secret" } })).await;
    let op = get(&app, &format!("/v1/operations/{id}/wait?timeout_ms=1000")).await;
    let op = op.json();
    assert_eq!(op["status"], "failed");
    assert_eq!(op["error"]["type"], "internal");
    assert!(!op["error"].to_string().contains("internal secret"), "panic text stays in the logs");
    assert_eq!(get(&app, "/").await.status, 200);
}

#[tokio::test]
async fn submissions_during_shutdown_get_503() {
    let (app, state) = router(settings());
    state.executor.drain(Duration::from_millis(10)).await;
    submit(&app, json!({ "kind": "sleep", "input": { "ms": 1 } })).await.problem(503, "shutting-down");
}

/// Submits through a real socket and returns the new operation's id.
async fn submit_over_http(app: &crate::support::TestApp, body: Value) -> String {
    let response = app.client.post(app.url("/v1/operations")).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 202);
    let submitted: Value = response.json().await.unwrap();
    submitted["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn events_stream_each_change_and_end_after_the_terminal_state() {
    let app = spawn_app(settings()).await;
    let id = &submit_over_http(&app, json!({ "kind": "sleep", "input": { "ms": 300, "steps": 3 } })).await;
    let response = app.client.get(app.url(&format!("/v1/operations/{id}/events"))).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    // The stream ends by itself after the terminal state, so reading it to the end terminates.
    let body = response.text().await.unwrap();
    let events: Vec<Value> = body
        .lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .map(|data| serde_json::from_str(data).unwrap())
        .collect();
    assert!(body.lines().any(|line| line == "event: operation"));
    let last = events.last().expect("at least one event");
    assert_eq!((last["status"].as_str(), last["done"].as_bool()), (Some("succeeded"), Some(true)));
    let percents: Vec<u64> = events.iter().map(|e| e["progress"]["percent"].as_u64().unwrap()).collect();
    assert!(percents.windows(2).all(|w| w[0] <= w[1]), "progress never goes back: {percents:?}");
    assert!(events.len() >= 3, "status and progress changes are streamed: {events:?}");
    assert_eq!(events.iter().filter(|e| e["done"] == true).count(), 1, "the terminal state is sent once");

    let missing = app.client.get(app.url("/v1/operations/nope/events")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_long_poll_over_a_real_socket_returns_on_completion() {
    let app = spawn_app(settings()).await;
    let id = &submit_over_http(&app, json!({ "kind": "sleep", "input": { "ms": 200, "steps": 4 } })).await;
    let waited: Value =
        app.client.get(app.url(&format!("/v1/operations/{id}/wait"))).send().await.unwrap().json().await.unwrap();
    assert_eq!(waited["status"], "succeeded");
    assert_eq!(waited["result"], json!({ "slept_ms": 200, "steps": 4 }));
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_submission_may_be_scheduled_and_shows_its_attempts() {
    let (app, _) = router(settings());
    let at = time::OffsetDateTime::now_utc() + Duration::from_secs(3600);
    let at = at.format(&time::format_description::well_known::Rfc3339).unwrap();
    let answer = submit(&app, json!({ "kind": "sleep", "input": { "ms": 1 }, "not_before": at })).await;
    assert_eq!(answer.status, 202, "{}", answer.text());
    let op = answer.json();
    assert_eq!(
        (op["status"].as_str(), op["attempt"].as_u64(), op["max_attempts"].as_u64()),
        (Some("queued"), Some(0), Some(3))
    );
    let scheduled =
        time::OffsetDateTime::parse(op["not_before"].as_str().unwrap(), &time::format_description::well_known::Rfc3339)
            .unwrap();
    assert_eq!(
        scheduled.unix_timestamp(),
        time::OffsetDateTime::parse(&at, &time::format_description::well_known::Rfc3339).unwrap().unix_timestamp()
    );

    let past =
        submit(&app, json!({ "kind": "sleep", "input": { "ms": 1 }, "not_before": "2001-01-01T00:00:00Z" })).await;
    assert_eq!(past.status, 202);
    assert_eq!(past.json()["not_before"], Value::Null, "a time already past means now");

    let far =
        submit(&app, json!({ "kind": "sleep", "input": { "ms": 1 }, "not_before": "2999-01-01T00:00:00Z" })).await;
    far.problem(422, "schedule-too-far");
}

#[tokio::test]
async fn a_retryable_failure_is_retried_and_its_attempts_are_visible() {
    let (app, _) = router(settings());
    let id = submitted_id(&app, json!({ "kind": "flaky", "input": { "failures": 1 } })).await;
    let done = get(&app, &format!("/v1/operations/{id}/wait?timeout_ms=1400")).await.json();
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!((done["attempt"].as_u64(), done["result"]["attempt"].as_u64()), (Some(2), Some(2)));
}

#[tokio::test]
async fn a_whole_number_sent_as_a_float_is_an_integer_as_json_schema_says() {
    let (app, _) = router(settings());
    let answer = submit(&app, json!({ "kind": "sleep", "input": { "ms": 5.0, "steps": 1.0 } })).await;
    assert_eq!(answer.status, 202, "{}", answer.text());
    assert_eq!(answer.json()["input"], json!({ "ms": 5.0, "steps": 1.0 }), "the input comes back as it was sent");
    let fraction = submit(&app, json!({ "kind": "sleep", "input": { "ms": 5.5 } })).await;
    assert_eq!(fraction.status, 422, "{}", fraction.text());
}

#[tokio::test]
async fn a_timeout_sent_as_a_whole_float_is_taken_and_a_fraction_refused() {
    let (app, _) = router(settings());
    let answer = submit(&app, json!({ "kind": "sleep", "input": { "ms": 1 }, "timeout_ms": 476.0 })).await;
    assert_eq!(answer.status, 202, "{}", answer.text());
    for bad in [json!(476.5), json!(-1.0), json!("476"), json!(1e30)] {
        let answer = submit(&app, json!({ "kind": "sleep", "input": { "ms": 1 }, "timeout_ms": bad })).await;
        assert_eq!(answer.status, 422, "{bad}: {}", answer.text());
    }
}
