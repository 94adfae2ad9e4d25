//! Rate limits through the HTTP surface: `429` with `Retry-After` and the IETF draft's
//! `RateLimit-Policy`/`RateLimit`, separate buckets for submissions and reads, per caller (per
//! client address when anonymous, on a real socket), refilled as time passes, public routes
//! never limited, and the limiter's memory bounded however many callers arrive.

use std::time::Duration;

use crate::support::{get, post_json, router, send, settings_with, spawn_app};
use axum::body::Body;
use axum::http::Request;
use keel_config::RateLimitSettings;
use keel_http::rate_limit::{Class, RateLimits, Verdict};
use serde_json::json;

fn limited(reads_per_second: &str, reads_burst: &str) -> keel_http::App {
    router(settings_with(&[
        ("APP_RATE_LIMIT__ENABLED", "true"),
        ("APP_RATE_LIMIT__READS_PER_SECOND", reads_per_second),
        ("APP_RATE_LIMIT__READS_BURST", reads_burst),
        ("APP_RATE_LIMIT__SUBMISSIONS_PER_SECOND", "1"),
        ("APP_RATE_LIMIT__SUBMISSIONS_BURST", "1"),
    ]))
    .0
}

#[tokio::test]
async fn over_the_limit_is_429_with_retry_after_and_the_ratelimit_headers() {
    let app = limited("1", "2");
    let first = get(&app, "/v1/operations").await;
    assert_eq!(first.status, 200);
    assert_eq!(first.header("ratelimit-policy"), Some("\"reads\";q=2;w=2"));
    assert_eq!(first.header("ratelimit"), Some("\"reads\";r=1;t=1"));
    assert_eq!(get(&app, "/v1/operations").await.header("ratelimit"), Some("\"reads\";r=0;t=2"));
    let refused = get(&app, "/v1/operations").await;
    refused.problem(429, "rate-limited");
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert_eq!(refused.header("ratelimit-policy"), Some("\"reads\";q=2;w=2"));
    assert_eq!(refused.header("ratelimit"), Some("\"reads\";r=0;t=1"));
}

#[tokio::test]
async fn submissions_and_reads_have_buckets_of_their_own_and_public_routes_none() {
    let app = limited("1", "1");
    assert_eq!(get(&app, "/v1/operations").await.status, 200);
    get(&app, "/v1/operations").await.problem(429, "rate-limited");
    let submitted = post_json(&app, "/v1/operations", json!({ "kind": "sleep", "input": { "ms": 1 } })).await;
    assert_eq!(submitted.status, 202, "reads spent take nothing from submissions");
    assert_eq!(submitted.header("ratelimit-policy"), Some("\"submissions\";q=1;w=1"));
    post_json(&app, "/v1/operations", json!({ "kind": "sleep", "input": { "ms": 1 } }))
        .await
        .problem(429, "rate-limited");
    for uri in ["/healthz", "/readyz", "/", "/openapi.json", "/healthz", "/readyz"] {
        let answer = get(&app, uri).await;
        assert_eq!(answer.status, 200, "{uri} is never limited");
        assert_eq!(answer.header("ratelimit"), None, "{uri}");
    }
}

#[tokio::test]
async fn a_spent_bucket_refills_as_retry_after_says() {
    let app = limited("2", "1");
    assert_eq!(get(&app, "/v1/operations").await.status, 200);
    let refused = get(&app, "/v1/operations").await;
    refused.problem(429, "rate-limited");
    let wait: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    // The deadline the server gave, with a margin: half a second refills a token at 2/s.
    tokio::time::sleep(Duration::from_secs(wait) + Duration::from_millis(100)).await;
    assert_eq!(get(&app, "/v1/operations").await.status, 200, "refilled");
}

#[tokio::test]
async fn each_caller_has_its_own_buckets() {
    let key = |id: &str, key: &str| {
        format!(
            "[[auth.api_keys]]\nid = \"{id}\"\nsha256 = \"{}\"\nscopes = [\"operations:read\"]\n",
            keel_http::auth::key_digest(key.as_bytes())
        )
    };
    let path = std::env::temp_dir().join(format!("keel-rate-{}.toml", std::process::id()));
    let config = format!(
        "[auth]\nmode = \"api_key\"\n[metrics]\nenabled = false\n[rate_limit]\nenabled = true\nreads_per_second = 1\nreads_burst = 1\n{}{}",
        key("alpha", "alpha-key-0123456789abcdef"),
        key("beta", "beta-key-0123456789abcdef0")
    );
    std::fs::write(&path, config).unwrap();
    let (app, _) = router(settings_with(&[("APP_CONFIG_FILE", path.to_str().unwrap())]));
    std::fs::remove_file(&path).unwrap();
    let as_caller =
        |key: &'static str| Request::get("/v1/operations").header("x-api-key", key).body(Body::empty()).unwrap();
    assert_eq!(send(&app, as_caller("alpha-key-0123456789abcdef")).await.status, 200);
    send(&app, as_caller("alpha-key-0123456789abcdef")).await.problem(429, "rate-limited");
    assert_eq!(send(&app, as_caller("beta-key-0123456789abcdef0")).await.status, 200, "alpha's limit is alpha's");
}

/// Anonymous callers are told apart by their address, as the TCP connection gives it.
#[tokio::test]
async fn an_anonymous_client_is_limited_by_its_address_on_a_real_socket() {
    let app = spawn_app(settings_with(&[
        ("APP_RATE_LIMIT__ENABLED", "true"),
        ("APP_RATE_LIMIT__READS_PER_SECOND", "1"),
        ("APP_RATE_LIMIT__READS_BURST", "1"),
    ]))
    .await;
    let first = app.client.get(app.url("/v1/operations")).send().await.unwrap();
    assert_eq!(first.status(), 200);
    let second =
        app.client.get(app.url("/v1/operations")).header("x-forwarded-for", "203.0.113.9").send().await.unwrap();
    assert_eq!(second.status(), 429, "a forwarded-for header changes nothing: the address is the connection's");
    assert!(second.headers().get("retry-after").is_some());
    app.stop().await.unwrap();
}

#[test]
fn the_limiter_holds_no_more_buckets_than_it_is_given_however_many_callers_arrive() {
    let settings = RateLimitSettings {
        enabled: true,
        submissions_per_second: 1,
        submissions_burst: 1,
        reads_per_second: 1,
        reads_burst: 1,
        max_tracked_callers: 1000,
    };
    let limits = RateLimits::from_settings(&settings).unwrap();
    let mut refused = 0;
    for caller in 0..100_000 {
        if let Verdict::Limited { .. } = limits.check(Class::Read, &format!("caller-{caller}")) {
            refused += 1;
        }
    }
    assert!(limits.tracked() <= 1000, "{} buckets for 100,000 callers", limits.tracked());
    // 100,000 callers in 1,000 buckets of one token a second: most find theirs spent (how many
    // depends on how fast the loop runs, as the buckets refill meanwhile).
    assert!(refused >= 50_000, "{refused}");
}

#[tokio::test]
async fn the_document_states_the_429_when_limits_are_on() {
    let doc = get(&limited("1", "1"), "/openapi.json").await.json();
    let limited = &doc["paths"]["/v1/operations"]["post"]["responses"]["429"];
    assert!(limited["headers"]["Retry-After"].is_object() && limited["headers"]["RateLimit"].is_object(), "{limited}");
    assert!(doc["paths"]["/healthz"]["get"]["responses"]["429"].is_null(), "probes are never limited");
    let open = get(&router(crate::support::settings()).0, "/openapi.json").await.json();
    assert!(open["paths"]["/v1/operations"]["post"]["responses"]["429"].is_null(), "no limits, no 429");
}
