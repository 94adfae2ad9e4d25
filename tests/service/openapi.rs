//! The served OpenAPI document agrees with the routes, and the docs page works offline.

use std::collections::BTreeSet;
use std::path::Path;

use crate::support::{get, router, send, settings};
use axum::body::Body;
use axum::http::{Method, Request};
use serde_json::Value;

/// The public surface, as docs/reference/http-api.md documents it.
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
];

async fn document() -> Value {
    let (app, _) = crate::support::keel_router(settings());
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
    // Every route the docs document; the routes you add join them (and the test below
    // checks that each path in the document is routed).
    let documented = operations(&doc);
    let missing: Vec<_> = expected.difference(&documented).collect();
    assert!(missing.is_empty(), "not in the document: {missing:?}");
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
    let (app, _) = crate::support::keel_router(settings());
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

#[tokio::test]
async fn the_submission_is_one_schema_per_registered_kind_with_its_input_and_result() {
    let (app, _) = router(settings());
    let doc = get(&app, "/openapi.json").await.json();
    let schemas = &doc["components"]["schemas"];
    let kinds = crate::support::testbed::registry().names();
    let variants = schemas["SubmitRequest"]["oneOf"].as_array().unwrap();
    assert_eq!(variants.len(), kinds.len(), "{}", schemas["SubmitRequest"]);
    assert_eq!(schemas["SubmitRequest"]["discriminator"]["propertyName"], "kind");
    for kind in kinds {
        let variant = &schemas[format!("Submit.{kind}").as_str()];
        assert_eq!(variant["properties"]["kind"]["enum"], serde_json::json!([kind]), "{variant}");
        assert_eq!(variant["additionalProperties"], false, "{variant}");
        let input = variant["properties"]["input"]["$ref"].as_str().unwrap().rsplit('/').next().unwrap();
        assert!(schemas[input].is_object(), "{kind}'s input schema {input} is in the document");
    }
    let results = schemas["Operation"]["properties"]["result"]["anyOf"].as_array().unwrap();
    assert_eq!(results.last(), Some(&serde_json::json!({ "type": "null" })), "no result until it succeeds");
}

#[tokio::test]
async fn with_no_kind_registered_the_document_admits_no_submission() {
    let (app, _) = crate::support::router_with(
        settings(),
        keel_operations::Registry::new(),
        keel::routes::routes(&Default::default()),
    );
    let doc = get(&app, "/openapi.json").await.json();
    assert_eq!(doc["components"]["schemas"]["SubmitRequest"]["not"], serde_json::json!({}), "`oneOf` may not be empty");
    let answer = crate::support::post_json(&app, "/v1/operations", serde_json::json!({ "kind": "sleep" })).await;
    answer.problem(422, "validation-failed");
}

/// A kind a user adds, with nothing but `#[derive(ToSchema)]` on its types.
struct Resize;

#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ResizeInput {
    #[schema(minimum = 1, maximum = 4096)]
    width: u32,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
struct ResizeOutput {
    bytes: u64,
}

impl keel_operations::OperationKind for Resize {
    const NAME: &'static str = "resize";
    const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
    type Input = ResizeInput;
    type Output = ResizeOutput;

    async fn run(
        &self,
        _ctx: keel_operations::OperationContext,
        input: ResizeInput,
    ) -> Result<ResizeOutput, keel_operations::OperationError> {
        Ok(ResizeOutput { bytes: u64::from(input.width) })
    }
}

#[tokio::test]
async fn a_kind_a_user_registers_appears_in_the_document_with_no_other_step() {
    let registry = keel_operations::Registry::new().register(Resize);
    let (app, _) = crate::support::router_with(settings(), registry, keel::routes::routes(&Default::default()));
    let doc = get(&app, "/openapi.json").await.json();
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["SubmitRequest"]["oneOf"],
        serde_json::json!([{ "$ref": "#/components/schemas/Submit.resize" }])
    );
    assert_eq!(schemas["ResizeInput"]["properties"]["width"]["maximum"], 4096);
    assert!(schemas["ResizeOutput"]["properties"]["bytes"].is_object());
}

#[tokio::test]
async fn headers_and_parameters_state_the_constraints_the_server_enforces() {
    let doc = document().await;
    let submit = &doc["paths"]["/v1/operations"]["post"];
    let parameter = |operation: &Value, name: &str| {
        operation["parameters"].as_array().unwrap().iter().find(|p| p["name"] == name).cloned().unwrap()
    };
    let key = parameter(submit, "Idempotency-Key");
    assert_eq!(key["schema"]["pattern"], "^[!-~]{1,255}$");
    assert_eq!(key["schema"]["maxLength"], 255);
    let list = &doc["paths"]["/v1/operations"]["get"];
    assert_eq!(parameter(list, "page_token")["schema"]["pattern"], r"^(v1\.[0-9a-fA-F]{1,16})?$");
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            assert_eq!(parameter(operation, "x-request-id")["required"], false, "{method} {path}");
            for (status, response) in operation["responses"].as_object().unwrap() {
                let header = &response["headers"]["x-request-id"];
                assert_eq!(header["schema"]["pattern"], "^[A-Za-z0-9._:-]{1,64}$", "{method} {path} {status}");
            }
        }
    }
    // What the patterns say is what the server does.
    let (app, _) = router(settings());
    assert_eq!(get(&app, "/v1/operations?page_token=v1.FFfe").await.status, 200, "any token of the form");
    assert_eq!(get(&app, "/v1/operations?page_token=").await.status, 200, "empty: the first page");
    assert_eq!(get(&app, "/v1/operations?page_token=v2.1").await.status, 400);
}

#[tokio::test]
async fn the_submission_links_to_what_a_client_does_next() {
    let doc = document().await;
    let links = &doc["paths"]["/v1/operations"]["post"]["responses"]["202"]["links"];
    let ids: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .values()
                .map(move |op| (op["operationId"].as_str().unwrap().to_owned(), path.clone()))
        })
        .collect();
    for (link, target) in [
        ("GetOperation", "/v1/operations/{id}"),
        ("WaitForOperation", "/v1/operations/{id}/wait"),
        ("StreamOperation", "/v1/operations/{id}/events"),
        ("CancelOperation", "/v1/operations/{id}/cancel"),
        ("DeleteOperation", "/v1/operations/{id}"),
    ] {
        let operation_id = links[link]["operationId"].as_str().unwrap_or_else(|| panic!("{link}: {links}"));
        assert!(ids.contains(&(operation_id.to_owned(), target.to_owned())), "{link} -> {operation_id} at {target}");
        assert_eq!(links[link]["parameters"]["id"], "$response.body#/id");
    }
}

/// Generated clients type a field as optional unless the schema requires it: every field an
/// operation is always sent with is required, and every answer carries each of them.
#[tokio::test]
async fn the_operation_schema_requires_the_fields_every_answer_carries() {
    let (app, _) = router(settings());
    let doc = get(&app, "/openapi.json").await.json();
    let required: BTreeSet<&str> = doc["components"]["schemas"]["Operation"]["required"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let always = [
        "id",
        "kind",
        "owner",
        "status",
        "done",
        "input",
        "progress",
        "created_at",
        "deadline_at",
        "attempt",
        "max_attempts",
    ];
    assert_eq!(required, always.into_iter().collect::<BTreeSet<_>>());

    let submission = Request::post("/v1/operations")
        .header("content-type", "application/json")
        .body(Body::from(r#"{"kind":"sleep","input":{"ms":0}}"#))
        .unwrap();
    let answer = send(&app, submission).await;
    assert_eq!(answer.status, 202);
    let operation = answer.json();
    for field in always {
        assert!(!operation[field].is_null(), "{field} in {operation}");
    }
}
