//! Which route template a request's path matches, known before the router sees the request.
//!
//! keel's middleware wraps the whole router rather than each route. axum's `Router::layer`
//! wraps every route's service in a boxed service of its own, and axum clones a route's box
//! for every request it serves: about a thousand instructions of a `GET /`, a twentieth of
//! keel's whole request (see the README's performance notes). Outside the router, axum's
//! `MatchedPath` is not known yet, so the middleware matches the path itself: against the same
//! templates, with matchit, the matcher axum routes with, so it finds the template axum will.
//!
//! `http::app` builds the table from the router's documented routes (a test fails on any
//! undocumented `.route`) and the docs page's own; a path that matches none is `<unmatched>`,
//! as it is for axum.

use std::collections::HashSet;
use std::sync::{Mutex, PoisonError};

/// The label of a path that matches no route.
pub const UNMATCHED: &str = "<unmatched>";

/// A value for each route template, found by path.
pub struct RouteTable<T> {
    matcher: matchit::Router<usize>,
    routes: Vec<T>,
    unmatched: T,
}

impl<T> RouteTable<T> {
    /// A table of `templates` (axum's syntax: `/v1/operations/{id}`, `/docs/{*rest}`), with
    /// `value` made once for each template and once for [`UNMATCHED`].
    pub fn new<I, P>(templates: I, mut value: impl FnMut(&'static str) -> T) -> Self
    where
        I: IntoIterator<Item = P>,
        P: AsRef<str>,
    {
        let mut matcher = matchit::Router::new();
        let mut routes = Vec::new();
        for template in templates {
            let template = intern(template.as_ref());
            // axum refused the router already if two templates conflict; a template given
            // twice is kept once.
            if matcher.insert(template, routes.len()).is_ok() {
                routes.push(value(template));
            }
        }
        Self { matcher, routes, unmatched: value(UNMATCHED) }
    }

    /// The value of the template `path` matches, or the unmatched one.
    pub fn find(&self, path: &str) -> &T {
        match self.matcher.at(path) {
            Ok(found) => &self.routes[*found.value],
            Err(_) => &self.unmatched,
        }
    }
}

/// `template` as a `&'static str`, so that a request can carry its route without counting
/// references to a shared string. Templates are a fixed set, so the interned strings stay few
/// however many applications a process builds (the tests build many).
fn intern(template: &str) -> &'static str {
    static INTERNED: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);
    let mut interned = INTERNED.lock().unwrap_or_else(PoisonError::into_inner);
    let interned = interned.get_or_insert_with(HashSet::new);
    match interned.get(template) {
        Some(known) => known,
        None => {
            let leaked: &'static str = Box::leak(template.into());
            interned.insert(leaked);
            leaked
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RouteTable<&'static str> {
        RouteTable::new(
            ["/", "/v1/operations", "/v1/operations/{id}", "/v1/operations/{id}/wait", "/docs/", "/docs/{*rest}"],
            |template| template,
        )
    }

    #[test]
    fn a_path_finds_its_template_as_axum_would() {
        let table = table();
        assert_eq!(*table.find("/"), "/");
        assert_eq!(*table.find("/v1/operations"), "/v1/operations");
        assert_eq!(*table.find("/v1/operations/abc123"), "/v1/operations/{id}");
        assert_eq!(*table.find("/v1/operations/abc123/wait"), "/v1/operations/{id}/wait");
        assert_eq!(*table.find("/docs/"), "/docs/", "a static segment wins over a catch-all");
        assert_eq!(*table.find("/docs/swagger-ui.css"), "/docs/{*rest}");
    }

    #[test]
    fn a_path_that_matches_nothing_is_unmatched() {
        let table = table();
        for path in ["/nope", "/v1/operations/abc/nope", "/v1/operations/", "", "/docs"] {
            assert_eq!(*table.find(path), UNMATCHED, "{path}");
        }
    }

    #[test]
    fn a_template_is_interned_once_however_often_it_is_built() {
        let first = RouteTable::new(["/interned/{x}"], |template| template);
        let second = RouteTable::new(["/interned/{x}".to_owned()], |template| template);
        assert!(std::ptr::eq(*first.find("/interned/1"), *second.find("/interned/2")));
    }
}
