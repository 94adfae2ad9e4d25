//! What keel knows of a request beyond its head, for the layers that label, authenticate and
//! limit it: the route template it matched, and the address of the client that sent it.

use axum::extract::MatchedPath;

/// The route label of a request that matched no route.
pub const UNMATCHED_ROUTE: &str = "<unmatched>";

/// The matched route's template, or [`UNMATCHED_ROUTE`]: axum puts it in the request's extensions
/// when routing, before any layer added with `Router::layer` runs.
pub fn route_of<B>(request: &axum::http::Request<B>) -> &str {
    request.extensions().get::<MatchedPath>().map_or(UNMATCHED_ROUTE, MatchedPath::as_str)
}

/// The address of the client that sent a request, as its TCP connection says (never a header a
/// client could forge).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub std::net::IpAddr);
