//! `auth.mode = "jwt"` through the HTTP surface: tokens of each algorithm accepted, a table of
//! hostile tokens refused, the key set served by a real local HTTP server (fetched at start,
//! fetched again for an unknown `kid` at most once per interval, and in the background when
//! old), a JWKS file, start-up refusals, and keel on a real socket.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use self::base64_url::encode as b64;
use crate::support::{Answer, router, send, settings_with, spawn_app};
use axum::body::Body;
use axum::http::Request;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use keel_config::Settings;
use keel_http::App;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use serde_json::{Value, json};

const ISSUER: &str = "https://id.example.test/";
const AUDIENCE: &str = "keel-tests";
const METRICS: &str = "metrics-token-0123456789abcd";
const HMAC_SECRET: &[u8] = b"an-hmac-secret-of-32-bytes-long!";
const RSA_PEM: &[u8] = include_bytes!("../fixtures/jwt-test-rsa.pem");

/// base64url without padding, as JOSE writes it.
mod base64_url {
    pub fn encode(bytes: &[u8]) -> String {
        const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
            for i in 0..=chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            }
        }
        out
    }
}

/// Signing keys for each algorithm, their JWKs, and a key outside the set.
struct Keys {
    rsa: EncodingKey,
    ec: EncodingKey,
    ed: EncodingKey,
    hmac: EncodingKey,
    outsider: EncodingKey,
    jwks: Vec<Jwk>,
}

fn jwk(key: &EncodingKey, algorithm: Algorithm, kid: &str) -> Jwk {
    let mut jwk = Jwk::from_encoding_key(key, algorithm).expect("a JWK of the key");
    jwk.common.key_id = Some(kid.to_owned());
    jwk
}

/// A fresh Ed25519 key: the signing key and its JWK (`from_encoding_key` reads only PKCS#8 v1,
/// ring writes v2).
fn ed25519(kid: &str) -> (EncodingKey, Jwk) {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
    let public = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap().public_key().as_ref().to_vec();
    let jwk = json!({ "kty": "OKP", "crv": "Ed25519", "x": b64(&public), "kid": kid, "alg": "EdDSA" });
    (EncodingKey::from_ed_der(pkcs8.as_ref()), serde_json::from_value(jwk).unwrap())
}

impl Keys {
    fn new() -> Self {
        let random = SystemRandom::new();
        let ec = EcdsaKeyPair::generate_pkcs8(&ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING, &random).unwrap();
        let rsa = EncodingKey::from_rsa_pem(RSA_PEM).unwrap();
        let ec = EncodingKey::from_ec_der(ec.as_ref());
        let (ed, ed_jwk) = ed25519("ed-1");
        let (outsider, _) = ed25519("outsider");
        let (_, second_ed_jwk) = ed25519("ed-0");
        let hmac = EncodingKey::from_secret(HMAC_SECRET).unwrap();
        // The RSA key's JWK names no alg: the key's type allows RS256 to PS512.
        let mut rsa_jwk = jwk(&rsa, Algorithm::RS256, "rsa-1");
        rsa_jwk.common.key_algorithm = None;
        let jwks = vec![
            rsa_jwk,
            jwk(&ec, Algorithm::ES256, "ec-1"),
            ed_jwk,
            second_ed_jwk,
            jwk(&hmac, Algorithm::HS256, "hs-1"),
        ];
        Self { rsa, ec, ed, hmac, outsider, jwks }
    }

    fn set(&self) -> Value {
        serde_json::to_value(JwkSet { keys: self.jwks.clone() }).unwrap()
    }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// Claims that pass: `sub`, both operations scopes, this issuer and audience, valid for an hour.
fn claims(sub: &str) -> Value {
    json!({
        "sub": sub, "iss": ISSUER, "aud": AUDIENCE, "iat": now(), "nbf": now() - 10, "exp": now() + 3600,
        "scope": "openid operations:read operations:write",
    })
}

fn token(key: &EncodingKey, algorithm: Algorithm, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(algorithm);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).expect("the token is signed")
}

/// The identity provider's key set on a real HTTP server: what it serves can change, and it
/// counts the fetches.
struct KeyServer {
    url: String,
    set: Arc<Mutex<Value>>,
    fetches: Arc<AtomicUsize>,
}

impl KeyServer {
    async fn start(set: Value) -> Self {
        let set = Arc::new(Mutex::new(set));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (served, counted) = (Arc::clone(&set), Arc::clone(&fetches));
        let app = axum::Router::new().route(
            "/.well-known/jwks.json",
            axum::routing::get(move || {
                let (served, counted) = (Arc::clone(&served), Arc::clone(&counted));
                async move {
                    counted.fetch_add(1, Ordering::SeqCst);
                    axum::Json(served.lock().unwrap().clone())
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/.well-known/jwks.json", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, set, fetches }
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    fn serve(&self, set: Value) {
        *self.set.lock().unwrap() = set;
    }
}

/// Settings for JWTs from `jwks_url`, plus `extra` overrides.
fn jwt_settings(jwks_url: &str, extra: &[(&str, &str)]) -> Settings {
    jwt_settings_from(("APP_AUTH__JWT__JWKS_URL", jwks_url), extra)
}

/// Settings for JWTs from a key `source` (`jwks_url` or `jwks_file`).
fn jwt_settings_from(source: (&str, &str), extra: &[(&str, &str)]) -> Settings {
    let metrics = keel_http::auth::key_digest(METRICS.as_bytes());
    let mut vars = vec![
        ("APP_AUTH__MODE", "jwt"),
        ("APP_AUTH__METRICS_SHA256", metrics.as_str()),
        ("APP_AUTH__JWT__ISSUER", ISSUER),
        ("APP_AUTH__JWT__AUDIENCE", AUDIENCE),
        source,
    ];
    vars.extend_from_slice(extra);
    settings_with(&vars)
}

/// The test bed in-process with JWT auth, its keys loaded as at start.
async fn protected(jwks_url: &str, extra: &[(&str, &str)]) -> App {
    let (app, state) = router(jwt_settings(jwks_url, extra));
    state.auth.as_ref().unwrap().prepare().await.expect("the key set loads");
    app
}

/// A provider serving the test keys, and keel trusting it, with `extra` settings.
async fn provider_and_keel(extra: &[(&str, &str)]) -> (Keys, KeyServer, App) {
    let keys = Keys::new();
    let server = KeyServer::start(keys.set()).await;
    let app = protected(&server.url, extra).await;
    (keys, server, app)
}

async fn call(app: &App, method: &str, uri: &str, token: &str, body: Option<Value>) -> Answer {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json");
    send(app, request.body(body.map_or_else(Body::empty, |body| Body::from(body.to_string()))).unwrap()).await
}

async fn whoami(app: &App, token: &str) -> Answer {
    let request = Request::post("/v1/operations")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .header("prefer", "wait=5");
    send(app, request.body(Body::from(json!({ "kind": "whoami" }).to_string())).unwrap()).await
}

#[tokio::test]
async fn a_token_of_each_algorithm_authenticates_its_subject() {
    let (keys, server, app) = provider_and_keel(&[]).await;
    let cases = [
        ("RS256", &keys.rsa, Algorithm::RS256, Some("rsa-1")),
        ("PS256", &keys.rsa, Algorithm::PS256, Some("rsa-1")),
        ("ES256", &keys.ec, Algorithm::ES256, Some("ec-1")),
        ("EdDSA", &keys.ed, Algorithm::EdDSA, Some("ed-1")),
        ("HS256", &keys.hmac, Algorithm::HS256, Some("hs-1")),
        // Without a kid, the one key that verifies the algorithm.
        ("RS512-without-kid", &keys.rsa, Algorithm::RS512, None),
    ];
    for (name, key, algorithm, kid) in cases {
        let subject = format!("user-{name}");
        let token = token(key, algorithm, kid, &claims(&subject));
        // Twice: verified, then remembered.
        for _ in 0..2 {
            let done = whoami(&app, &token).await;
            assert_eq!(done.status, 200, "{name}: {}", done.text());
            assert_eq!(done.json()["result"], json!({ "owner": subject }), "{name}");
            assert_eq!(done.json()["owner"], json!(subject), "{name}");
        }
    }
    assert_eq!(server.fetches(), 1, "fetched once, at start");
}

#[tokio::test]
async fn scopes_and_ownership_come_from_the_token() {
    // Every request verified in full: nothing remembered.
    let (keys, _server, app) = provider_and_keel(&[("APP_AUTH__JWT__VERIFIED_TOKENS", "0")]).await;
    let sign = |claims: &Value| token(&keys.ed, Algorithm::EdDSA, Some("ed-1"), claims);
    let alice = sign(&claims("alice"));
    let bob = sign(&claims("bob"));
    let mut reader_claims = claims("carol");
    reader_claims.as_object_mut().unwrap().remove("scope");
    reader_claims["scp"] = json!(["operations:read"]);
    let reader = sign(&reader_claims);
    let mut admin_claims = claims("root");
    admin_claims["scope"] = json!("operations:read operations:admin");
    let admin = sign(&admin_claims);

    let submitted =
        call(&app, "POST", "/v1/operations", &alice, Some(json!({ "kind": "sleep", "input": { "ms": 1 } }))).await;
    assert_eq!(submitted.status, 202, "{}", submitted.text());
    let id = submitted.json()["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/operations/{id}");
    assert_eq!(call(&app, "GET", &path, &alice, None).await.status, 200);
    call(&app, "GET", &path, &bob, None).await.problem(404, "not-found");
    assert_eq!(call(&app, "GET", &path, &admin, None).await.status, 200, "admin sees every caller's");
    call(&app, "POST", "/v1/operations", &reader, Some(json!({ "kind": "whoami" }))).await.problem(403, "forbidden");
    assert_eq!(call(&app, "GET", "/v1/operations", &reader, None).await.status, 200, "scp as an array");
    let listed = call(&app, "GET", "/v1/operations", &bob, None).await.json();
    assert_eq!(listed["operations"], json!([]), "bob's list lacks alice's operation");
}

type Case = (&'static str, String, &'static str);

/// Tokens an attacker or a misconfigured client sends. Each is `401` with `error="invalid_token"`
/// (or, where noted, without a code) and the reason goes to the log only.
fn hostile_tokens(keys: &Keys) -> Vec<Case> {
    let sign = |claims: &Value| token(&keys.ed, Algorithm::EdDSA, Some("ed-1"), claims);
    let with = |change: &dyn Fn(&mut Value)| {
        let mut claims = claims("mallory");
        change(&mut claims);
        sign(&claims)
    };
    let good = sign(&claims("mallory"));
    let parts: Vec<&str> = good.split('.').collect();
    let header = |value: Value| b64(value.to_string().as_bytes());
    let payload = b64(claims("mallory").to_string().as_bytes());
    let admin_payload = {
        let mut claims = claims("mallory");
        claims["scope"] = json!("operations:admin operations:read");
        b64(claims.to_string().as_bytes())
    };
    // The RSA key's public half, as an attacker would find it in the JWKS, used as an HMAC secret.
    let rsa_jwk = serde_json::to_value(&keys.jwks[0]).unwrap();
    let public_as_secret = EncodingKey::from_secret(rsa_jwk["n"].as_str().unwrap().as_bytes()).unwrap();
    let modulus = jsonwebtoken::DecodingKey::from_jwk(&keys.jwks[0]).unwrap();
    let modulus_bytes = match modulus.kind() {
        jsonwebtoken::DecodingKeyKind::RsaModulusExponent { n, .. } => n.clone(),
        _ => unreachable!(),
    };
    let modulus_as_secret = EncodingKey::from_secret(&modulus_bytes).unwrap();
    vec![
        ("expired an hour ago", with(&|c| c["exp"] = json!(now() - 3600)), "has expired"),
        ("not valid for another hour (nbf)", with(&|c| c["nbf"] = json!(now() + 3600)), "not valid yet"),
        ("another audience", with(&|c| c["aud"] = json!("someone-else")), "aud does not include"),
        ("an audience list without ours", with(&|c| c["aud"] = json!(["a", "b"])), "aud does not include"),
        ("another issuer", with(&|c| c["iss"] = json!("https://evil.example/")), "iss is not"),
        ("no exp", with(&|c| drop(c.as_object_mut().unwrap().remove("exp"))), "lacks exp, iss or aud"),
        ("no aud", with(&|c| drop(c.as_object_mut().unwrap().remove("aud"))), "lacks exp, iss or aud"),
        ("no iss", with(&|c| drop(c.as_object_mut().unwrap().remove("iss"))), "lacks exp, iss or aud"),
        ("exp as a string", with(&|c| c["exp"] = json!("tomorrow")), "lacks exp, iss or aud"),
        ("no sub", with(&|c| drop(c.as_object_mut().unwrap().remove("sub"))), "subject claim"),
        ("an empty sub", with(&|c| c["sub"] = json!("")), "subject claim"),
        ("a sub of 200 characters", with(&|c| c["sub"] = json!("s".repeat(200))), "subject claim"),
        ("a sub with a space", with(&|c| c["sub"] = json!("mallory admin")), "subject claim"),
        ("a numeric sub", with(&|c| c["sub"] = json!(42)), "subject claim"),
        (
            "signed by a key outside the set",
            token(&keys.outsider, Algorithm::EdDSA, Some("ed-1"), &claims("m")),
            "does not verify",
        ),
        ("claims changed after signing", format!("{}.{admin_payload}.{}", parts[0], parts[2]), "does not verify"),
        ("no signature", format!("{}.{}.", parts[0], parts[1]), "does not verify"),
        (
            "alg none",
            format!("{}.{payload}.", header(json!({"alg": "none", "kid": "ed-1"}))),
            "not a JWT keel can read",
        ),
        ("alg None", format!("{}.{payload}.", header(json!({"alg": "None", "typ": "JWT"}))), "not a JWT keel can read"),
        (
            "HS256 with the RSA public key (n) as the secret",
            token(&public_as_secret, Algorithm::HS256, Some("rsa-1"), &claims("m")),
            "not one its key allows",
        ),
        (
            "HS256 with the RSA modulus bytes as the secret",
            token(&modulus_as_secret, Algorithm::HS256, Some("rsa-1"), &claims("m")),
            "not one its key allows",
        ),
        (
            "RS256 naming the EC key",
            token(&keys.rsa, Algorithm::RS256, Some("ec-1"), &claims("m")),
            "not one its key allows",
        ),
        (
            "EdDSA naming the HMAC key",
            token(&keys.ed, Algorithm::EdDSA, Some("hs-1"), &claims("m")),
            "not one its key allows",
        ),
        (
            "a kid nobody issued",
            token(&keys.ed, Algorithm::EdDSA, Some("forged"), &claims("m")),
            "no key of the key set",
        ),
        (
            "no kid, and two keys could verify it",
            token(&keys.ed, Algorithm::EdDSA, None, &claims("m")),
            "no key of the key set",
        ),
        ("two parts", format!("{}.{}", parts[0], parts[1]), "not a JWT keel can read"),
        ("four parts", format!("{good}.{}", parts[2]), "not a JWT keel can read"),
        ("not base64", "a!b.c@d.e#f".to_owned(), "not a JWT keel can read"),
        (
            "the header is not JSON",
            format!("{}.{}.{}", b64(b"not json"), parts[1], parts[2]),
            "not a JWT keel can read",
        ),
        (
            "a JWE (five parts)",
            format!("{}.a.b.c.d", header(json!({"alg": "RSA-OAEP", "enc": "A256GCM"}))),
            "not a JWT keel can read",
        ),
        ("an API key instead of a token", "0123456789abcdef0123456789abcdef".to_owned(), "not a JWT keel can read"),
    ]
}

thread_local! {
    static THREAD_LOG: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Where keel's log lines go in this test binary: a buffer for each thread. A test on tokio's
/// current-thread runtime (the default) runs all its tasks on its own thread, so it reads its own
/// lines only, whatever the other tests log meanwhile. (A subscriber set for one thread alone
/// would not do: tracing caches, for each log statement, whether any subscriber wants it.)
struct ThreadLog;

impl ThreadLog {
    fn start() {
        static INSTALLED: std::sync::Once = std::sync::Once::new();
        INSTALLED.call_once(|| {
            let subscriber = tracing_subscriber::fmt().with_writer(|| ThreadLog).with_ansi(false).finish();
            tracing::subscriber::set_global_default(subscriber).expect("no other subscriber in this binary");
        });
    }

    fn take() -> String {
        THREAD_LOG.with(|log| String::from_utf8(std::mem::take(&mut *log.borrow_mut())).unwrap())
    }
}

impl std::io::Write for ThreadLog {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        THREAD_LOG.with(|log| log.borrow_mut().extend_from_slice(bytes));
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn hostile_tokens_are_refused_as_invalid_tokens_and_the_reason_is_logged() {
    ThreadLog::start();
    let (keys, _server, app) = provider_and_keel(&[]).await;
    let cases = hostile_tokens(&keys);
    assert!(cases.len() >= 20);
    let mut failures = Vec::new();
    for (name, token, reason) in &cases {
        ThreadLog::take();
        let answer = call(&app, "GET", "/v1/operations", token, None).await;
        let logged = ThreadLog::take();
        if !logged.contains(reason) || logged.contains(token.as_str()) {
            failures.push(format!("{name}: expected the reason {reason:?} logged, and not the token: {logged}"));
        }
        if answer.status != 401 || answer.json()["type"] != "unauthenticated" {
            failures.push(format!("{name}: expected 401 unauthenticated, got {} {}", answer.status, answer.text()));
        } else if answer.header("www-authenticate") != Some("Bearer realm=\"keel\", error=\"invalid_token\"") {
            failures.push(format!("{name}: WWW-Authenticate is {:?}", answer.header("www-authenticate")));
        } else if answer.text().contains(token.as_str()) {
            failures.push(format!("{name}: the token is echoed"));
        }
    }
    // A token sent as X-API-Key is no credential in this mode: 401 without an error code.
    let good = token(&keys.ed, Algorithm::EdDSA, Some("ed-1"), &claims("m"));
    let request = Request::get("/v1/operations").header("x-api-key", &good).body(Body::empty()).unwrap();
    let answer = send(&app, request).await;
    if answer.status != 401 || answer.header("www-authenticate") != Some("Bearer realm=\"keel\"") {
        failures.push(format!("a token as X-API-Key: got {} {:?}", answer.status, answer.header("www-authenticate")));
    }
    assert!(failures.is_empty(), "{} cases failed:\n{}", failures.len(), failures.join("\n"));
    assert_eq!(call(&app, "GET", "/v1/operations", &good, None).await.status, 200, "the good token still works");
}

#[tokio::test]
async fn exp_and_nbf_have_a_small_leeway() {
    let (keys, _server, app) = provider_and_keel(&[("APP_AUTH__JWT__LEEWAY_MS", "30000")]).await;
    let sign = |claims: &Value| token(&keys.ed, Algorithm::EdDSA, Some("ed-1"), claims);
    let mut just_expired = claims("m");
    just_expired["exp"] = json!(now() - 5);
    assert_eq!(call(&app, "GET", "/v1/operations", &sign(&just_expired), None).await.status, 200);
    let mut almost_valid = claims("m");
    almost_valid["nbf"] = json!(now() + 5);
    assert_eq!(call(&app, "GET", "/v1/operations", &sign(&almost_valid), None).await.status, 200);
    let mut long_expired = claims("m");
    long_expired["exp"] = json!(now() - 120);
    call(&app, "GET", "/v1/operations", &sign(&long_expired), None).await.problem(401, "unauthenticated");
}

#[tokio::test]
async fn an_unknown_kid_fetches_the_set_again_once_then_is_refused() {
    let (keys, server, app) = provider_and_keel(&[("APP_AUTH__JWT__JWKS_REFRESH_MIN_INTERVAL_MS", "600000")]).await;
    assert_eq!(server.fetches(), 1, "fetched at start");

    // The provider rotates: a new key, and tokens naming it. The first one fetches the set again.
    let (rotated, rotated_jwk) = ed25519("ed-2");
    let mut set = keys.jwks.clone();
    set.push(rotated_jwk);
    server.serve(serde_json::to_value(JwkSet { keys: set.clone() }).unwrap());
    let new_token = token(&rotated, Algorithm::EdDSA, Some("ed-2"), &claims("m"));
    assert_eq!(call(&app, "GET", "/v1/operations", &new_token, None).await.status, 200);
    assert_eq!(server.fetches(), 2);

    // Forged kids, many of them, within the interval: refused without a fetch.
    for n in 0..50 {
        let forged = token(&keys.outsider, Algorithm::EdDSA, Some(&format!("forged-{n}")), &claims("m"));
        call(&app, "GET", "/v1/operations", &forged, None).await.problem(401, "unauthenticated");
    }
    // Even a real new key waits for the interval.
    let (later, later_jwk) = ed25519("ed-3");
    set.push(later_jwk);
    server.serve(serde_json::to_value(JwkSet { keys: set }).unwrap());
    let later_token = token(&later, Algorithm::EdDSA, Some("ed-3"), &claims("m"));
    call(&app, "GET", "/v1/operations", &later_token, None).await.problem(401, "unauthenticated");
    assert_eq!(server.fetches(), 2, "no fetch within jwks_refresh_min_interval_ms");
}

#[tokio::test]
async fn a_forged_kid_right_after_start_costs_one_fetch_at_most() {
    let (keys, server, app) = provider_and_keel(&[]).await;
    let forged = token(&keys.outsider, Algorithm::EdDSA, Some("forged"), &claims("m"));
    for _ in 0..20 {
        call(&app, "GET", "/v1/operations", &forged, None).await.problem(401, "unauthenticated");
    }
    assert_eq!(server.fetches(), 2, "once at start, once for the first unknown kid");
}

#[tokio::test]
async fn a_withdrawn_key_stops_working_once_the_set_is_old() {
    let keys = Keys::new();
    let server = KeyServer::start(keys.set()).await;
    let app = protected(
        &server.url,
        &[("APP_AUTH__JWT__JWKS_MAX_AGE_MS", "0"), ("APP_AUTH__JWT__JWKS_REFRESH_MIN_INTERVAL_MS", "0")],
    )
    .await;
    let ed_token = token(&keys.ed, Algorithm::EdDSA, Some("ed-1"), &claims("m"));
    assert_eq!(call(&app, "GET", "/v1/operations", &ed_token, None).await.status, 200);
    let without_ed: Vec<Jwk> =
        keys.jwks.iter().filter(|jwk| jwk.common.key_id.as_deref() != Some("ed-1")).cloned().collect();
    server.serve(serde_json::to_value(JwkSet { keys: without_ed }).unwrap());
    // The set is reloaded in the background, so a request or two may still pass: wait, with a
    // generous deadline, for the refusal.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let answer = call(&app, "GET", "/v1/operations", &ed_token, None).await;
        if answer.status == 401 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the withdrawn key is still accepted");
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn keys_can_come_from_a_jwks_file() {
    let keys = Keys::new();
    let path = std::env::temp_dir().join(format!("keel-jwks-{}.json", std::process::id()));
    std::fs::write(&path, keys.set().to_string()).unwrap();
    let (app, state) = router(jwt_settings_from(("APP_AUTH__JWT__JWKS_FILE", path.to_str().unwrap()), &[]));
    let loaded = state.auth.as_ref().unwrap().prepare().await;
    std::fs::remove_file(&path).unwrap();
    assert_eq!(loaded.unwrap(), Some(5));
    let rs = token(&keys.rsa, Algorithm::RS256, Some("rsa-1"), &claims("from-file"));
    assert_eq!(whoami(&app, &rs).await.json()["result"], json!({ "owner": "from-file" }));
}

#[tokio::test]
async fn keel_on_a_real_socket_with_jwts_and_refuses_to_start_without_its_keys() {
    let keys = Keys::new();
    let server = KeyServer::start(keys.set()).await;
    let app = spawn_app(jwt_settings(&server.url, &[("APP_SERVER__PORT", "0")])).await;
    let alice = token(&keys.ec, Algorithm::ES256, Some("ec-1"), &claims("alice"));
    let bob = token(&keys.rsa, Algorithm::RS256, Some("rsa-1"), &claims("bob"));
    let submitted = app
        .client
        .post(app.url("/v1/operations"))
        .bearer_auth(&alice)
        .json(&json!({ "kind": "sleep", "input": { "ms": 1 } }))
        .send()
        .await
        .unwrap();
    assert_eq!(submitted.status(), 202);
    let location = submitted.headers()["operation-location"].to_str().unwrap().to_owned();
    assert_eq!(app.client.get(&location).bearer_auth(&alice).send().await.unwrap().status(), 200);
    assert_eq!(app.client.get(&location).bearer_auth(&bob).send().await.unwrap().status(), 404);
    let anonymous = app.client.get(&location).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let metrics = app.client.get(app.url("/metrics")).bearer_auth(METRICS).send().await.unwrap();
    assert_eq!(metrics.status(), 200, "the metrics token still works in JWT mode");
    app.stop().await.unwrap();

    // A key set that cannot be fetched, or is not one, stops the start.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed_url = format!("http://{}/jwks.json", closed.local_addr().unwrap());
    drop(closed);
    let settings = jwt_settings(&closed_url, &[("APP_SERVER__PORT", "0")]);
    let error = keel::startup::application(settings).await.err().expect("no start without keys").to_string();
    assert!(error.contains("JWT key set") && error.contains("connect"), "{error}");
    // https to a server that speaks plain HTTP: the TLS handshake fails, and the error carries
    // rustls's own words for it.
    let https_url = server.url.replace("http://", "https://");
    let settings = jwt_settings(&https_url, &[("APP_SERVER__PORT", "0")]);
    let error = keel::startup::application(settings).await.err().expect("no start without TLS").to_string();
    assert!(error.contains("InvalidContentType"), "{error}");
    server.serve(json!({ "keys": [{ "kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB" }] }));
    let settings = jwt_settings(&server.url, &[("APP_SERVER__PORT", "0")]);
    let error = keel::startup::application(settings).await.err().expect("no start without usable keys").to_string();
    assert!(error.contains("no key"), "{error}");
}

#[test]
fn jwt_settings_are_checked_at_load() {
    let load = |vars: &[(&str, &str)]| {
        let mut all = vec![("APP_ENV", "test"), ("APP_AUTH__MODE", "jwt"), ("APP_METRICS__ENABLED", "false")];
        all.extend_from_slice(vars);
        keel::config::load_from(all.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())))
            .err()
            .map(|error| error.to_string())
            .unwrap_or_default()
    };
    assert!(load(&[]).contains("auth.jwt"), "{}", load(&[]));
    let base = [("APP_AUTH__JWT__ISSUER", ISSUER), ("APP_AUTH__JWT__AUDIENCE", AUDIENCE)];
    let with = |extra: &[(&'static str, &'static str)]| load(&[&base[..], extra].concat());
    assert!(with(&[]).contains("jwks_file and jwks_url"), "{}", with(&[]));
    let both = with(&[("APP_AUTH__JWT__JWKS_URL", "https://id.example/jwks"), ("APP_AUTH__JWT__JWKS_FILE", "/k.json")]);
    assert!(both.contains("exactly one"), "{both}");
    let not_a_url = with(&[("APP_AUTH__JWT__JWKS_URL", "ftp://id.example/jwks")]);
    assert!(not_a_url.contains("auth.jwt.jwks_url"), "{not_a_url}");
    let no_audience = load(&[
        ("APP_AUTH__JWT__ISSUER", ISSUER),
        ("APP_AUTH__JWT__AUDIENCE", ""),
        ("APP_AUTH__JWT__JWKS_URL", "https://a/b"),
    ]);
    assert!(no_audience.contains("issuer and audience"), "{no_audience}");
    assert_eq!(with(&[("APP_AUTH__JWT__JWKS_URL", "https://id.example/jwks")]), "", "a valid [auth.jwt]");
}

#[tokio::test]
async fn the_document_offers_a_bearer_jwt_only() {
    let (_keys, _server, app) = provider_and_keel(&[]).await;
    let doc = send(&app, Request::get("/openapi.json").body(Body::empty()).unwrap()).await.json();
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["bearerFormat"], "JWT", "{schemes}");
    assert!(schemes["api_key"].is_null(), "{schemes}");
    assert_eq!(doc["paths"]["/v1/operations"]["get"]["security"], json!([{ "bearer": ["operations:read"] }]));
}

/// The worked example of docs/reference/access-control.md: `scripts/dev_token.py` (openssl, not ring, signs) makes a key, its
/// JWKS and a token, and keel configured as that page says accepts the token.
#[tokio::test]
async fn the_readmes_local_identity_provider_works() {
    let folder = std::env::temp_dir().join(format!("keel-dev-idp-{}", std::process::id()));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/dev_token.py");
    let run = |args: &[&str]| {
        let output = std::process::Command::new("python3").arg(script).args(args).output().expect("python3 runs");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    };
    let dir = folder.to_str().unwrap();
    run(&["init", dir]);
    let alice = run(&["token", dir, "--sub", "alice"]);
    let reader = run(&["token", dir, "--sub", "bob", "--scope", "operations:read"]);
    let jwks = folder.join("jwks.json");
    let settings = settings_with(&[
        ("APP_AUTH__MODE", "jwt"),
        ("APP_METRICS__ENABLED", "false"),
        ("APP_AUTH__JWT__ISSUER", "https://dev-idp.local/"),
        ("APP_AUTH__JWT__AUDIENCE", "keel"),
        ("APP_AUTH__JWT__JWKS_FILE", jwks.to_str().unwrap()),
    ]);
    let (app, state) = router(settings);
    let loaded = state.auth.as_ref().unwrap().prepare().await;
    std::fs::remove_dir_all(&folder).unwrap();
    assert_eq!(loaded.unwrap(), Some(1));
    assert_eq!(whoami(&app, &alice).await.json()["result"], json!({ "owner": "alice" }));
    assert_eq!(call(&app, "GET", "/v1/operations", &reader, None).await.status, 200);
    call(&app, "POST", "/v1/operations", &reader, Some(json!({ "kind": "whoami" }))).await.problem(403, "forbidden");
}
