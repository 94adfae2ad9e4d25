//! The OpenAPI 3.1 document: generated from the handlers' `#[utoipa::path]` annotations as they
//! are registered (`routes!` in `http/mod.rs`), so the document and the router cannot drift apart.
//! This adds what no single handler knows: the title, the tags and the shared error schema,
//! and, at start-up, the facts that only exist at run time: the registered kinds and the
//! configured limits, so that clients (and fuzzers) see the contract this instance enforces.

use serde_json::{Value, json};
use utoipa::OpenApi;

use crate::config::Settings;
use crate::http::error::Problem;
use crate::http::middleware::REQUEST_ID_HEADER;
use crate::operations::Registry;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "keel",
        description = "An axum service with managed long-running operations. Every error is `application/problem+json` (RFC 9457).",
    ),
    tags(
        (name = "operations", description = "Long-running operations: submit, poll, wait, stream, cancel (Google AIP-151)"),
        (name = "service", description = "The seed's handler, health probes and metrics"),
        (name = "examples", description = "Request-scoped async patterns; delete `src/http/examples/` to drop them"),
    ),
    components(schemas(Problem)),
)]
pub struct ApiDoc;

/// The document as served: `api` with the registered kinds and configured limits filled in.
pub fn document(api: utoipa::openapi::OpenApi, settings: &Settings, registry: &Registry) -> Value {
    let mut doc = serde_json::to_value(api).unwrap_or_else(|_| json!({}));
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
    doc
}

/// The submission as one schema per registered kind, `oneOf` them discriminated by `kind`: each
/// with its kind's `input` schema (from the kind's Rust type), so that a client, or a client
/// generated from the document, sees what `sleep` or `fanout` takes. The operation's `result` is
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
    schemas["SubmitRequest"] = json!({
        "description": base["description"],
        "oneOf": variants,
        "discriminator": { "propertyName": "kind", "mapping": mapping },
        "example": base["example"],
    });
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
