//! Access control through the HTTP surface: `auth.mode = "api_key"`, in-process and in a child
//! process; scopes; the public routes; `/metrics` on the main port; `keel hash-key`; the
//! production refusal of anonymous access; and a table of hostile credentials.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::support::process::Process;
use crate::support::{Answer, router, send, settings_with};
use axum::body::Body;
use axum::http::Request;
use keel_http::App;
use serde_json::json;

const READER: &str = "reader-key-0123456789abcdef";
const WRITER: &str = "writer-key-0123456789abcdef";
const BOTH: &str = "both-key-0123456789abcdef01";
const ADMIN: &str = "admin-key-0123456789abcdef0";
const OTHER: &str = "other-key-0123456789abcdef0";
const METRICS: &str = "metrics-token-0123456789abcd";

fn digest(key: &str) -> String {
    keel_http::auth::key_digest(key.as_bytes())
}

/// A configuration file with four keys and a metrics token, as an operator writes one; removed
/// when dropped.
struct AuthConfig(std::path::PathBuf);

impl AuthConfig {
    fn new() -> Self {
        static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("keel-auth-{}-{n}.toml", std::process::id()));
        let key = |id: &str, key: &str, scopes: &str| {
            format!("[[auth.api_keys]]\nid = \"{id}\"\nsha256 = \"{}\"\nscopes = [{scopes}]\n", digest(key))
        };
        let toml = [
            format!("[auth]\nmode = \"api_key\"\nmetrics_sha256 = \"{}\"\n", digest(METRICS)),
            key("reader", READER, "\"operations:read\""),
            key("writer", WRITER, "\"operations:write\""),
            key("billing", BOTH, "\"operations:read\", \"operations:write\""),
            key("ops-team", ADMIN, "\"operations:read\", \"operations:admin\""),
            key("shipping", OTHER, "\"operations:read\", \"operations:write\""),
        ]
        .concat();
        std::fs::write(&path, toml).unwrap();
        Self(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for AuthConfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn protected() -> App {
    let config = AuthConfig::new();
    router(settings_with(&[("APP_CONFIG_FILE", config.path())])).0
}

async fn get_with(app: &App, uri: &str, headers: &[(&str, &[u8])]) -> Answer {
    let mut request = Request::get(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    send(app, request.body(Body::empty()).unwrap()).await
}

async fn submit_with(app: &App, key: &str) -> Answer {
    let request = Request::post("/v1/operations")
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(Body::from(json!({ "kind": "sleep", "input": { "ms": 1 } }).to_string()))
        .unwrap();
    send(app, request).await
}

#[tokio::test]
async fn public_routes_need_no_credential() {
    let app = protected();
    for uri in ["/", "/healthz", "/readyz", "/openapi.json", "/docs/", "/docs/swagger-ui.css"] {
        assert_eq!(get_with(&app, uri, &[]).await.status, 200, "{uri}");
    }
    get_with(&app, "/no/such/route", &[]).await.problem(404, "not-found");
}

#[tokio::test]
async fn without_a_credential_the_api_is_401_with_a_bearer_challenge() {
    let app = protected();
    for uri in ["/v1/operations", "/v1/operations/0123456789abcdef0123456789abcdef", "/testbed/sleep?ms=1"] {
        let answer = get_with(&app, uri, &[]).await;
        answer.problem(401, "unauthenticated");
        // RFC 6750 §3.1: no error code when the request carried no credential.
        assert_eq!(answer.header("www-authenticate"), Some("Bearer realm=\"keel\""), "{uri}");
    }
}

#[tokio::test]
async fn a_key_works_in_either_header_and_a_wrong_one_is_an_invalid_token() {
    let app = protected();
    let bearer = format!("Bearer {BOTH}");
    assert_eq!(get_with(&app, "/v1/operations", &[("authorization", bearer.as_bytes())]).await.status, 200);
    assert_eq!(get_with(&app, "/v1/operations", &[("x-api-key", BOTH.as_bytes())]).await.status, 200);
    let same_in_both = [("authorization", bearer.as_bytes()), ("x-api-key", BOTH.as_bytes())];
    assert_eq!(get_with(&app, "/v1/operations", &same_in_both).await.status, 200, "one key, sent in both headers");
    let wrong = get_with(&app, "/v1/operations", &[("authorization", b"Bearer not-a-configured-key-at-all")]).await;
    wrong.problem(401, "unauthenticated");
    assert_eq!(wrong.header("www-authenticate"), Some("Bearer realm=\"keel\", error=\"invalid_token\""));
    assert!(!wrong.text().contains("not-a-configured"), "the key is never echoed: {}", wrong.text());
}

#[tokio::test]
async fn each_route_asks_for_its_scope() {
    let app = protected();
    let reader = format!("Bearer {READER}");
    let writer = format!("Bearer {WRITER}");
    assert_eq!(get_with(&app, "/v1/operations", &[("authorization", reader.as_bytes())]).await.status, 200);
    let refused = submit_with(&app, READER).await;
    refused.problem(403, "forbidden");
    assert_eq!(
        refused.header("www-authenticate"),
        Some("Bearer realm=\"keel\", error=\"insufficient_scope\", scope=\"operations:write\"")
    );
    assert_eq!(submit_with(&app, WRITER).await.status, 202, "write alone may submit");
    let listing = get_with(&app, "/v1/operations", &[("authorization", writer.as_bytes())]).await;
    listing.problem(403, "forbidden");
    assert!(listing.header("www-authenticate").unwrap().contains("scope=\"operations:read\""));
    // Every operations route, read or write, with the wrong scope.
    let id = "0123456789abcdef0123456789abcdef";
    for (method, uri, key) in [
        ("GET", format!("/v1/operations/{id}"), WRITER),
        ("GET", format!("/v1/operations/{id}/wait"), WRITER),
        ("GET", format!("/v1/operations/{id}/events"), WRITER),
        ("POST", format!("/v1/operations/{id}/cancel"), READER),
        ("DELETE", format!("/v1/operations/{id}"), READER),
    ] {
        let request = Request::builder()
            .method(method)
            .uri(&uri)
            .header("authorization", format!("Bearer {key}"))
            .body(Body::empty());
        send(&app, request.unwrap()).await.problem(403, "forbidden");
    }
}

#[tokio::test]
async fn metrics_on_the_main_port_need_their_own_token() {
    let app = protected();
    get_with(&app, "/metrics", &[]).await.problem(401, "unauthenticated");
    let with_key = format!("Bearer {ADMIN}");
    get_with(&app, "/metrics", &[("authorization", with_key.as_bytes())]).await.problem(401, "unauthenticated");
    let with_token = format!("Bearer {METRICS}");
    assert_eq!(get_with(&app, "/metrics", &[("authorization", with_token.as_bytes())]).await.status, 200);
    get_with(&app, "/v1/operations", &[("authorization", with_token.as_bytes())]).await.problem(401, "unauthenticated");
}

/// A request's headers, as raw bytes.
type Headers = Vec<(&'static str, Vec<u8>)>;

/// At least twenty ways to send a credential wrong; each gets its exact status and problem,
/// none a 5xx, and none reaches an operation.
#[tokio::test]
async fn hostile_credentials_are_refused_with_their_exact_problem() {
    let app = protected();
    fn h(name: &'static str, value: impl AsRef<[u8]>) -> (&'static str, Vec<u8>) {
        (name, value.as_ref().to_vec())
    }
    let long = format!("Bearer {}", "k".repeat(16 * 1024));
    let both_bearer = format!("Bearer {BOTH}");
    let reader_bearer = format!("Bearer {READER}");
    let cases: Vec<(&str, Headers, u16, &str)> = vec![
        ("no credential", vec![], 401, "unauthenticated"),
        ("empty Authorization", vec![h("authorization", b"")], 401, "unauthenticated"),
        ("Bearer alone", vec![h("authorization", b"Bearer")], 401, "unauthenticated"),
        ("Bearer and a space", vec![h("authorization", b"Bearer ")], 401, "unauthenticated"),
        ("Basic credentials", vec![h("authorization", b"Basic YmlsbGluZzpzZWNyZXQ=")], 401, "unauthenticated"),
        ("Digest scheme", vec![h("authorization", b"Digest username=\"x\"")], 401, "unauthenticated"),
        ("Token scheme", vec![h("authorization", b"Token abc")], 401, "unauthenticated"),
        ("a tab after Bearer", vec![h("authorization", b"Bearer\tabc")], 401, "unauthenticated"),
        (
            "two spaces after Bearer",
            vec![h("authorization", format!("Bearer  {BOTH}").as_bytes())],
            401,
            "unauthenticated",
        ),
        ("the key with a trailing space", vec![h("x-api-key", format!("{BOTH} ").as_bytes())], 401, "unauthenticated"),
        ("the key in other case", vec![h("x-api-key", BOTH.to_uppercase().as_bytes())], 401, "unauthenticated"),
        ("a prefix of the key", vec![h("x-api-key", &BOTH.as_bytes()[..10])], 401, "unauthenticated"),
        ("the key and more", vec![h("x-api-key", format!("{BOTH}x").as_bytes())], 401, "unauthenticated"),
        ("the digest instead of the key", vec![h("x-api-key", digest(BOTH).as_bytes())], 401, "unauthenticated"),
        ("a 16 KB token", vec![h("authorization", long.as_bytes())], 401, "unauthenticated"),
        ("non-UTF-8 bytes", vec![h("x-api-key", b"\xff\xfe\x80key-0123456789")], 401, "unauthenticated"),
        ("an empty X-API-Key", vec![h("x-api-key", b"")], 401, "unauthenticated"),
        ("the metrics token as a key", vec![h("x-api-key", METRICS.as_bytes())], 401, "unauthenticated"),
        ("Proxy-Authorization only", vec![h("proxy-authorization", both_bearer.as_bytes())], 401, "unauthenticated"),
        ("a cookie only", vec![h("cookie", format!("api_key={BOTH}").as_bytes())], 401, "unauthenticated"),
        (
            "Authorization and X-API-Key with different keys",
            vec![h("authorization", both_bearer.as_bytes()), h("x-api-key", READER.as_bytes())],
            400,
            "invalid-credentials",
        ),
        (
            "two Authorization headers with different keys",
            vec![h("authorization", both_bearer.as_bytes()), h("authorization", reader_bearer.as_bytes())],
            400,
            "invalid-credentials",
        ),
        (
            "two X-API-Key headers",
            vec![h("x-api-key", BOTH.as_bytes()), h("x-api-key", READER.as_bytes())],
            400,
            "invalid-credentials",
        ),
        ("a valid key without the scope (write)", vec![h("authorization", reader_bearer.as_bytes())], 403, "forbidden"),
    ];
    assert!(cases.len() >= 20);
    let mut failures = Vec::new();
    for (name, headers, status, kind) in &cases {
        let uri =
            if *status == 403 { "/v1/operations/0123456789abcdef0123456789abcdef/cancel" } else { "/v1/operations" };
        let mut request = Request::builder().method(if *status == 403 { "POST" } else { "GET" }).uri(uri);
        for (header, value) in headers {
            request = request.header(*header, value.as_slice());
        }
        let answer = send(&app, request.body(Body::empty()).unwrap()).await;
        let problem = answer.json();
        if answer.status.as_u16() != *status || problem["type"] != *kind {
            failures.push(format!("{name}: expected {status} {kind}, got {} {problem}", answer.status));
        }
        if answer.status.as_u16() == 401 && answer.header("www-authenticate").is_none() {
            failures.push(format!("{name}: a 401 without WWW-Authenticate"));
        }
    }
    // A query-string key is no credential either.
    let answer = get_with(&app, &format!("/v1/operations?api_key={BOTH}"), &[]).await;
    if answer.status != 401 {
        failures.push(format!("key in the query string: got {}", answer.status));
    }
    assert!(failures.is_empty(), "{} cases failed:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn production_refuses_anonymous_access_unless_told() {
    let load =
        |vars: &[(&str, &str)]| keel::config::load_from(vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    let error = load(&[("APP_ENV", "production")]).unwrap_err().to_string();
    assert!(error.contains("auth.mode") && error.contains("allow_anonymous"), "{error}");
    assert!(load(&[("APP_ENV", "production"), ("APP_AUTH__ALLOW_ANONYMOUS", "true")]).is_ok());
    let config = AuthConfig::new();
    assert!(load(&[("APP_ENV", "production"), ("APP_CONFIG_FILE", config.path())]).is_ok(), "keys are enough");
}

#[test]
fn bad_auth_settings_name_their_key() {
    let load = |toml: &str| {
        let path = std::env::temp_dir().join(format!("keel-auth-bad-{}-{}.toml", std::process::id(), toml.len()));
        std::fs::write(&path, toml).unwrap();
        let loaded = keel::config::load_from([("APP_CONFIG_FILE".to_owned(), path.to_str().unwrap().to_owned())]);
        std::fs::remove_file(&path).unwrap();
        loaded.unwrap_err().to_string()
    };
    let hex = digest(BOTH);
    let key = |id: &str, sha: &str, scopes: &str| {
        format!("[[auth.api_keys]]\nid = \"{id}\"\nsha256 = \"{sha}\"\nscopes = [{scopes}]\n")
    };
    let api_key = "[auth]\nmode = \"api_key\"\n[metrics]\nenabled = false\n";
    assert!(load(api_key).contains("auth.api_keys"), "api_key mode with no key");
    assert!(load(&format!("{api_key}{}", key("a", "abc", ""))).contains("auth.api_keys.sha256"));
    assert!(load(&format!("{api_key}{}{}", key("a", &hex, ""), key("a", &hex, ""))).contains("listed twice"));
    assert!(load(&format!("{api_key}{}", key("two words", &hex, ""))).contains("auth.api_keys.id"));
    assert!(load(&format!("{api_key}{}", key("a", &hex, "\"operations:everything\""))).contains("scopes"));
    let metrics_open = format!("[auth]\nmode = \"api_key\"\n{}", key("a", &hex, ""));
    assert!(load(&metrics_open).contains("auth.metrics_sha256"), "/metrics on the main port needs its token");
}

#[test]
fn hash_key_prints_the_digest_of_the_key_on_standard_input() {
    let run = |input: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_keel"))
            .arg("hash-key")
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    };
    let printed = run(&format!("{BOTH}\n"));
    assert!(printed.status.success());
    assert_eq!(
        String::from_utf8(printed.stdout).unwrap().trim(),
        digest(BOTH),
        "echo's newline is not part of the key"
    );
    let short = run("short\n");
    assert_eq!(short.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&short.stderr).contains("openssl rand"));
}

/// In a child process, logging JSON as in production: why a credential failed is logged with the
/// request id, the client learns nothing more, no key reaches the log, and an operation's lines
/// name its owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_is_logged_with_its_reason_and_no_key_is_logged() {
    let config = AuthConfig::new();
    let (mut process, address) =
        Process::testbed(&[("APP_CONFIG_FILE", config.path()), ("APP_LOG__FILTER", "info,keel_operations=debug")]);
    let client = reqwest::Client::new();
    let refused = client
        .get(format!("http://{address}/v1/operations"))
        .header("x-request-id", "auth-refused-1")
        .header("authorization", "Bearer guessed-key-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let accepted = client
        .get(format!("http://{address}/v1/operations"))
        .header("x-request-id", "auth-accepted-1")
        .header("x-api-key", BOTH)
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 200);
    let submitted = client
        .post(format!("http://{address}/v1/operations"))
        .header("x-api-key", BOTH)
        .json(&json!({ "kind": "sleep", "input": { "ms": 1 } }))
        .send()
        .await
        .unwrap();
    assert_eq!(submitted.status(), 202);
    let lines = tokio::task::spawn_blocking(move || {
        let mut lines = Vec::new();
        let refusal = process.wait_for_log(|line| {
            lines.push(line.to_string());
            line["message"] == "refused: not authenticated"
        });
        process.wait_for_log(|line| {
            lines.push(line.to_string());
            line["message"] == "request finished" && line["request_id"] == "auth-accepted-1"
        });
        let started = process.wait_for_log(|line| {
            lines.push(line.to_string());
            line["message"] == "operation started"
        });
        assert_eq!(started["owner"], "billing", "the operation's log lines name its owner: {started}");
        (refusal, lines)
    })
    .await
    .unwrap();
    let (refusal, lines) = lines;
    assert_eq!(refusal["request_id"], "auth-refused-1");
    assert_eq!(refusal["reason"], "no configured key matches");
    for line in &lines {
        assert!(!line.contains("guessed-key") && !line.contains(BOTH), "a key in the log: {line}");
    }
}

#[tokio::test]
async fn the_document_states_the_security_of_each_route_and_the_docs_page_can_authorize() {
    let doc = get_with(&protected(), "/openapi.json", &[]).await.json();
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["scheme"], "bearer", "{schemes}");
    assert_eq!(
        (schemes["api_key"]["in"].as_str(), schemes["api_key"]["name"].as_str()),
        (Some("header"), Some("x-api-key"))
    );
    let list = &doc["paths"]["/v1/operations"]["get"];
    assert_eq!(list["security"], json!([{ "bearer": ["operations:read"] }, { "api_key": ["operations:read"] }]));
    let submit = &doc["paths"]["/v1/operations"]["post"];
    assert_eq!(submit["security"][0]["bearer"], json!(["operations:write"]));
    for responses in [&list["responses"], &submit["responses"]] {
        assert!(responses["401"].is_object() && responses["403"].is_object(), "{responses}");
    }
    assert_eq!(
        doc["paths"]["/testbed/sleep"]["get"]["security"],
        json!([{ "bearer": [] }, { "api_key": [] }]),
        "a route that names no scope still needs a caller"
    );
    assert_eq!(doc["paths"]["/metrics"]["get"]["security"], json!([{ "bearer": [] }]));
    for public in ["/", "/healthz", "/readyz"] {
        assert!(doc["paths"][public]["get"]["security"].is_null(), "{public} is public");
    }
    // With auth off, nothing needs a credential and the document says so.
    let open = get_with(&router(crate::support::settings()).0, "/openapi.json", &[]).await.json();
    assert!(open["components"]["securitySchemes"].is_null());
    assert!(open["paths"]["/v1/operations"]["get"]["security"].is_null());
    assert!(open["paths"]["/v1/operations"]["get"]["responses"]["401"].is_null());
}

/// `method uri` as `key`, with an optional JSON body and extra headers.
async fn call(
    app: &App,
    method: &str,
    uri: &str,
    key: &str,
    body: Option<serde_json::Value>,
    extra: &[(&str, &str)],
) -> Answer {
    let mut request = Request::builder().method(method).uri(uri).header("x-api-key", key);
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    let body = match body {
        Some(body) => {
            request = request.header("content-type", "application/json");
            Body::from(body.to_string())
        }
        None => Body::empty(),
    };
    send(app, request.body(body).unwrap()).await
}

#[tokio::test]
async fn another_callers_operation_is_404_on_every_route_and_absent_from_the_list() {
    let app = protected();
    let submitted =
        call(&app, "POST", "/v1/operations", BOTH, Some(json!({ "kind": "sleep", "input": { "ms": 60_000 } })), &[])
            .await;
    assert_eq!(submitted.status, 202, "{}", submitted.text());
    let operation = submitted.json();
    assert_eq!(operation["owner"], "billing", "the owner is in the operation's JSON");
    let id = operation["id"].as_str().unwrap().to_owned();
    let missing = "0123456789abcdef0123456789abcdef";
    let routes = |id: &str| {
        [
            ("GET", format!("/v1/operations/{id}")),
            ("GET", format!("/v1/operations/{id}/wait?timeout_ms=10")),
            ("GET", format!("/v1/operations/{id}/events")),
            ("POST", format!("/v1/operations/{id}/cancel")),
            ("DELETE", format!("/v1/operations/{id}")),
        ]
    };
    for ((method, theirs), (_, nothing)) in routes(&id).into_iter().zip(routes(missing)) {
        let refused = call(&app, method, &theirs, OTHER, None, &[]).await;
        let absent = call(&app, method, &nothing, OTHER, None, &[]).await;
        let (mut refused_problem, mut absent_problem) =
            (refused.problem(404, "not-found"), absent.problem(404, "not-found"));
        refused_problem["request_id"].take();
        absent_problem["request_id"].take();
        assert_eq!(
            refused_problem, absent_problem,
            "{method} {theirs}: indistinguishable from an id that does not exist"
        );
    }
    let theirs = call(&app, "GET", "/v1/operations", OTHER, None, &[]).await.json();
    assert_eq!(theirs["operations"], json!([]), "another caller's listing leaves it out");
    let own = call(&app, "GET", "/v1/operations", BOTH, None, &[]).await.json();
    assert_eq!(own["operations"][0]["id"], id.as_str());
    assert_eq!(call(&app, "GET", &format!("/v1/operations/{id}"), BOTH, None, &[]).await.status, 200);
    // `operations:admin` sees every caller's.
    assert_eq!(call(&app, "GET", &format!("/v1/operations/{id}"), ADMIN, None, &[]).await.status, 200);
    let everyone = call(&app, "GET", "/v1/operations", ADMIN, None, &[]).await.json();
    assert!(everyone["operations"].as_array().unwrap().iter().any(|op| op["id"] == id.as_str()));
    // The owner still cancels it; nothing another caller sent did.
    let cancelled = call(&app, "POST", &format!("/v1/operations/{id}/cancel"), BOTH, None, &[]).await;
    assert_eq!(cancelled.json()["status"], "canceled");
}

#[tokio::test]
async fn idempotency_keys_are_per_caller() {
    let app = protected();
    let key = [("idempotency-key", "order-42")];
    let submit = |caller: &'static str, ms: u64| {
        let app = app.clone();
        async move {
            call(&app, "POST", "/v1/operations", caller, Some(json!({ "kind": "sleep", "input": { "ms": ms } })), &key)
                .await
        }
    };
    let billing = submit(BOTH, 1).await;
    let shipping = submit(OTHER, 2).await;
    assert_eq!(
        (billing.status.as_u16(), shipping.status.as_u16()),
        (202, 202),
        "one key, two callers, two bodies: no conflict"
    );
    assert_ne!(billing.json()["id"], shipping.json()["id"]);
    let again = submit(BOTH, 1).await;
    assert_eq!(again.json()["id"], billing.json()["id"], "a retry by the same caller finds its operation");
    submit(BOTH, 3).await.problem(422, "idempotency-key-reused");
}

#[tokio::test]
async fn a_kinds_code_knows_its_caller() {
    let app = protected();
    let body = json!({ "kind": "whoami" });
    let done = call(&app, "POST", "/v1/operations", OTHER, Some(body), &[("prefer", "wait=5")]).await.json();
    assert_eq!(done["result"], json!({ "owner": "shipping" }), "{done}");
}

/// The Kubernetes example's `[auth]` (the Secret keel-auth, mounted where its ConfigMap points
/// `APP_CONFIG_FILE`) is a configuration production accepts, with its metrics port.
#[test]
fn the_kubernetes_examples_auth_section_is_one_production_accepts() {
    let manifest =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/kubernetes/example-secret/auth.yaml"))
            .unwrap();
    let toml: String = manifest
        .split_once("auth.toml: |\n")
        .expect("the Secret holds auth.toml")
        .1
        .lines()
        .map(|line| line.strip_prefix("    ").unwrap_or(line))
        .map(|line| format!("{line}\n"))
        .collect();
    let path = std::env::temp_dir().join(format!("keel-k8s-auth-{}.toml", std::process::id()));
    std::fs::write(&path, toml).unwrap();
    let loaded = keel::config::load_from(
        [("APP_ENV", "production"), ("APP_METRICS__PORT", "9100"), ("APP_CONFIG_FILE", path.to_str().unwrap())]
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    std::fs::remove_file(&path).unwrap();
    let settings = loaded.unwrap();
    assert_eq!(settings.auth.mode, keel_config::AuthMode::ApiKey);
    assert_eq!(settings.auth.api_keys.len(), 2);
    let configmap =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/kubernetes/configmap.yaml")).unwrap();
    assert!(configmap.contains("APP_CONFIG_FILE: /etc/keel/auth.toml") && !configmap.contains("ALLOW_ANONYMOUS"));
}
