//! The OpenAPI 3.1 document: generated from the handlers' `#[utoipa::path]` annotations as they
//! are registered (`routes!` in `http/mod.rs`), so the document and the router cannot drift apart.
//! This adds what no single handler knows: the title, the tags and the shared error schema,
//! and, at start-up, the facts that only exist at run time: the registered kinds and the
//! configured limits, so that clients (and fuzzers) see the contract this instance enforces.

use serde_json::{Value, json};
use utoipa::OpenApi;

use crate::config::Settings;
use crate::http::error::Problem;
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
    let submit = &mut doc["components"]["schemas"]["SubmitRequest"]["properties"];
    if submit.is_object() {
        submit["kind"]["enum"] = json!(registry.names());
        submit["timeout_ms"]["maximum"] = json!(settings.operations.max_timeout_ms);
    }
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
    doc
}
