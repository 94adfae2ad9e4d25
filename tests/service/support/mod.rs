//! Helpers shared by the integration tests: settings for the `test` environment, the router for
//! in-process requests, and a real server on port 0 started by the same code path as `main`.
//! Set `TEST_LOG=1` to see keel's logs while a test runs.

#![allow(dead_code)] // Each test binary uses its own subset.

pub mod process;
pub mod proxy;
pub mod testbed;

use std::sync::Once;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use keel::config::ServiceSettings;
use keel::startup::Application;
use keel_config::Settings;
use keel_http::App;
use keel_http::AppState;
use keel_http::lifecycle::Phase;
use keel_operations::Registry;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower::ServiceExt;
use utoipa_axum::router::OpenApiRouter;

pub fn settings() -> Settings {
    settings_with(&[])
}

/// `test` environment settings with `APP_*`-style overrides, e.g. `("APP_SERVER__PORT", "0")`.
pub fn settings_with(vars: &[(&str, &str)]) -> Settings {
    init_logs();
    let mut all = vec![("APP_ENV".to_owned(), "test".to_owned())];
    all.extend(vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    keel::config::load_from(all).expect("test settings load")
}

fn init_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            let _ = tracing_subscriber::fmt().with_env_filter("debug").with_test_writer().try_init();
        }
    });
}

/// The test bed's application router (middleware included; see [`testbed`]), ready as after
/// start-up.
pub fn router(settings: Settings) -> (App, AppState) {
    router_with(settings, testbed::registry(), testbed::routes())
}

/// The service's own application, with its kinds and routes (`keel::kinds::registry()`,
/// `keel::routes::routes()`), ready as after start-up: for tests of what the service registers.
pub fn keel_router(settings: Settings) -> (App, AppState) {
    let service = ServiceSettings::from_settings(&settings).expect("the service's settings are valid");
    router_with(settings, keel::kinds::registry(), keel::routes::routes(&service))
}

pub fn router_with(settings: Settings, registry: Registry, routes: OpenApiRouter<AppState>) -> (App, AppState) {
    let state = keel::startup::build_state(settings, registry);
    state.lifecycle.set(Phase::Ready);
    (keel_http::app(routes, state.clone()), state)
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts an RFC 9457 problem with this status and type, and returns it.
    pub fn problem(&self, status: u16, kind: &str) -> Value {
        assert_eq!(self.status.as_u16(), status, "unexpected status; body: {}", self.text());
        assert_eq!(self.header("content-type"), Some("application/problem+json"), "body: {}", self.text());
        let problem = self.json();
        assert_eq!(problem["type"], kind, "problem: {problem}");
        assert_eq!(problem["status"], status);
        assert!(problem["title"].is_string());
        assert_eq!(problem["request_id"].as_str(), self.header("x-request-id"), "problem carries the request id");
        problem
    }
}

/// Sends one request through the router in-process.
pub async fn send(router: &App, request: Request<Body>) -> Answer {
    let response = router.clone().oneshot(request).await.expect("router is infallible");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("body reads").to_bytes();
    Answer { status: parts.status, headers: parts.headers, body }
}

pub async fn get(router: &App, uri: &str) -> Answer {
    send(router, Request::get(uri).body(Body::empty()).unwrap()).await
}

pub async fn post_json(router: &App, uri: &str, body: Value) -> Answer {
    let request =
        Request::post(uri).header("content-type", "application/json").body(Body::from(body.to_string())).unwrap();
    send(router, request).await
}

/// A real keel server on an ephemeral port, started through `Application` as `main` does.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<std::io::Result<()>>,
}

/// The test bed (see [`testbed`]) on a real socket.
pub async fn spawn_app(settings: Settings) -> TestApp {
    spawn_app_with(settings, testbed::registry(), testbed::routes()).await
}

pub async fn spawn_app_with(settings: Settings, registry: Registry, routes: OpenApiRouter<AppState>) -> TestApp {
    let app = keel::startup::application_with(settings, registry, routes).await.expect("application builds");
    start(app)
}

fn start(app: Application) -> TestApp {
    let address = format!("http://127.0.0.1:{}", app.port());
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    TestApp { address, client: reqwest::Client::new(), stop: Some(stop), server }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// Starts the shutdown, as SIGTERM would.
    pub fn begin_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Shuts down and waits for the server to finish draining.
    pub async fn stop(mut self) -> std::io::Result<()> {
        self.begin_shutdown();
        self.server.await.expect("server task does not panic")
    }
}
