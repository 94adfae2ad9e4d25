//! A catalogue of hostile and malformed requests across every endpoint, each with the exact
//! status and problem type expected. None may produce a 5xx, a panic or a lost operation.

mod common;

use axum::body::Body;
use axum::http::Request;
use common::{router, send, settings_with};
use serde_json::json;

struct Case {
    name: &'static str,
    request: Request<Body>,
    status: u16,
    /// The problem `type`; `None` for a success.
    problem: Option<&'static str>,
}

fn case(name: &'static str, request: Request<Body>, status: u16, problem: Option<&'static str>) -> Case {
    Case { name, request, status, problem }
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

fn post(uri: &str, content_type: Option<&str>, body: impl Into<Body>) -> Request<Body> {
    let mut request = Request::post(uri);
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    request.body(body.into()).unwrap()
}

fn submit(body: impl Into<Body>) -> Request<Body> {
    post("/v1/operations", Some("application/json"), body)
}

fn submit_with_header(name: &str, value: &[u8]) -> Request<Body> {
    Request::post("/v1/operations")
        .header("content-type", "application/json")
        .header(name, value)
        .body(Body::from(json!({ "kind": "sleep", "input": { "ms": 1 } }).to_string()))
        .unwrap()
}

fn method(method: &str, uri: &str) -> Request<Body> {
    Request::builder().method(method).uri(uri).body(Body::empty()).unwrap()
}

const ID: &str = "0123456789abcdef0123456789abcdef";

fn catalogue() -> Vec<Case> {
    let deep = format!("{{\"kind\":\"sleep\",\"input\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
    let huge_body = format!("{{\"kind\":\"sleep\",\"input\":{{\"pad\":\"{}\"}}}}", "x".repeat(3 << 20));
    let long_id = "a".repeat(10_000);
    let sleep = |extra: &str| format!("{{\"kind\":\"sleep\",\"input\":{{\"ms\":1}}{extra}}}");
    vec![
        // Bodies
        case("truncated JSON", submit("{\"kind\":"), 400, Some("invalid-request")),
        case("empty body", submit(""), 400, Some("invalid-request")),
        case("not JSON at all", submit("kind=sleep"), 400, Some("invalid-request")),
        case("deeply nested JSON", submit(deep), 400, Some("invalid-request")),
        case("invalid UTF-8", submit(&b"{\"kind\":\"\xff\xfe\"}"[..]), 400, Some("invalid-request")),
        case("trailing garbage", submit(format!("{}xyz", sleep(""))), 400, Some("invalid-request")),
        case("JSON null", submit("null"), 422, Some("validation-failed")),
        case("JSON array", submit("[1,2,3]"), 422, Some("validation-failed")),
        case("kind of the wrong type", submit("{\"kind\":5}"), 422, Some("validation-failed")),
        case("unknown kind", submit("{\"kind\":\"rm -rf /\"}"), 422, Some("validation-failed")),
        case("unknown top-level field", submit(sleep(",\"priority\":1")), 422, Some("validation-failed")),
        case(
            "unknown input field",
            submit("{\"kind\":\"sleep\",\"input\":{\"ms\":1,\"x\":1}}"),
            422,
            Some("validation-failed"),
        ),
        case(
            "input of the wrong type",
            submit("{\"kind\":\"sleep\",\"input\":\"ms=1\"}"),
            422,
            Some("validation-failed"),
        ),
        case("huge number", submit(sleep(",\"timeout_ms\":1e400")), 400, Some("invalid-request")),
        case(
            "number beyond u64",
            submit(sleep(",\"timeout_ms\":18446744073709551616")),
            422,
            Some("validation-failed"),
        ),
        case("negative timeout", submit(sleep(",\"timeout_ms\":-5")), 422, Some("validation-failed")),
        case("not_before not a time", submit(sleep(",\"not_before\":\"tomorrow\"")), 422, Some("validation-failed")),
        case("not_before a number", submit(sleep(",\"not_before\":1733000000")), 422, Some("validation-failed")),
        case(
            "not_before without an offset",
            submit(sleep(",\"not_before\":\"2030-01-01T00:00:00\"")),
            422,
            Some("validation-failed"),
        ),
        case(
            "not_before at the end of time",
            submit(sleep(",\"not_before\":\"9999-12-31T23:59:59Z\"")),
            422,
            Some("schedule-too-far"),
        ),
        case(
            "flaky asking for too many failures",
            submit("{\"kind\":\"flaky\",\"input\":{\"failures\":4294967295}}"),
            422,
            Some("validation-failed"),
        ),
        case("zero timeout", submit(sleep(",\"timeout_ms\":0")), 422, Some("validation-failed")),
        case("fractional timeout", submit(sleep(",\"timeout_ms\":1.5")), 422, Some("validation-failed")),
        case(
            "timeout above the maximum",
            submit(sleep(",\"timeout_ms\":999999999999")),
            422,
            Some("validation-failed"),
        ),
        case(
            "input out of the kind's range",
            submit("{\"kind\":\"sleep\",\"input\":{\"ms\":1,\"steps\":0}}"),
            422,
            Some("validation-failed"),
        ),
        case("oversized body", submit(huge_body), 413, Some("payload-too-large")),
        case(
            "wrong content type",
            post("/v1/operations", Some("text/plain"), sleep("")),
            415,
            Some("unsupported-media-type"),
        ),
        case("no content type", post("/v1/operations", None, sleep("")), 415, Some("unsupported-media-type")),
        case(
            "form content type",
            post("/v1/operations", Some("application/x-www-form-urlencoded"), "kind=sleep"),
            415,
            Some("unsupported-media-type"),
        ),
        // Paths and ids
        case("path traversal in the id", get("/v1/operations/..%2F..%2Fetc%2Fpasswd"), 404, Some("not-found")),
        case("path traversal in the path", get("/v1/../../etc/passwd"), 404, Some("not-found")),
        case("over-long id", get(&format!("/v1/operations/{long_id}")), 404, Some("not-found")),
        case("NUL in the id", get("/v1/operations/%00"), 404, Some("not-found")),
        case("invalid percent-encoding in the id", get("/v1/operations/%FF%FE%FD"), 404, Some("not-found")),
        case("cancel an unknown id", post(&format!("/v1/operations/{ID}/cancel"), None, ""), 404, Some("not-found")),
        case("delete an unknown id", method("DELETE", &format!("/v1/operations/{ID}")), 404, Some("not-found")),
        case("events of an unknown id", get(&format!("/v1/operations/{ID}/events")), 404, Some("not-found")),
        // Queries
        case("bad page token", get("/v1/operations?page_token=%27%20OR%201%3D1"), 400, Some("invalid-request")),
        case(
            "over-long page token",
            get(&format!("/v1/operations?page_token=v1.{}", "f".repeat(5000))),
            400,
            Some("invalid-request"),
        ),
        case("zero page size", get("/v1/operations?page_size=0"), 400, Some("invalid-request")),
        case("negative page size", get("/v1/operations?page_size=-1"), 400, Some("invalid-request")),
        case("huge page size", get("/v1/operations?page_size=1e99"), 400, Some("invalid-request")),
        case("page size past any integer: lowered", get("/v1/operations?page_size=99999999999999999999999"), 200, None),
        case("page size with a fraction", get("/v1/operations?page_size=2.5"), 400, Some("invalid-request")),
        case("repeated query parameter", get("/v1/operations?page_size=1&page_size=2"), 400, Some("invalid-request")),
        case("unknown status filter", get("/v1/operations?status=exploded"), 400, Some("invalid-request")),
        case("invalid percent-encoding in a query", get("/v1/operations?status=%ZZ"), 400, Some("invalid-request")),
        case("negative wait", get(&format!("/v1/operations/{ID}/wait?timeout_ms=-1")), 400, Some("invalid-request")),
        case("query number out of the handler's range", get("/testbed/sleep?ms=600001"), 400, Some("invalid-request")),
        case(
            "query number past 64 bits",
            get("/testbed/sleep?ms=99999999999999999999999"),
            400,
            Some("invalid-request"),
        ),
        // Headers
        case(
            "huge request id",
            Request::get("/").header("x-request-id", "r".repeat(8000)).body(Body::empty()).unwrap(),
            200,
            None,
        ),
        case(
            "repeated request ids",
            Request::get("/").header("x-request-id", "one").header("x-request-id", "two").body(Body::empty()).unwrap(),
            200,
            None,
        ),
        case("malformed Prefer", submit_with_header("prefer", b"wait=; wait=-3; =;"), 202, None),
        case(
            "over-long Idempotency-Key",
            submit_with_header("idempotency-key", &[b'k'; 300]),
            400,
            Some("invalid-request"),
        ),
        case(
            "control characters in Idempotency-Key",
            submit_with_header("idempotency-key", b"a\tb"),
            400,
            Some("invalid-request"),
        ),
        case(
            "non-ASCII Idempotency-Key",
            submit_with_header("idempotency-key", "clé".as_bytes()),
            400,
            Some("invalid-request"),
        ),
        // Methods
        case("PUT on the collection", method("PUT", "/v1/operations"), 405, Some("method-not-allowed")),
        case(
            "PATCH on an operation",
            method("PATCH", &format!("/v1/operations/{ID}")),
            405,
            Some("method-not-allowed"),
        ),
        case("POST on wait", method("POST", &format!("/v1/operations/{ID}/wait")), 405, Some("method-not-allowed")),
        case("GET on cancel", get(&format!("/v1/operations/{ID}/cancel")), 405, Some("method-not-allowed")),
        case("DELETE on the root", method("DELETE", "/"), 405, Some("method-not-allowed")),
    ]
}

#[tokio::test]
async fn hostile_requests_get_exact_client_errors_and_lose_nothing() {
    let (app, state) = router(settings_with(&[("APP_SERVER__BODY_LIMIT_BYTES", "1048576")]));
    let cases = catalogue();
    assert!(cases.len() >= 30);
    let mut failures = Vec::new();
    let mut accepted = 0;
    for Case { name, request, status, problem } in cases {
        let answer = send(&app, request).await;
        if answer.status.is_server_error() {
            failures.push(format!("{name}: a server error {} {}", answer.status, answer.text()));
            continue;
        }
        if answer.status.as_u16() != status {
            failures.push(format!("{name}: expected {status}, got {} {}", answer.status, answer.text()));
            continue;
        }
        match problem {
            Some(kind) => {
                let body = answer.json();
                let content_type = answer.header("content-type");
                if content_type != Some("application/problem+json") || body["type"] != kind || body["status"] != status
                {
                    failures.push(format!("{name}: expected a {kind} problem, got {content_type:?} {body}"));
                }
            }
            None if answer.status == 202 => accepted += 1,
            None => {}
        }
    }
    assert!(failures.is_empty(), "{} cases failed:\n{}", failures.len(), failures.join("\n"));
    let counts = state.executor.counts().await.unwrap();
    assert_eq!(
        counts.queued + counts.running + counts.finished,
        accepted,
        "only accepted submissions exist; none lost"
    );
    assert_eq!(common::get(&app, "/").await.status, 200, "still serving");
}
