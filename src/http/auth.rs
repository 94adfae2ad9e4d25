//! Who is calling, and what they may do.
//!
//! With `auth.mode = "none"` (development's default) every request comes from one caller,
//! `anonymous`, who may read and write; nothing here runs. With `"api_key"`, [`authenticate`]
//! runs before every route but the public ones ([`PUBLIC_ROUTES`]): it takes the key from
//! `Authorization: Bearer <key>` or `X-API-Key: <key>`, and the matching configured key's id
//! becomes the request's [`Caller`], which handlers extract. Operations handlers then ask for
//! the scope they need ([`Caller::require`]).
//!
//! **Keys are stored as digests.** The configuration holds the SHA-256 of each key (`keel
//! hash-key`), never the key. A presented key is hashed and compared with every configured
//! digest in constant time (`subtle`), all of them, without stopping at a match: how long a
//! refusal takes says nothing about how close a guess was, or which key it was close to. A
//! digest of a random key is as good as the key for this, and unlike a password it needs no
//! slow hash: a key has 256 bits of entropy, so no dictionary finds it.
//!
//! **Failures say no more than RFC 6750 allows**: `401` with `WWW-Authenticate: Bearer`, with
//! `error="invalid_token"` when a credential was sent but is not valid (no error code when none
//! was sent, as §3.1 asks), `400` with `error="invalid_request"` for two credentials at once, and
//! `403` with `error="insufficient_scope"`. Why a credential failed goes to the log, with the
//! request id, never to the client.

use std::sync::{Arc, LazyLock};

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};

use crate::config::{AuthMode, AuthSettings, Scope, parse_sha256};
use crate::http::error::ApiError;
use crate::http::middleware::UNMATCHED_ROUTE;
use crate::http::state::AppState;
use crate::telemetry::request::RequestContext;

/// Routes anyone may call, by template: the seed's `GET /`, the probes, the docs page and the
/// OpenAPI document, and paths that match no route (they are 404 for everyone). Add a route of
/// yours here to make it public; every other route needs a caller. `/metrics` has a rule of its
/// own (`auth.metrics_sha256`).
pub const PUBLIC_ROUTES: &[&str] =
    &["/", "/healthz", "/readyz", "/openapi.json", "/docs", "/docs/", "/docs/{*rest}", UNMATCHED_ROUTE];

/// `/metrics` on the main port: not public, and not a caller's route either (see
/// [`needs_caller`]); it takes the metrics token.
pub const METRICS_ROUTE: &str = "/metrics";

/// Whether requests to `route` (a template) need an authenticated caller, and so also count
/// against the caller's rate limits: every route but the public ones and `/metrics`.
pub fn needs_caller(route: &str) -> bool {
    route != METRICS_ROUTE && !PUBLIC_ROUTES.contains(&route)
}

/// The template of the route the current request matched ([`UNMATCHED_ROUTE`] outside one).
pub(crate) fn current_route() -> &'static str {
    RequestContext::with_current(|context| context.map_or(UNMATCHED_ROUTE, |context| context.route))
}

/// The `X-API-Key` header, the alternative to `Authorization: Bearer`.
pub const API_KEY_HEADER: header::HeaderName = header::HeaderName::from_static("x-api-key");

pub use crate::operations::model::ANONYMOUS;

/// Who made a request. Extract it in a handler; with auth off it is `anonymous`, who may read
/// and write.
#[derive(Debug, Clone)]
pub struct Caller {
    id: Arc<str>,
    scopes: Scopes,
}

/// A set of [`Scope`]s, one bit each.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Scopes(u8);

impl Scopes {
    fn of(scopes: &[Scope]) -> Self {
        Self(scopes.iter().fold(0, |bits, scope| bits | Self::bit(*scope)))
    }

    const fn bit(scope: Scope) -> u8 {
        match scope {
            Scope::Read => 1,
            Scope::Write => 2,
            Scope::Admin => 4,
        }
    }

    fn contains(self, scope: Scope) -> bool {
        self.0 & Self::bit(scope) != 0
    }
}

impl Caller {
    pub fn new(id: impl Into<Arc<str>>, scopes: &[Scope]) -> Self {
        Self { id: id.into(), scopes: Scopes::of(scopes) }
    }

    /// The one caller of `auth.mode = "none"`: made once, then shared, so that extracting it
    /// allocates nothing.
    pub fn anonymous() -> Self {
        static ANONYMOUS_CALLER: LazyLock<Caller> =
            LazyLock::new(|| Caller::new(ANONYMOUS, &[Scope::Read, Scope::Write]));
        ANONYMOUS_CALLER.clone()
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The id, shared: what the caller's operations record as their owner.
    pub fn shared_id(&self) -> Arc<str> {
        Arc::clone(&self.id)
    }

    /// Whether this caller may see `owner`'s operations: its own, or every one with
    /// `operations:admin`.
    pub fn sees(&self, owner: &str) -> bool {
        *self.id == *owner || self.has(Scope::Admin)
    }

    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(scope)
    }

    /// `Ok` if the caller has `scope`; otherwise the 403 to answer with.
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.has(scope) {
            return Ok(());
        }
        tracing::info!(caller = %self.id, scope = scope.name(), "refused: scope missing");
        Err(ApiError::Forbidden { scope })
    }
}

/// The authenticated caller; with auth off, `anonymous`. On a public route with auth on, nobody
/// authenticated: `anonymous` without any scope, so that [`Caller::require`] refuses.
impl FromRequestParts<AppState> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(match parts.extensions.get::<Caller>() {
            Some(caller) => caller.clone(),
            None if state.settings.auth.mode == AuthMode::None => Caller::anonymous(),
            None => Caller::new(ANONYMOUS, &[]),
        })
    }
}

/// The configured keys, as digests, ready to check requests against.
pub struct Authenticator {
    keys: Vec<(Caller, [u8; 32])>,
    metrics: Option<[u8; 32]>,
}

/// Why a request is refused, for the log; the client learns only the RFC 6750 error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    NoCredential,
    TwoCredentials,
    NotBearer,
    UnknownKey,
}

impl Refusal {
    fn reason(self) -> &'static str {
        match self {
            Self::NoCredential => "no credential",
            Self::TwoCredentials => "two different credentials (Authorization and X-API-Key, or one of them twice)",
            Self::NotBearer => "Authorization is not a Bearer credential",
            Self::UnknownKey => "no configured key matches",
        }
    }
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::NoCredential => ApiError::Unauthenticated { invalid_token: false },
            Refusal::TwoCredentials => ApiError::InvalidCredentials,
            Refusal::NotBearer | Refusal::UnknownKey => ApiError::Unauthenticated { invalid_token: true },
        }
    }
}

/// The shortest key `keel hash-key` accepts. Keys should be random: `openssl rand -hex 32`.
pub const MIN_KEY_LEN: usize = 16;

/// The SHA-256 of `key`, in hex, as `auth.api_keys.sha256` holds it.
pub fn key_digest(key: &[u8]) -> String {
    hex::encode(Sha256::digest(key))
}

impl Authenticator {
    /// `None` when auth is off. Settings are validated before this runs, so every digest parses.
    pub fn from_settings(settings: &AuthSettings) -> Option<Arc<Self>> {
        if settings.mode == AuthMode::None {
            return None;
        }
        let keys = settings
            .api_keys
            .iter()
            .filter_map(|key| Some((Caller::new(key.id.as_str(), &key.scopes), parse_sha256(&key.sha256)?)))
            .collect();
        let metrics = settings.metrics_sha256.as_deref().and_then(parse_sha256);
        Some(Arc::new(Self { keys, metrics }))
    }

    fn caller(&self, headers: &HeaderMap) -> Result<Caller, Refusal> {
        let digest = presented_digest(headers)?;
        // Every key is compared, and the match is selected with subtle's constant-time
        // operations: no branch depends on a comparison until all are done. Index 0 is "none".
        let mut found = 0u32;
        for (index, (_, expected)) in (1u32..).zip(&self.keys) {
            found.conditional_assign(&index, expected.ct_eq(&digest));
        }
        let found = found.checked_sub(1).and_then(|index| self.keys.get(index as usize));
        found.map(|(caller, _)| caller.clone()).ok_or(Refusal::UnknownKey)
    }

    fn metrics_token_matches(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let digest = presented_digest(headers)?;
        match &self.metrics {
            Some(expected) if bool::from(expected.ct_eq(&digest)) => Ok(()),
            _ => Err(Refusal::UnknownKey),
        }
    }
}

/// The SHA-256 of the request's one credential, to compare with configured digests.
fn presented_digest(headers: &HeaderMap) -> Result<[u8; 32], Refusal> {
    Ok(Sha256::digest(credential(headers)?).into())
}

/// The one credential of a request: `Authorization: Bearer <key>` or `X-API-Key: <key>`. Sent
/// in both, or twice, it must be the same key (clients such as schemathesis fill in every scheme
/// the document offers); two different ones are refused.
fn credential(headers: &HeaderMap) -> Result<&[u8], Refusal> {
    let bearer = headers.get_all(header::AUTHORIZATION).iter().map(|value| bearer_token(value.as_bytes()));
    let api_key = headers.get_all(API_KEY_HEADER).iter().map(|value| Ok(value.as_bytes()));
    let mut sent = bearer.chain(api_key);
    let first = sent.next().ok_or(Refusal::NoCredential)??;
    for other in sent {
        if other? != first {
            return Err(Refusal::TwoCredentials);
        }
    }
    Ok(first)
}

/// RFC 6750 §2.1: `Bearer`, in any case, one space, then the token.
fn bearer_token(value: &[u8]) -> Result<&[u8], Refusal> {
    match value.split_at_checked(7) {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case(b"bearer ") && !token.is_empty() => Ok(token),
        _ => Err(Refusal::NotBearer),
    }
}

/// The middleware: public routes pass; `/metrics` needs its token; any other route needs a
/// caller, which it puts in the request for handlers to extract.
pub async fn authenticate(State(auth): State<Arc<Authenticator>>, mut request: Request, next: Next) -> Response {
    let route = current_route();
    let checked = if needs_caller(route) {
        auth.caller(request.headers()).map(Some)
    } else if route == METRICS_ROUTE {
        auth.metrics_token_matches(request.headers()).map(|()| None)
    } else {
        return next.run(request).await;
    };
    match checked {
        Ok(caller) => {
            if let Some(caller) = caller {
                request.extensions_mut().insert(caller);
            }
            next.run(request).await
        }
        Err(refusal) => {
            tracing::info!(reason = refusal.reason(), "refused: not authenticated");
            ApiError::from(refusal).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        headers
    }

    #[test]
    fn one_credential_is_taken_from_either_header() {
        assert_eq!(credential(&headers(&[("authorization", "Bearer abc")])), Ok(&b"abc"[..]));
        assert_eq!(credential(&headers(&[("authorization", "bEaReR abc")])), Ok(&b"abc"[..]));
        assert_eq!(credential(&headers(&[("x-api-key", "abc")])), Ok(&b"abc"[..]));
        assert_eq!(credential(&headers(&[])), Err(Refusal::NoCredential));
        assert_eq!(credential(&headers(&[("authorization", "Basic YTpi")])), Err(Refusal::NotBearer));
        assert_eq!(credential(&headers(&[("authorization", "Bearer ")])), Err(Refusal::NotBearer));
        assert_eq!(credential(&headers(&[("authorization", "Bearer")])), Err(Refusal::NotBearer));
        let same = headers(&[("authorization", "Bearer a"), ("x-api-key", "a")]);
        assert_eq!(credential(&same), Ok(&b"a"[..]), "the same key in both");
        let both = headers(&[("authorization", "Bearer a"), ("x-api-key", "b")]);
        assert_eq!(credential(&both), Err(Refusal::TwoCredentials));
        let twice = headers(&[("x-api-key", "a"), ("x-api-key", "b")]);
        assert_eq!(credential(&twice), Err(Refusal::TwoCredentials));
        let not_bearer = headers(&[("x-api-key", "a"), ("authorization", "Basic a")]);
        assert_eq!(credential(&not_bearer), Err(Refusal::NotBearer));
    }

    #[test]
    fn scopes_are_a_set() {
        let caller = Caller::new("c", &[Scope::Read, Scope::Admin]);
        assert!(caller.has(Scope::Read) && caller.has(Scope::Admin) && !caller.has(Scope::Write));
        assert!(Caller::anonymous().has(Scope::Write) && !Caller::anonymous().has(Scope::Admin));
    }
}
