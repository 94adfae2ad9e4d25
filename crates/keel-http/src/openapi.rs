//! The OpenAPI 3.1 document: generated from the handlers' `#[utoipa::path]` annotations as they
//! are registered (`routes!` in `http/mod.rs`), so the document and the router cannot drift apart.
//! This adds what no single handler knows: the title, the tags and the shared error schema,
//! and, at start-up, the facts that only exist at run time: the registered kinds and the
//! configured limits, so that clients (and fuzzers) see the contract this instance enforces.

use serde_json::{Value, json};
use utoipa::OpenApi;

use crate::auth::{API_KEY_HEADER, METRICS_ROUTE, PublicRoutes};
use crate::error::{PROBLEM_JSON, Problem};
use crate::middleware::REQUEST_ID_HEADER;
use keel_config::{AuthMode, AuthSettings, Settings};
use keel_operations::Registry;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "keel",
        description = "An axum service with managed long-running operations. Every error is `application/problem+json` (RFC 9457).",
    ),
    tags(
        (name = "operations", description = "Long-running operations: submit, poll, wait, stream, cancel (Google AIP-151)"),
        (name = "service", description = "This service's own routes, the health probes and metrics"),
    ),
    components(schemas(Problem)),
)]
pub struct ApiDoc;

/// The document as served: `api` with the registered kinds and configured limits filled in;
/// and the routes it declares public (see [`PublicRoutes`]).
pub fn document(api: utoipa::openapi::OpenApi, settings: &Settings, registry: &Registry) -> (Value, PublicRoutes) {
    let mut doc = serde_json::to_value(api).unwrap_or_else(|_| json!({}));
    let public = declared_public(&doc);
    submissions_by_kind(&mut doc, settings, registry);
    // The key's expiry, published as the Idempotency-Key draft asks: this instance's own figure.
    if let Some(parameters) = doc["paths"]["/v1/operations"]["post"]["parameters"].as_array_mut() {
        for parameter in parameters.iter_mut().filter(|p| p["name"] == "Idempotency-Key") {
            let ttl_secs = settings.operations.idempotency_key_ttl_ms / 1000;
            let described = format!(
                "{} This instance keeps keys for {ttl_secs} seconds.",
                parameter["description"].as_str().unwrap_or_default()
            );
            parameter["description"] = json!(described);
        }
    }
    if let Some(parameters) = doc["paths"]["/v1/operations/{id}/wait"]["get"]["parameters"].as_array_mut() {
        for parameter in parameters.iter_mut().filter(|p| p["name"] == "timeout_ms") {
            parameter["schema"]["maximum"] = json!(settings.operations.max_wait_ms);
        }
    }
    add_request_ids(&mut doc);
    link_the_submission(&mut doc);
    state_the_security(&mut doc, &settings.auth, &public);
    state_the_rate_limits(&mut doc, settings, &public);
    (doc, public)
}

/// The routes whose every operation says `security: [{}]`: no requirement, anyone may call
/// (`#[utoipa::path(..., security(()))]`).
fn declared_public(doc: &Value) -> PublicRoutes {
    let Some(paths) = doc["paths"].as_object() else { return PublicRoutes::default() };
    let public = paths.iter().filter(|(_, item)| {
        let mut operations = item.as_object().into_iter().flat_map(|item| item.values()).peekable();
        operations.peek().is_some() && operations.all(|operation| operation["security"] == json!([{}]))
    });
    PublicRoutes::with(public.map(|(path, _)| path.as_str()))
}

/// With rate limits on: the `429` every limited route may answer, with its headers.
fn state_the_rate_limits(doc: &mut Value, settings: &Settings, public: &PublicRoutes) {
    if !settings.rate_limit.enabled {
        return;
    }
    let Some(paths) = doc["paths"].as_object_mut() else { return };
    for (path, item) in paths.iter_mut() {
        if !public.need_caller(path) {
            continue;
        }
        for operation in item.as_object_mut().into_iter().flat_map(|item| item.values_mut()) {
            let Some(responses) = operation.get_mut("responses").and_then(Value::as_object_mut) else { continue };
            let mut limited = problem_response(
                "Over this caller's rate limit: submissions and other requests have buckets of their own",
            );
            limited["headers"] = json!({
                "Retry-After": { "description": "Seconds before the bucket has a token again", "schema": { "type": "integer" } },
                "RateLimit-Policy": { "description": "The bucket: `\"name\";q=<burst>;w=<seconds to fill>` (IETF httpapi draft)", "schema": { "type": "string" } },
                "RateLimit": { "description": "`\"name\";r=<left>;t=<seconds>`", "schema": { "type": "string" } },
            });
            responses.insert("429".to_owned(), limited);
        }
    }
}

/// With auth on: how to send a credential (an API key two ways, which the docs page's Authorize
/// button both offers; a JWT as a bearer token), and on every route that is not public, the
/// requirement and its `401` (and `403` where a scope is named). Handlers name their scopes in
/// `#[utoipa::path(security(...))]`; a route of yours that names none needs a caller, as the
/// middleware does. With auth off, no route needs one.
fn state_the_security(doc: &mut Value, auth: &AuthSettings, public: &PublicRoutes) {
    let on = auth.mode != AuthMode::None;
    let jwt = auth.mode == AuthMode::Jwt;
    let Some(paths) = doc["paths"].as_object_mut() else { return };
    for (path, item) in paths.iter_mut() {
        let open = !on || public.contains(path);
        for operation in item.as_object_mut().into_iter().flat_map(|item| item.values_mut()) {
            let Some(operation) = operation.as_object_mut() else { continue };
            if open {
                operation.remove("security");
                continue;
            }
            let mut requirement = if path == METRICS_ROUTE {
                json!([{ BEARER: [] }])
            } else {
                operation.get("security").cloned().unwrap_or_else(|| json!([{ BEARER: [] }, { API_KEY: [] }]))
            };
            if jwt && let Some(alternatives) = requirement.as_array_mut() {
                alternatives.retain(|alternative| alternative.get(API_KEY).is_none());
            }
            let scoped = requirement.as_array().into_iter().flatten().any(|r| {
                r.as_object().is_some_and(|r| r.values().any(|scopes| scopes.as_array().is_some_and(|s| !s.is_empty())))
            });
            operation.insert("security".to_owned(), requirement);
            let responses = operation.entry("responses").or_insert_with(|| json!({}));
            responses["401"] = problem_response("No valid credential; see `WWW-Authenticate`");
            if scoped {
                responses["403"] = problem_response("The credential lacks the scope this needs");
            }
        }
    }
    if !on {
        return;
    }
    let schemes = if jwt {
        json!({
            BEARER: {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "JWT",
                "description": "A JWT from the identity provider, as `Authorization: Bearer <token>` (on `/metrics`: \
                                the metrics token).",
            },
        })
    } else {
        json!({
            BEARER: {
                "type": "http",
                "scheme": "bearer",
                "description": "An API key as `Authorization: Bearer <key>` (on `/metrics`: the metrics token).",
            },
            API_KEY: {
                "type": "apiKey",
                "in": "header",
                "name": API_KEY_HEADER.as_str(),
                "description": "The same API key, as `X-API-Key: <key>`.",
            },
        })
    };
    doc["components"]["securitySchemes"] = schemes;
}

/// The security schemes' names in the document.
const BEARER: &str = "bearer";
const API_KEY: &str = "api_key";

fn problem_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": { PROBLEM_JSON: { "schema": { "$ref": "#/components/schemas/Problem" } } },
    })
}

/// The submission as one schema per registered kind, `oneOf` them discriminated by `kind`: each
/// with its kind's `input` schema (from the kind's Rust type), so that a client, or a client
/// generated from the document, sees what each kind takes. The operation's `result` is
/// any of the kinds' result schemas. Registering a kind is all it takes to appear here.
fn submissions_by_kind(doc: &mut Value, settings: &Settings, registry: &Registry) {
    let schemas = &mut doc["components"]["schemas"];
    let base = schemas["SubmitRequest"].take();
    if !base.is_object() {
        return;
    }
    let reference = |name: &str| json!({ "$ref": format!("#/components/schemas/{name}") });
    let (mut variants, mut mapping, mut results) = (Vec::new(), serde_json::Map::new(), Vec::new());
    for kind in registry.schemas() {
        for (name, schema) in kind.components.iter().chain([&kind.input, &kind.output]) {
            schemas[name.as_str()] = serde_json::to_value(schema).unwrap_or_default();
        }
        let mut properties = base["properties"].clone();
        properties["kind"] = json!({ "type": "string", "enum": [kind.name] });
        properties["input"] = reference(&kind.input.0);
        properties["timeout_ms"]["maximum"] = json!(settings.operations.max_timeout_ms);
        let required = if kind.input_optional { json!(["kind"]) } else { json!(["kind", "input"]) };
        let variant = format!("Submit.{}", component_name(kind.name));
        schemas[variant.as_str()] = json!({
            "type": "object",
            "description": format!("A `{}` operation.", kind.name),
            "properties": properties,
            "required": required,
            "additionalProperties": false,
        });
        mapping.insert(kind.name.to_owned(), json!(format!("#/components/schemas/{variant}")));
        variants.push(reference(&variant));
        let result = reference(&kind.output.0);
        if !results.contains(&result) {
            results.push(result);
        }
    }
    schemas["SubmitRequest"] = if variants.is_empty() {
        // No kind registered: no submission is valid (and `oneOf` may not be empty).
        json!({ "description": base["description"], "not": {} })
    } else {
        json!({
            "description": base["description"],
            "oneOf": variants,
            "discriminator": { "propertyName": "kind", "mapping": mapping },
        })
    };
    results.push(json!({ "type": "null" }));
    let result = &mut schemas["Operation"]["properties"]["result"];
    if result.is_object() {
        *result = json!({
            "description": "Set when the operation succeeded: its kind's result.",
            "anyOf": results,
        });
    }
}

/// `kind` as a component name, which OpenAPI limits to `A-Z a-z 0-9 . - _`.
fn component_name(kind: &str) -> String {
    kind.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') { c } else { '_' }).collect()
}

/// The request id on every route, as the middleware handles it for all of them: an optional
/// `x-request-id` a client may send (kept if sane, replaced otherwise; never refused) and the
/// `x-request-id` every response carries.
fn add_request_ids(doc: &mut Value) {
    let Some(paths) = doc["paths"].as_object_mut() else { return };
    for operation in paths.values_mut().filter_map(Value::as_object_mut).flat_map(|path| path.values_mut()) {
        if !operation.is_object() {
            continue;
        }
        let parameter = json!({
            "name": REQUEST_ID_HEADER.as_str(),
            "in": "header",
            "required": false,
            "description": "Your id for this request, echoed on the response and in every log line of it. \
                Only `A-Z a-z 0-9 - _ . :` are kept, at most 64 of them; if none is left (or none \
                is sent), keel makes a UUID. Never a reason to refuse a request.",
            "schema": { "type": "string" },
        });
        match operation["parameters"].as_array_mut() {
            Some(parameters) => parameters.push(parameter),
            None => operation["parameters"] = json!([parameter]),
        }
        if let Some(responses) = operation["responses"].as_object_mut() {
            for response in responses.values_mut() {
                response["headers"][REQUEST_ID_HEADER.as_str()] = json!({
                    "description": "The request's id: the client's, cleaned, or one keel made",
                    "required": true,
                    "schema": { "type": "string", "pattern": "^[A-Za-z0-9._:-]{1,64}$" },
                });
            }
        }
    }
}

/// OpenAPI links from a submission's answer to what a client does next with the operation, so
/// that generated clients and stateful testers follow real ids.
fn link_the_submission(doc: &mut Value) {
    let follow = |operation_id: &str, description: &str| {
        json!({
            "operationId": operation_id,
            "parameters": { "id": "$response.body#/id" },
            "description": description,
        })
    };
    let links = json!({
        "GetOperation": follow("fetch", "Poll the operation"),
        "WaitForOperation": follow("wait", "Wait for the operation to finish"),
        "StreamOperation": follow("events", "Stream the operation's changes"),
        "CancelOperation": follow("cancel", "Cancel the operation"),
        "DeleteOperation": follow("remove", "Delete the finished operation"),
    });
    let submit = &mut doc["paths"]["/v1/operations"]["post"]["responses"];
    for status in ["200", "202"] {
        if submit[status].is_object() {
            submit[status]["links"] = links.clone();
        }
    }
}
