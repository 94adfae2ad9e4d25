//! A catalogue of hostile and malformed requests across every endpoint, each with the exact
//! status and problem type expected. None may produce a 5xx, a panic or a lost operation.

use crate::support::{router, send, settings, settings_with};
use axum::body::Body;
use axum::http::Request;
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
    assert_eq!(crate::support::get(&app, "/").await.status, 200, "still serving");
}

// A hostile client on a real socket: what a new user found trying `keel serve`.

/// Everything the server sends on `socket` until it closes the connection, which it must do
/// within `limit`.
async fn read_until_closed(socket: &mut tokio::net::TcpStream, limit: std::time::Duration, closed: &str) -> String {
    use tokio::io::AsyncReadExt;
    let mut received = Vec::new();
    tokio::time::timeout(limit, socket.read_to_end(&mut received)).await.expect(closed).unwrap();
    String::from_utf8_lossy(&received).into_owned()
}

/// Every kind, built-in or added, refuses an input that is not a JSON object (serde would read a
/// struct from an array of its fields), with 422 naming `input`, and the document says `object`.
#[tokio::test]
async fn an_input_that_is_not_an_object_is_refused_for_every_kind() {
    // keel's own kinds, and the tests' (added as a user adds theirs).
    for registry in [keel::kinds::registry(), crate::support::testbed::registry()] {
        let kinds = registry.names();
        let app = crate::support::spawn_app_with(settings(), registry, keel::routes::routes(&Default::default())).await;
        refuses_inputs_that_are_not_objects(&app, kinds).await;
        app.stop().await.unwrap();
    }
}

async fn refuses_inputs_that_are_not_objects(app: &crate::support::TestApp, kinds: Vec<&str>) {
    let document: serde_json::Value =
        app.client.get(app.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    for kind in kinds {
        for input in [json!([1]), json!([]), json!("text"), json!(7)] {
            let response = app
                .client
                .post(app.url("/v1/operations"))
                .json(&json!({ "kind": kind, "input": input }))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 422, "{kind} with {input}");
            assert_eq!(response.headers()["content-type"], "application/problem+json");
            let problem: serde_json::Value = response.json().await.unwrap();
            assert!(problem["detail"].as_str().unwrap().contains("`input`"), "{kind}: {problem}");
        }
        let schemas = &document["components"]["schemas"];
        let submission = &schemas[format!("Submit.{kind}")];
        let reference = submission["properties"]["input"]["$ref"].as_str().expect("the input's schema is named");
        let input_schema = &schemas[reference.rsplit('/').next().unwrap()];
        assert_eq!(input_schema["type"], "object", "{kind}: {input_schema}");
    }
    let list: serde_json::Value = app.client.get(app.url("/v1/operations")).send().await.unwrap().json().await.unwrap();
    assert_eq!(list["operations"], json!([]), "nothing was accepted");
}

/// Silent sockets (nothing sent, part of an HTTP/1 head, part of the HTTP/2 preface) are closed
/// after the header read timeout, so that filling `max_connections` with them denies service only
/// until then.
#[tokio::test]
async fn silent_connections_are_closed_after_the_header_read_timeout() {
    use tokio::io::AsyncWriteExt;
    let settings =
        settings_with(&[("APP_SERVER__MAX_CONNECTIONS", "3"), ("APP_SERVER__HEADER_READ_TIMEOUT_MS", "300")]);
    let app = crate::support::spawn_app_with(
        settings,
        crate::support::testbed::registry(),
        crate::support::testbed::routes(),
    )
    .await;
    let address = app.address.trim_start_matches("http://").to_owned();
    let mut silent = Vec::new();
    for opening in [&b""[..], b"GET / HTTP/1.1\r\nHost: x\r\n", b"PRI * HTTP/2.0\r\n"] {
        let mut socket = tokio::net::TcpStream::connect(&address).await.unwrap();
        socket.write_all(opening).await.unwrap();
        silent.push(socket);
    }
    // All three places taken: a newcomer waits in the backlog until one is closed.
    let newcomer = tokio::spawn({
        let url = app.url("/");
        async move { reqwest::get(url).await.map(|response| response.status()) }
    });
    for mut socket in silent {
        // The server closes it: the read ends (with whatever hyper wrote first, if anything).
        read_until_closed(&mut socket, std::time::Duration::from_secs(30), "a silent connection was closed").await;
    }
    let status = tokio::time::timeout(std::time::Duration::from_secs(30), newcomer).await.unwrap().unwrap().unwrap();
    assert_eq!(status, 200);
    app.stop().await.unwrap();
}

/// The test bed with an idle timeout of 300 ms, and a connection to it. hyper's own header read
/// timeout, which also ends a keep-alive wait, is far beyond the tests' waits.
async fn connected_with_short_idle_timeout() -> (crate::support::TestApp, tokio::net::TcpStream) {
    let settings =
        settings_with(&[("APP_SERVER__IDLE_TIMEOUT_MS", "300"), ("APP_SERVER__HEADER_READ_TIMEOUT_MS", "600000")]);
    let app = crate::support::spawn_app_with(
        settings,
        crate::support::testbed::registry(),
        crate::support::testbed::routes(),
    )
    .await;
    let socket = tokio::net::TcpStream::connect(app.address.trim_start_matches("http://")).await.unwrap();
    (app, socket)
}

/// A keep-alive connection that starts no request for `server.idle_timeout_ms` is closed.
#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    use tokio::io::AsyncWriteExt;
    let (app, mut socket) = connected_with_short_idle_timeout().await;
    socket.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    // The answer, then the end of the stream once the connection has been idle long enough.
    let received =
        read_until_closed(&mut socket, std::time::Duration::from_secs(60), "the idle connection was closed").await;
    assert!(received.starts_with("HTTP/1.1 200") && received.contains("Async operation result"), "{received}");
    app.stop().await.unwrap();
}

/// An HTTP/2 connection that starts no stream for `server.idle_timeout_ms` is closed too
/// (gracefully: `GOAWAY`, then the end of the connection).
#[tokio::test]
async fn an_idle_http2_connection_is_closed() {
    let (app, socket) = connected_with_short_idle_timeout().await;
    let (client, connection) = h2::client::handshake(socket).await.unwrap();
    let connection = tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let request = axum::http::Request::get(format!("{}/", app.address)).body(()).unwrap();
    let (response, _) = client.send_request(request, true).unwrap();
    assert_eq!(response.await.unwrap().status(), 200);
    // The connection's future ends once the server has closed it.
    tokio::time::timeout(std::time::Duration::from_secs(60), connection)
        .await
        .expect("the idle HTTP/2 connection was closed")
        .unwrap()
        .unwrap();
    app.stop().await.unwrap();
}

/// A body announced over the limit is refused at once, before `100 Continue` and before a byte of
/// it is read.
#[tokio::test]
async fn an_announced_body_over_the_limit_gets_413_at_once_and_no_100_continue() {
    use tokio::io::AsyncWriteExt;
    let app = crate::support::spawn_app(settings_with(&[("APP_SERVER__BODY_LIMIT_BYTES", "1024")])).await;
    let address = app.address.trim_start_matches("http://").to_owned();
    for expect in ["", "Expect: 100-continue\r\n"] {
        let mut socket = tokio::net::TcpStream::connect(&address).await.unwrap();
        let head = format!(
            "POST /v1/operations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Content-Length: 1000000000000\r\n{expect}Connection: close\r\n\r\n"
        );
        socket.write_all(head.as_bytes()).await.unwrap();
        // Far below the request timeout: the answer must not wait for a body.
        let answer =
            read_until_closed(&mut socket, std::time::Duration::from_secs(10), "answered without waiting for the body")
                .await;
        assert!(answer.starts_with("HTTP/1.1 413"), "{expect:?}: {answer}");
        assert!(!answer.contains("100 Continue"), "{answer}");
        assert!(answer.contains("application/problem+json") && answer.contains("payload-too-large"), "{answer}");
    }
    app.stop().await.unwrap();
}

/// A caller's event stream is theirs alone: `no-store`, and `nosniff` like every answer.
#[tokio::test]
async fn an_event_stream_is_never_stored() {
    let app = crate::support::spawn_app(settings()).await;
    let submitted = app
        .client
        .post(app.url("/v1/operations"))
        .json(&json!({ "kind": "sleep", "input": { "ms": 1 } }))
        .send()
        .await
        .unwrap();
    let id = submitted.json::<serde_json::Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let events = app.client.get(app.url(&format!("/v1/operations/{id}/events"))).send().await.unwrap();
    assert_eq!(events.status(), 200);
    assert_eq!(events.headers()["cache-control"], "no-store");
    assert_eq!(events.headers()["x-content-type-options"], "nosniff");
    assert!(events.text().await.unwrap().contains("succeeded"));
    app.stop().await.unwrap();
}
