//! Graceful shutdown: in-flight work completes, readiness turns 503 first, idle connections
//! do not hold the process up, and the process exits 0 on SIGTERM.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use crate::support::process::Process;
use crate::support::{settings_with, spawn_app_with};
use axum::routing::get;
use serde_json::Value;
use tokio::sync::Notify;

/// A route that says when it has started, then takes `ms` to answer.
fn slow_route(started: Arc<Notify>, ms: u64) -> utoipa_axum::router::OpenApiRouter<keel_http::AppState> {
    keel::routes::routes(&Default::default()).route(
        "/slow",
        get(move || {
            let started = started.clone();
            async move {
                started.notify_one();
                tokio::time::sleep(Duration::from_millis(ms)).await;
                "finished"
            }
        }),
    )
}

#[tokio::test]
async fn an_in_flight_request_completes_during_shutdown() {
    let started = Arc::new(Notify::new());
    let mut app = spawn_app_with(settings_with(&[]), keel::kinds::registry(), slow_route(started.clone(), 300)).await;
    let request = tokio::spawn(app.client.get(app.url("/slow")).send());
    started.notified().await;
    app.begin_shutdown();
    let response = request.await.unwrap().expect("the in-flight request is answered");
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "finished");
    app.stop().await.expect("the server stops cleanly");
}

#[tokio::test]
async fn readiness_turns_503_as_soon_as_draining_begins() {
    let mut app = spawn_app_with(
        settings_with(&[("APP_SERVER__SHUTDOWN_DELAY_MS", "5000")]),
        keel::kinds::registry(),
        keel::routes::routes(&Default::default()),
    )
    .await;
    assert_eq!(app.client.get(app.url("/readyz")).send().await.unwrap().status(), 200);
    app.begin_shutdown();
    let mut status = 200;
    for _ in 0..500 {
        status = app.client.get(app.url("/readyz")).send().await.unwrap().status().as_u16();
        if status == 503 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(status, 503, "readiness turned 503 while the listener still accepts");
    assert_eq!(app.client.get(app.url("/")).send().await.unwrap().status(), 200, "traffic is still served meanwhile");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_the_in_flight_request_and_exits_0() {
    let (mut process, address) = Process::testbed(&[]);
    let client = reqwest::Client::new();
    let request = tokio::spawn(client.get(format!("http://{address}/testbed/sleep?ms=500")).send());
    let started = tokio::task::spawn_blocking(move || {
        process.wait_for_log(|line| line["message"] == "request started" && line["route"] == "/testbed/sleep");
        process
    });
    let mut process = started.await.unwrap();
    process.terminate();
    let response = request.await.unwrap().expect("the in-flight request is answered");
    assert_eq!(response.status(), 200);
    let exit = tokio::task::spawn_blocking(move || {
        process.wait_for_log(|line| line["message"] == "shutdown complete");
        process.child.wait().unwrap()
    })
    .await
    .unwrap();
    assert_eq!(exit.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_do_not_hold_up_shutdown() {
    let (mut process, address) = Process::start(&[("APP_SERVER__SHUTDOWN_GRACE_MS", "60000")]);
    let client = reqwest::Client::builder().pool_idle_timeout(None).build().unwrap();
    assert_eq!(client.get(format!("http://{address}/")).send().await.unwrap().status(), 200);
    // The pooled connection now sits idle, kept alive.
    process.terminate();
    let (exit, abandoned) = tokio::task::spawn_blocking(move || {
        let mut abandoned = false;
        process.wait_for_log(|line| {
            abandoned |= line["message"] == "grace period over: abandoning open connections";
            line["message"] == "shutdown complete"
        });
        (process.child.wait().unwrap(), abandoned)
    })
    .await
    .unwrap();
    assert!(!abandoned, "the idle connection was closed, not waited out");
    assert_eq!(exit.code(), Some(0));
    drop(client);
}

#[test]
fn an_invalid_setting_stops_the_process_with_one_line() {
    let output =
        Command::new(env!("CARGO_BIN_EXE_keel")).env_clear().env("APP_SERVER__PORT", "not-a-port").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("server.port"), "{stderr}");
}

#[test]
fn the_command_line_prints_version_and_configuration() {
    let version = Command::new(env!("CARGO_BIN_EXE_keel")).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&version.stdout).contains(env!("CARGO_PKG_VERSION")));
    let config = Command::new(env!("CARGO_BIN_EXE_keel"))
        .arg("config")
        .env_clear()
        .env("APP_SERVER__PORT", "9123")
        .output()
        .unwrap();
    assert!(config.status.success());
    let config: Value = serde_json::from_slice(&config.stdout).unwrap();
    assert_eq!(config["server"]["port"], 9123);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_exits_0_only_when_ready() {
    let (process, address) = Process::start(&[]);
    let port = address.rsplit(':').next().unwrap().to_owned();
    let check = |port: &str| {
        Command::new(env!("CARGO_BIN_EXE_keel"))
            .arg("healthcheck")
            .env_clear()
            .env("APP_SERVER__PORT", port)
            .output()
            .unwrap()
            .status
            .code()
    };
    assert_eq!(check(&port), Some(0));
    process.terminate();
    let mut process = process;
    process.child.wait().unwrap();
    assert_eq!(check(&port), Some(1), "nothing listens any more");
}
