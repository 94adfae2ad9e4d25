//! Headers every response carries so that a browser treats keel's answers as what they are:
//!
//! - `X-Content-Type-Options: nosniff` everywhere: a JSON body is never run as a script or
//!   rendered as a page because it happens to look like one;
//! - `Cache-Control: no-store` on everything but the docs page: operations, their results and
//!   errors are per-caller, current state, which no shared cache or browser should keep;
//! - a `Content-Security-Policy` on the docs page, which lets Swagger UI's own files (served
//!   from the binary, see `http/mod.rs`) run and fetch `/openapi.json`, and nothing else: no
//!   other origin, no inline script, no framing.
//!
//! A handler that sets one of these itself keeps its own. The set is chosen once per route
//! when the route table is built, so a request pays for the insertions alone.

use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, X_CONTENT_TYPE_OPTIONS};
use axum::http::{HeaderMap, HeaderName, HeaderValue};

/// The headers of one route.
pub type Hardening = &'static [(HeaderName, HeaderValue)];

static API: [(HeaderName, HeaderValue); 2] = [
    (X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
    (CACHE_CONTROL, HeaderValue::from_static("no-store")),
];

/// Swagger UI needs inline styles (its components set `style` attributes) and `data:` images
/// (its icons); its scripts are files of the same origin.
static DOCS: [(HeaderName, HeaderValue); 2] = [
    (X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
    (
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
             font-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ),
    ),
];

/// The headers for requests labelled with `template`.
pub fn for_route(template: &str) -> Hardening {
    let docs = crate::http::DOCS_PATH;
    if template.strip_prefix(docs).is_some_and(|rest| rest.is_empty() || rest.starts_with('/')) { &DOCS } else { &API }
}

/// Adds `hardening` to `headers`, leaving any a handler set itself.
pub fn apply(hardening: Hardening, headers: &mut HeaderMap) {
    for (name, value) in hardening {
        headers.entry(name).or_insert_with(|| value.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_docs_page_gets_its_policy_and_everything_else_no_store() {
        for docs in ["/docs", "/docs/", "/docs/{*rest}"] {
            assert!(for_route(docs).iter().any(|(name, _)| name == CONTENT_SECURITY_POLICY), "{docs}");
        }
        for api in ["/", "/docsearch", "/v1/operations/{id}", "<unmatched>", "/openapi.json"] {
            assert!(for_route(api).iter().any(|(name, _)| name == CACHE_CONTROL), "{api}");
        }
    }

    #[test]
    fn a_handlers_own_header_is_kept() {
        let mut headers = HeaderMap::new();
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("max-age=60"));
        apply(for_route("/"), &mut headers);
        assert_eq!(headers[CACHE_CONTROL], "max-age=60");
        assert_eq!(headers[X_CONTENT_TYPE_OPTIONS], "nosniff");
    }
}
