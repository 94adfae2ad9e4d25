//! The benchmark's standard stack: keel's two measured routes on axum behind the layers a
//! production service needs, each the ecosystem's stock part, wired without tuning:
//! tower-http's `TraceLayer` (a span per request, one JSON log line per response through
//! tracing-subscriber and tracing-appender's non-blocking writer), a request id set and
//! propagated, `TimeoutLayer`, `CatchPanicLayer`, `RequestBodyLimitLayer`, and Prometheus
//! metrics by matched route. `GET /v1/operations/{id}` checks an API key by its SHA-256, as keel
//! does, and answers a stored JSON object.
//!
//!     BENCH_API_KEY=secret cargo run --release -p standard-axum -- 127.0.0.1:8092

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Path, Request, State};
use axum::http::{HeaderName, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use sha2::{Digest, Sha256};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

#[derive(Clone)]
struct AppState {
    /// Caller by the SHA-256 of its key.
    keys: Arc<HashMap<[u8; 32], String>>,
    operations: Arc<HashMap<String, serde_json::Value>>,
}

async fn root() -> String {
    let result = async_operation().await;
    format!("Result: {result}")
}

async fn async_operation() -> &'static str {
    "Async operation result"
}

async fn operation(State(state): State<AppState>, Path(id): Path<String>, request: Request) -> Response {
    let key = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    let digest: Option<[u8; 32]> = key.map(|key| Sha256::digest(key.as_bytes()).into());
    if digest.and_then(|digest| state.keys.get(&digest)).is_none() {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    match state.operations.get(&id) {
        Some(operation) => Json(operation.clone()).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn record_metrics(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request.extensions().get::<MatchedPath>().map(|path| path.as_str().to_owned()).unwrap_or_default();
    let method = request.method().to_string();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [("method", method), ("route", route), ("status", status)];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels[..2]).record(started.elapsed().as_secs_f64());
    response
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let address = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:8092".to_owned());
    let (writer, _guard) = tracing_appender::non_blocking(std::io::stdout());
    tracing_subscriber::fmt().json().with_env_filter("info").with_writer(writer).init();
    let prometheus =
        metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder().map_err(std::io::Error::other)?;

    let key = std::env::var("BENCH_API_KEY").unwrap_or_default();
    let keys = HashMap::from([(Sha256::digest(key.as_bytes()).into(), "bench".to_owned())]);
    let stored = serde_json::json!({
        "id": "0123456789abcdef0123456789abcdef", "kind": "sleep", "status": "succeeded",
        "owner": "bench", "result": { "slept_ms": 1, "steps": 1 }, "done": true,
    });
    let operations = HashMap::from([("0123456789abcdef0123456789abcdef".to_owned(), stored)]);
    let state = AppState { keys: Arc::new(keys), operations: Arc::new(operations) };

    let request_id = HeaderName::from_static("x-request-id");
    let app = Router::new()
        .route("/", get(root))
        .route("/v1/operations/{id}", get(operation))
        .route("/metrics", get(move || std::future::ready(prometheus.render())))
        .with_state(state)
        .layer(
            ServiceBuilder::new()
                .layer(CatchPanicLayer::new())
                .layer(RequestBodyLimitLayer::new(1024 * 1024))
                .layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, Duration::from_secs(30))),
        )
        .layer(axum::middleware::from_fn(record_metrics))
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(|request: &Request| {
                            let id = request.headers().get("x-request-id").and_then(|v| v.to_str().ok());
                            let route = request.extensions().get::<MatchedPath>().map(MatchedPath::as_str);
                            tracing::info_span!("request", request_id = id, method = %request.method(), route)
                        })
                        .on_request(())
                        .on_response(DefaultOnResponse::new().level(Level::INFO)),
                )
                .layer(PropagateRequestIdLayer::new(request_id)),
        );
    let listener = tokio::net::TcpListener::bind(&address).await?;
    axum::serve(listener, app).await
}
