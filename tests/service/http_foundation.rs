//! The service foundation through its HTTP surface: the seed's handler, middleware, errors,
//! health.

use std::time::Duration;

use axum::body::Body;
use axum::http::Request;

use crate::support::{get, post_json, router, router_with, send, settings, settings_with, spawn_app};
use keel_http::lifecycle::Phase;
use serde_json::json;

#[tokio::test]
async fn root_answers_the_seed_result() {
    let (app, _) = router(settings());
    let answer = get(&app, "/").await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.text(), "Result: Async operation result");
    assert_eq!(answer.header("content-type"), Some("text/plain; charset=utf-8"));
}

#[tokio::test]
async fn root_answers_over_a_real_socket() {
    let app = spawn_app(settings()).await;
    let response = app.client.get(app.url("/")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("x-request-id"));
    assert_eq!(response.text().await.unwrap(), "Result: Async operation result");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_request_id_is_generated_when_absent() {
    let (app, _) = router(settings());
    let first = get(&app, "/").await;
    let second = get(&app, "/").await;
    let id = first.header("x-request-id").expect("a request id is set");
    assert_eq!(id.len(), 36, "a UUID: {id}");
    assert_ne!(Some(id), second.header("x-request-id"), "each request gets its own");
}

#[tokio::test]
async fn a_sane_request_id_is_kept() {
    let (app, _) = router(settings());
    let request = Request::get("/").header("x-request-id", "client-abc.123").body(Body::empty()).unwrap();
    assert_eq!(send(&app, request).await.header("x-request-id"), Some("client-abc.123"));
}

#[tokio::test]
async fn a_hostile_request_id_is_sanitised_or_replaced() {
    let (app, _) = router(settings());
    let request = Request::get("/").header("x-request-id", "ab<script>\"cd").body(Body::empty()).unwrap();
    assert_eq!(send(&app, request).await.header("x-request-id"), Some("abscriptcd"));

    let long = "x".repeat(10_000);
    let request = Request::get("/").header("x-request-id", long.as_str()).body(Body::empty()).unwrap();
    assert_eq!(send(&app, request).await.header("x-request-id").map(str::len), Some(64));

    let request = Request::get("/").header("x-request-id", "<>{}").body(Body::empty()).unwrap();
    let replaced = send(&app, request).await;
    assert_eq!(replaced.header("x-request-id").map(str::len), Some(36), "nothing usable: a fresh one");
}

#[tokio::test]
async fn a_slow_handler_gets_503_problem() {
    let (app, _) =
        router(settings_with(&[("APP_SERVER__REQUEST_TIMEOUT_MS", "50"), ("APP_OPERATIONS__MAX_WAIT_MS", "10")]));
    let answer = get(&app, "/testbed/sleep?ms=5000").await;
    answer.problem(503, "request-timeout");
    assert_eq!(answer.header("retry-after"), Some("1"));
}

#[tokio::test]
async fn an_oversized_body_gets_413_problem() {
    let (app, _) = router(settings_with(&[("APP_SERVER__BODY_LIMIT_BYTES", "1024")]));
    let big = json!({ "kind": "sleep", "input": { "padding": "x".repeat(4096) } });
    post_json(&app, "/v1/operations", big).await.problem(413, "payload-too-large");
}

/// A body sent in chunks declares no length up front; the limit still holds when it is read.
#[tokio::test]
async fn an_oversized_chunked_body_gets_413_problem() {
    let app = spawn_app(settings_with(&[("APP_SERVER__BODY_LIMIT_BYTES", "1024")])).await;
    let padding = "x".repeat(4096);
    let chunks = vec![
        Ok::<_, std::io::Error>(r#"{"kind":"sleep","input":{"padding":""#.to_owned()),
        Ok(padding),
        Ok(r#""}}"#.to_owned()),
    ];
    let response = app
        .client
        .post(format!("{}/v1/operations", app.address))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    app.stop().await.unwrap();
}

async fn boom() -> &'static str {
    panic!("kaboom: secret internals")
}

#[tokio::test]
async fn a_panicking_handler_gets_500_and_the_server_keeps_serving() {
    let routes = keel::routes::routes(&Default::default()).route("/boom", axum::routing::get(boom));
    let (app, _) = router_with(settings(), keel::kinds::registry(), routes);
    let answer = get(&app, "/boom").await;
    let problem = answer.problem(500, "internal");
    assert!(!answer.text().contains("secret internals"), "panic text is logged, never sent: {problem}");
    assert_eq!(get(&app, "/").await.status, 200, "the next request is served");
}

/// Answers with whether the credentials it was given are marked sensitive, and sets a cookie.
async fn credentials(headers: axum::http::HeaderMap) -> ([(&'static str, &'static str); 1], String) {
    let marked = |name: &str| headers.get(name).map(axum::http::HeaderValue::is_sensitive);
    let seen = format!("{:?} {:?} {:?}", marked("authorization"), marked("cookie"), marked("x-api-key"));
    ([("set-cookie", "session=s3cret")], seen)
}

#[tokio::test]
async fn credentials_are_marked_sensitive_before_any_handler_or_log_sees_them() {
    let routes = keel::routes::routes(&Default::default()).route("/credentials", axum::routing::get(credentials));
    let (app, _) = router_with(settings(), keel::kinds::registry(), routes);
    let request = Request::get("/credentials")
        .header("authorization", "Bearer t0ken")
        .header("cookie", "session=s3cret")
        .header("x-api-key", "k3y")
        .body(Body::empty())
        .unwrap();
    let response = tower::ServiceExt::oneshot(app, request).await.unwrap();
    assert!(response.headers()["set-cookie"].is_sensitive(), "responses too");
    let body = axum::body::to_bytes(response.into_body(), 1024).await.unwrap();
    assert_eq!(body, "Some(true) Some(true) Some(true)");
}

#[tokio::test]
async fn a_bad_query_gets_400_problem() {
    let (app, _) = router(settings());
    get(&app, "/testbed/sleep?ms=abc").await.problem(400, "invalid-request");
    get(&app, "/testbed/sleep").await.problem(400, "invalid-request");
    get(&app, "/testbed/sleep?ms=1&extra=1").await.problem(400, "invalid-request");
}

#[tokio::test]
async fn bad_json_gets_400_problem() {
    let (app, _) = router(settings());
    let request = Request::post("/v1/operations")
        .header("content-type", "application/json")
        .body(Body::from("{\"kind\":"))
        .unwrap();
    send(&app, request).await.problem(400, "invalid-request");
}

#[tokio::test]
async fn a_wrong_content_type_gets_415_problem() {
    let (app, _) = router(settings());
    let request = Request::post("/v1/operations").header("content-type", "text/plain").body(Body::from("{}")).unwrap();
    send(&app, request).await.problem(415, "unsupported-media-type");
}

#[tokio::test]
async fn an_unknown_route_gets_404_problem() {
    let (app, _) = router(settings());
    get(&app, "/no/such/thing").await.problem(404, "not-found");
}

#[tokio::test]
async fn a_wrong_method_gets_405_problem() {
    let (app, _) = router(settings());
    let answer = send(&app, Request::delete("/").body(Body::empty()).unwrap()).await;
    answer.problem(405, "method-not-allowed");
    assert!(answer.header("allow").is_some_and(|allow| allow.contains("GET")));
}

#[tokio::test]
async fn liveness_and_readiness_follow_the_lifecycle() {
    let (app, state) = router(settings());
    assert_eq!(get(&app, "/healthz").await.status, 200);
    assert_eq!(get(&app, "/readyz").await.status, 200);
    state.lifecycle.set(Phase::Starting);
    get(&app, "/readyz").await.problem(503, "not-ready");
    state.lifecycle.set(Phase::Draining);
    get(&app, "/readyz").await.problem(503, "not-ready");
    assert_eq!(get(&app, "/healthz").await.status, 200, "still alive while draining");
}

#[tokio::test]
async fn responses_are_compressed_when_asked_and_configured() {
    let request = || Request::get("/openapi.json").header("accept-encoding", "gzip").body(Body::empty()).unwrap();
    let (plain, _) = router(settings());
    let answer = send(&plain, request()).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("content-encoding"), None, "compression is off by default");
    let (compressing, _) = router(settings_with(&[("APP_SERVER__COMPRESSION", "true")]));
    let answer = send(&compressing, request()).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("content-encoding"), Some("gzip"));
    assert_eq!(answer.header("vary"), Some("accept-encoding"));
}

/// An error compression has already encoded (axum's own `Json` rejection, plain text) is
/// replaced by a problem, which must not keep the old body's encoding.
#[tokio::test]
async fn problems_stay_readable_with_compression_on() {
    async fn raw(axum::Json(value): axum::Json<serde_json::Value>) -> String {
        value.to_string()
    }
    let settings = settings_with(&[("APP_SERVER__COMPRESSION", "true")]);
    let app = keel_http::middleware::apply(axum::Router::new().route("/raw", axum::routing::post(raw)), &settings);
    let request = Request::post("/raw")
        .header("content-type", "application/json")
        .header("accept-encoding", "gzip")
        .body(Body::from("{\"broken\": "))
        .unwrap();
    let answer = send(&app, request).await;
    assert_eq!(answer.header("content-encoding"), None, "the problem body is plain JSON");
    answer.problem(400, "http-error");
}

#[tokio::test]
async fn cors_follows_configuration() {
    let request = || Request::get("/").header("origin", "https://app.example").body(Body::empty()).unwrap();
    let (closed, _) = router(settings());
    assert!(send(&closed, request()).await.header("access-control-allow-origin").is_none());
    let (open, _) = router(settings_with(&[("APP_SERVER__CORS_ALLOWED_ORIGINS", "[\"https://app.example\"]")]));
    assert_eq!(send(&open, request()).await.header("access-control-allow-origin"), Some("https://app.example"));
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app(settings_with(&[("APP_SERVER__HEADER_READ_TIMEOUT_MS", "200")])).await;
    let address = app.address.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let mut buffer = Vec::new();
    // The server must close the connection on its own; the outer timeout only stops a hung test.
    let closed = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buffer)).await;
    assert!(closed.is_ok(), "the connection was not closed by the header read timeout");
    app.stop().await.unwrap();
}

/// The timer is armed once per connection (see `http::header_timer`): a connection that
/// answered a request is still cut off when its next request head stalls.
#[tokio::test]
async fn a_keep_alive_connection_whose_next_head_stalls_is_disconnected() {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let app = spawn_app(settings_with(&[("APP_SERVER__HEADER_READ_TIMEOUT_MS", "200")])).await;
    let address = app.address.trim_start_matches("http://").to_owned();
    let mut stream = BufReader::new(tokio::net::TcpStream::connect(&address).await.unwrap());
    stream.get_mut().write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut status = String::new();
    stream.read_line(&mut status).await.unwrap();
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    stream.get_mut().write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the connection was not closed by the header read timeout");
    app.stop().await.unwrap();
}

/// At `server.max_connections`, keel stops accepting until a connection closes: the newcomer
/// waits in the kernel's backlog and is served once a place is free.
#[tokio::test]
async fn a_connection_beyond_the_cap_is_served_once_another_closes() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let app = spawn_app(settings_with(&[("APP_SERVER__MAX_CONNECTIONS", "2")])).await;
    let address = app.address.trim_start_matches("http://").to_owned();
    async fn ask(stream: &mut BufReader<tokio::net::TcpStream>) -> String {
        stream.get_mut().write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut status = String::new();
        stream.read_line(&mut status).await.unwrap();
        status
    }
    // Two kept-alive connections, each answered once: both places are taken.
    let mut first = BufReader::new(tokio::net::TcpStream::connect(&address).await.unwrap());
    let mut second = BufReader::new(tokio::net::TcpStream::connect(&address).await.unwrap());
    assert!(ask(&mut first).await.starts_with("HTTP/1.1 200"));
    assert!(ask(&mut second).await.starts_with("HTTP/1.1 200"));

    let mut third = BufReader::new(tokio::net::TcpStream::connect(&address).await.unwrap());
    let mut waiting = tokio::spawn(async move { ask(&mut third).await });
    // Nothing announces a connection left unaccepted, so this looks for an answer that must not
    // come: it can pass on a slow machine that would have answered late, never fail wrongly.
    let early = tokio::time::timeout(Duration::from_millis(300), &mut waiting).await;
    assert!(early.is_err(), "a third connection was served beyond the cap of two");
    drop(first);
    let status = tokio::time::timeout(Duration::from_secs(10), waiting).await.expect("served once a place is free");
    assert!(status.unwrap().starts_with("HTTP/1.1 200"));
    drop(second);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn every_response_is_hardened_and_the_docs_page_has_its_policy() {
    let (app, _) = router(settings());
    for uri in ["/", "/v1/operations", "/v1/operations/nope", "/no/such/path", "/healthz"] {
        let answer = get(&app, uri).await;
        assert_eq!(answer.header("x-content-type-options"), Some("nosniff"), "{uri}");
        assert_eq!(answer.header("cache-control"), Some("no-store"), "{uri}");
        assert_eq!(answer.header("content-security-policy"), None, "{uri}");
    }
    // The document is served with the page that shows it.
    for uri in ["/docs/", "/docs/swagger-ui-bundle.js", "/openapi.json"] {
        let answer = get(&app, uri).await;
        assert_eq!(answer.status, 200, "{uri}");
        assert_eq!(answer.header("x-content-type-options"), Some("nosniff"), "{uri}");
        let policy = answer.header("content-security-policy").unwrap_or_default();
        assert!(policy.contains("script-src 'self'") && policy.contains("frame-ancestors 'none'"), "{uri}: {policy}");
        assert_eq!(answer.header("cache-control"), Some("no-cache"), "{uri}: cached, and checked again each time");
    }
    let page = get(&app, "/docs/").await.text();
    assert!(!page.contains("<script>"), "no inline script, which the policy would block: {page}");
}
