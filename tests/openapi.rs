//! The served OpenAPI document agrees with the routes, and the docs page works offline.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use axum::body::Body;
use axum::http::{Method, Request};
use common::{get, router, send, settings};
use serde_json::Value;

/// The public surface, as the README documents it.
const ROUTES: &[(&str, &str)] = &[
    ("get", "/"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("post", "/v1/operations"),
    ("get", "/v1/operations"),
    ("get", "/v1/operations/{id}"),
    ("delete", "/v1/operations/{id}"),
    ("get", "/v1/operations/{id}/wait"),
    ("post", "/v1/operations/{id}/cancel"),
    ("get", "/v1/operations/{id}/events"),
    ("get", "/examples/fanout"),
    ("get", "/examples/blocking"),
    ("get", "/examples/sleep"),
];

async fn document() -> Value {
    let (app, _) = router(settings());
    let answer = get(&app, "/openapi.json").await;
    assert_eq!(answer.status, 200);
    answer.json()
}

fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| item.as_object().unwrap().keys().map(move |method| (method.clone(), path.clone())))
        .collect()
}

#[tokio::test]
async fn the_document_is_openapi_3_1_with_every_public_route() {
    let doc = document().await;
    assert_eq!(doc["openapi"], "3.1.0");
    let expected: BTreeSet<(String, String)> =
        ROUTES.iter().map(|(method, path)| ((*method).to_owned(), (*path).to_owned())).collect();
    assert_eq!(operations(&doc), expected);
}

#[tokio::test]
async fn every_route_has_its_description() {
    let doc = document().await;
    for (method, path) in ROUTES {
        let route = &doc["paths"][path][method];
        let summary = route["summary"].as_str().unwrap_or_default();
        assert!(!summary.is_empty(), "{method} {path} has no summary: {route}");
    }
    let events = doc["paths"]["/v1/operations/{id}/events"]["get"]["summary"].as_str().unwrap();
    assert!(events.contains("Server-Sent Events"), "the handler's own doc comment: {events}");
    let event = doc["components"]["schemas"]["OperationEvent"]["description"].as_str().unwrap_or_default();
    assert!(event.starts_with("One Server-Sent Event"), "the event's schema keeps its own: {event}");
}

#[tokio::test]
async fn every_path_in_the_document_is_routed() {
    let doc = document().await;
    let (app, _) = router(settings());
    for (method, path) in operations(&doc) {
        let uri = path.replace("{id}", "0123456789abcdef0123456789abcdef");
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let request = Request::builder()
            .method(method.clone())
            .uri(&uri)
            .header("content-type", "application/json")
            .body(Body::from("{}"))
            .unwrap();
        let answer = send(&app, request).await;
        let unrouted =
            answer.status == 405 || (answer.status == 404 && answer.json()["detail"] == "no route matches this path");
        assert!(!unrouted, "{method} {uri} is in the document but not routed: {}", answer.text());
    }
}

#[test]
fn every_route_is_registered_with_its_documentation() {
    // `routes!` registers a handler together with its `#[utoipa::path]`; a plain `.route(...)`
    // would serve a path the document does not show.
    let mut offenders = Vec::new();
    visit(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/src")), &mut |file, text| {
        for (number, line) in text.lines().enumerate() {
            if [".route(", ".route_service(", ".nest_service("].iter().any(|call| line.contains(call)) {
                offenders.push(format!("{}:{}: {}", file.display(), number + 1, line.trim()));
            }
        }
    });
    assert!(offenders.is_empty(), "undocumented routes:\n{}", offenders.join("\n"));
}

fn visit(dir: &Path, check: &mut impl FnMut(&Path, &str)) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            visit(&path, check);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            check(&path, &std::fs::read_to_string(&path).unwrap());
        }
    }
}

#[tokio::test]
async fn errors_are_documented_as_problem_json_with_examples() {
    let doc = document().await;
    let submit = &doc["paths"]["/v1/operations"]["post"]["responses"];
    for status in ["400", "410", "413", "415", "422", "503"] {
        assert!(submit[status]["content"]["application/problem+json"].is_object(), "{status}: {}", submit[status]);
    }
    assert!(submit["202"]["headers"]["Operation-Location"].is_object());
    assert!(submit["409"].is_null(), "creation is atomic: a key is never answered with 409");
    let paths = &doc["paths"];
    assert!(paths["/v1/operations/{id}"]["get"]["responses"]["200"]["headers"]["Retry-After"].is_object());
    let cancel = &paths["/v1/operations/{id}/cancel"]["post"]["responses"];
    assert!(cancel["200"].is_object() && cancel["202"].is_null(), "cancel answers 200: {cancel}");
    let schemas = &doc["components"]["schemas"];
    assert!(schemas["Problem"]["example"].is_object());
    assert!(schemas["Operation"]["example"].is_object());
    assert!(schemas["SubmitRequest"]["example"].is_object());
}

#[tokio::test]
async fn the_docs_page_is_served_from_the_binary() {
    let (app, _) = router(settings());
    let page = get(&app, "/docs/").await;
    assert_eq!(page.status, 200);
    assert!(page.header("content-type").unwrap().starts_with("text/html"));
    let config = get(&app, "/docs/swagger-initializer.js").await;
    assert_eq!(config.status, 200);
    assert!(config.text().contains("/openapi.json"), "the page loads our document");
    for asset in ["/docs/swagger-ui.css", "/docs/swagger-ui-bundle.js"] {
        let answer = get(&app, asset).await;
        assert_eq!(answer.status, 200, "{asset}");
        assert!(answer.body.len() > 1000, "{asset} is bundled, not fetched from a CDN");
    }
}
