//! The OpenAPI 3.1 document: generated from the handlers' `#[utoipa::path]` annotations as they
//! are registered (`routes!` in `http/mod.rs`), so the document and the router cannot drift apart.
//! This adds what no single handler knows: the title, the tags and the shared error schema.

use utoipa::OpenApi;

use crate::http::error::Problem;

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
