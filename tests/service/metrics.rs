//! `/metrics` after traffic. One process has one metrics recorder, so this binary holds the
//! tests that read it, and each compares before and after rather than absolute values.

use std::time::Duration;

use crate::support::{get, post_json, router, send, settings_with, spawn_app};
use axum::body::Body;
use axum::http::Request;
use keel_http::App;
use keel_operations::Status;
use serde_json::json;

/// The value of one sample, `name{labels}` exactly as exposed; 0 when absent.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .map_or(0.0, |value| value.trim().parse().unwrap())
}

async fn scrape(app: &App) -> String {
    let answer = get(app, "/metrics").await;
    assert_eq!(answer.status, 200);
    assert!(answer.header("content-type").unwrap().starts_with("text/plain; version=0.0.4"));
    answer.text()
}

#[tokio::test]
async fn metrics_move_with_traffic_and_operations() {
    let (app, state) =
        router(settings_with(&[("APP_OPERATIONS__MAX_RUNNING", "1"), ("APP_OPERATIONS__QUEUE_CAPACITY", "1")]));
    let before = scrape(&app).await;

    for _ in 0..3 {
        assert_eq!(get(&app, "/").await.status, 200);
    }
    get(&app, "/v1/operations/missing").await;

    let running = post_json(&app, "/v1/operations", json!({ "kind": "sleep", "input": { "ms": 60_000 } })).await.json();
    let running_id = running["id"].as_str().unwrap();
    let mut changes = state.executor.watch(running_id).await.unwrap();
    changes.wait_for(|op| op.status == Status::Running).await.unwrap();
    let queued = post_json(&app, "/v1/operations", json!({ "kind": "fail", "input": {} })).await.json();
    let refused = post_json(&app, "/v1/operations", json!({ "kind": "sleep", "input": { "ms": 1 } })).await;
    assert_eq!(refused.status, 503);

    // The recorder is global: another test's scrape, in between, sets these gauges from its own
    // store. Scrape again until this one's own figures are read.
    let mut during = scrape(&app).await;
    for _ in 0..100 {
        if (sample(&during, "operations_running"), sample(&during, "operations_queued")) == (1.0, 1.0) {
            break;
        }
        tokio::task::yield_now().await;
        during = scrape(&app).await;
    }
    assert_eq!(sample(&during, "operations_running"), 1.0);
    assert_eq!(sample(&during, "operations_queued"), 1.0);

    post_json(&app, &format!("/v1/operations/{running_id}/cancel"), json!({})).await;
    let queued_id = queued["id"].as_str().unwrap();
    state.executor.wait(queued_id, Duration::from_secs(10)).await.unwrap();

    // The run records its end just after the store shows it, so let the run task get there.
    let finished = r#"operations_finished_total{kind="fail",status="failed"}"#;
    let mut after = scrape(&app).await;
    for _ in 0..100 {
        if sample(&after, finished) > sample(&before, finished) {
            break;
        }
        tokio::task::yield_now().await;
        after = scrape(&app).await;
    }
    let moved = |series: &str| sample(&after, series) - sample(&before, series);
    assert_eq!(moved(r#"http_requests_total{method="GET",route="/",status="200"}"#), 3.0);
    assert_eq!(moved(r#"http_requests_total{method="GET",route="/v1/operations/{id}",status="404"}"#), 1.0);
    assert_eq!(moved(r#"http_request_duration_seconds_count{method="GET",route="/"}"#), 3.0);
    assert_eq!(moved(r#"http_request_duration_seconds_bucket{method="GET",route="/",le="+Inf"}"#), 3.0);
    assert!(after.contains("# TYPE http_request_duration_seconds histogram\n"), "{after}");
    assert_eq!(moved(r#"operations_submitted_total{kind="sleep"}"#), 1.0);
    assert_eq!(moved(r#"operations_submitted_total{kind="fail"}"#), 1.0);
    assert_eq!(moved(r#"operations_rejected_total{reason="queue_full"}"#), 1.0);
    assert_eq!(moved(r#"operations_finished_total{kind="sleep",status="canceled"}"#), 1.0);
    assert_eq!(moved(r#"operations_finished_total{kind="fail",status="failed"}"#), 1.0);
    assert_eq!(moved(r#"operation_run_duration_seconds_count{kind="fail"}"#), 1.0);
    assert_eq!(sample(&after, "operations_running"), 0.0);
    assert!(sample(&after, "process_uptime_seconds") > 0.0);
    assert!(after.lines().any(|l| l.starts_with("keel_build_info{version=\"") && l.ends_with(" 1")), "{after}");
    assert!(after.contains("http_requests_in_flight"));
}

#[tokio::test]
async fn request_labels_stay_bounded_whatever_clients_send() {
    let (app, _) = router(settings_with(&[]));
    let before = scrape(&app).await;
    for (method, path) in [("BREW", "/"), ("FROB", "/"), ("GET", "/no/such/path/1"), ("GET", "/no/such/path/2")] {
        let request = Request::builder().method(method).uri(path).body(Body::empty()).unwrap();
        assert!(send(&app, request).await.status.is_client_error());
    }
    let after = scrape(&app).await;
    let moved = |series: &str| sample(&after, series) - sample(&before, series);
    assert_eq!(moved(r#"http_requests_total{method="_OTHER",route="/",status="405"}"#), 2.0, "{after}");
    assert_eq!(moved(r#"http_requests_total{method="GET",route="<unmatched>",status="404"}"#), 2.0, "{after}");
    assert!(!after.contains("BREW") && !after.contains("/no/such/path"), "{after}");
}

#[tokio::test]
async fn metrics_can_have_a_port_of_their_own() {
    let settings = settings_with(&[("APP_METRICS__PORT", "0")]);
    let app = keel::startup::application(settings).await.unwrap();
    let metrics = app.metrics_addr().expect("a metrics listener");
    let main = format!("http://{}", app.local_addr());
    let server = tokio::spawn(app.run_until_stopped(std::future::pending()));
    let client = reqwest::Client::new();
    let scraped = client.get(format!("http://{metrics}/metrics")).send().await.unwrap();
    assert_eq!(scraped.status(), 200);
    assert!(scraped.text().await.unwrap().contains("keel_build_info"));
    assert_eq!(client.get(format!("{main}/metrics")).send().await.unwrap().status(), 404, "not on the main port");
    // `/healthz` rather than `/`: the tests of this binary run at once and share one recorder,
    // and another one counts the requests to `/`.
    assert_eq!(client.get(format!("{main}/healthz")).send().await.unwrap().status(), 200);
    server.abort();
}

/// The metrics port is served like the main one: a client that never finishes its request head
/// is cut off, and the port closes with the drain.
#[tokio::test]
async fn the_metrics_port_has_the_header_timeout_and_closes_with_the_drain() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let settings = settings_with(&[("APP_METRICS__PORT", "0"), ("APP_SERVER__HEADER_READ_TIMEOUT_MS", "200")]);
    let app = keel::startup::application(settings).await.unwrap();
    let metrics = app.metrics_addr().expect("a metrics listener");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async move { drop(stopped.await) }));

    let mut stream = tokio::net::TcpStream::connect(metrics).await.unwrap();
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let mut buffer = Vec::new();
    // The server must close the connection on its own; the outer timeout only stops a hung test.
    let closed = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buffer)).await;
    assert!(closed.is_ok(), "the metrics connection was not closed by the header read timeout");

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    assert!(tokio::net::TcpStream::connect(metrics).await.is_err(), "the metrics port closed with the drain");
}

#[tokio::test]
async fn metrics_can_be_turned_off() {
    let app = spawn_app(settings_with(&[("APP_METRICS__ENABLED", "false")])).await;
    assert_eq!(app.client.get(app.url("/metrics")).send().await.unwrap().status(), 404);
    app.stop().await.unwrap();
}

/// A route keeps the first few series it records to and finds the others in the shared table
/// (`request_metrics.rs`); either way every request is counted once, under its own status.
#[tokio::test]
async fn a_route_answering_many_statuses_counts_each_one() {
    use axum::extract::Path;
    use axum::http::StatusCode;

    async fn answer(Path(code): Path<u16>) -> StatusCode {
        StatusCode::from_u16(code).unwrap()
    }
    let settings = settings_with(&[]);
    let router = axum::Router::new().route("/answer/{code}", axum::routing::get(answer));
    let app = keel_http::middleware::apply(router, &settings);
    let metrics =
        keel::startup::router(keel::startup::build_state(settings, crate::support::testbed::registry())).unwrap();
    let before = scrape(&metrics).await;
    let codes = [200, 201, 202, 204, 409, 418, 200, 418];
    for (round, code) in codes.iter().enumerate() {
        for _ in 0..=round {
            assert_eq!(get(&app, &format!("/answer/{code}")).await.status, *code);
        }
    }
    let after = scrape(&metrics).await;
    let moved = |code: u16| {
        let series = format!(r#"http_requests_total{{method="GET",route="/answer/{{code}}",status="{code}"}}"#);
        sample(&after, &series) - sample(&before, &series)
    };
    assert_eq!(moved(200), 1.0 + 7.0);
    assert_eq!(moved(201), 2.0);
    assert_eq!(moved(202), 3.0);
    assert_eq!(moved(204), 4.0);
    assert_eq!(moved(409), 5.0, "past the route's own slots");
    assert_eq!(moved(418), 6.0 + 8.0, "past the route's own slots");
    let counted = sample(&after, r#"http_request_duration_seconds_count{method="GET",route="/answer/{code}"}"#)
        - sample(&before, r#"http_request_duration_seconds_count{method="GET",route="/answer/{code}"}"#);
    assert_eq!(counted, 36.0);
}

/// A route's first requests, arriving at once with different statuses, race for its empty
/// slots; each must still be counted under its own status, whichever request filled the slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_first_requests_are_counted_under_their_own_status() {
    use axum::extract::Path;
    use axum::http::StatusCode;

    async fn answer(Path(code): Path<u16>) -> StatusCode {
        StatusCode::from_u16(code).unwrap()
    }
    let settings = settings_with(&[]);
    let metrics =
        keel::startup::router(keel::startup::build_state(settings.clone(), crate::support::testbed::registry()))
            .unwrap();
    let before = scrape(&metrics).await;
    let codes = [200_u16, 201, 202, 204, 409, 418];
    for _ in 0..20 {
        // A fresh router each round: fresh, empty slots to race for.
        let router = axum::Router::new().route("/race/{code}", axum::routing::get(answer));
        let app = keel_http::middleware::apply(router, &settings);
        let requests = codes.map(|code| {
            let app = app.clone();
            tokio::spawn(async move { get(&app, &format!("/race/{code}")).await.status })
        });
        for (code, request) in codes.iter().zip(requests) {
            assert_eq!(request.await.unwrap(), *code);
        }
    }
    let after = scrape(&metrics).await;
    for code in codes {
        let series = format!(r#"http_requests_total{{method="GET",route="/race/{{code}}",status="{code}"}}"#);
        assert_eq!(sample(&after, &series) - sample(&before, &series), 20.0, "status {code}");
    }
}

/// keel labels a request by matching its path against the router's templates before the router
/// sees it (`route_table.rs`). Every route axum serves must get its own template: a method no
/// route accepts makes axum answer 405 from the route it matched, without running a handler.
#[tokio::test]
async fn every_route_is_labelled_with_its_own_template() {
    let (app, _) = router(settings_with(&[]));
    let document = get(&app, "/openapi.json").await.json();
    let mut templates: Vec<String> = document["paths"].as_object().unwrap().keys().cloned().collect();
    templates.extend(["/docs", "/docs/", "/docs/{*rest}", "/openapi.json"].map(String::from));
    assert!(templates.len() > 10, "{templates:?}");
    let concrete = |template: &str| {
        let mut path = String::new();
        for segment in template.split('/').skip(1) {
            path.push('/');
            path.push_str(if segment.starts_with("{*") {
                "a/b.css"
            } else if segment.starts_with('{') {
                "x1"
            } else {
                segment
            });
        }
        if path.is_empty() { "/".to_owned() } else { path }
    };
    for template in &templates {
        let request = Request::builder().method("TRACE").uri(concrete(template)).body(Body::empty()).unwrap();
        assert_eq!(send(&app, request).await.status, 405, "axum matched {template}");
    }
    let scraped = scrape(&app).await;
    for template in &templates {
        let series = format!(r#"http_requests_total{{method="TRACE",route="{template}",status="405"}}"#);
        assert!(sample(&scraped, &series) >= 1.0, "{series} missing from:\n{scraped}");
    }
}
