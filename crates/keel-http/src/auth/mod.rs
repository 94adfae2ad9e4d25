//! Who is calling, and what they may do.
//!
//! With `auth.mode = "none"` (development's default) every request comes from one caller,
//! `anonymous`, who may read and write; nothing here runs. Otherwise [`authenticate`] runs before
//! every route but the public ones ([`PublicRoutes`]) and makes the request's [`Caller`], which
//! handlers extract; operations handlers then ask for the scope they need
//! ([`Caller::require`]). Who the caller is comes from
//! - `"api_key"`: the key in `Authorization: Bearer <key>` or `X-API-Key: <key>`, matched against
//!   configured digests in constant time (`api_key.rs`);
//! - `"jwt"`: the token in `Authorization: Bearer <token>`, checked against the identity
//!   provider's keys (`jwt.rs`, `jwks.rs`; jsonwebtoken with RustCrypto's algorithms checks signatures).
//!
//! **Failures say no more than RFC 6750 allows**: `401` with `WWW-Authenticate: Bearer`, with
//! `error="invalid_token"` when a credential was sent but is not valid (no error code when none
//! was sent, as §3.1 asks), `400` with `error="invalid_request"` for two credentials at once, and
//! `403` with `error="insufficient_scope"`. Why a credential failed goes to the log, with the
//! request id, never to the client.

mod api_key;
mod jwks;
mod jwt;

use std::sync::{Arc, LazyLock};

pub use api_key::{MIN_KEY_LEN, key_digest};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
pub use jwks::JwksError;

use crate::error::ApiError;
use crate::request::{UNMATCHED_ROUTE, route_of};
use keel_config::{AuthMode, AuthSettings, Scope, parse_sha256};

/// The platform's routes that anyone may call, by template: the probes, the docs page and the
/// OpenAPI document, and paths that match no route (they are 404 for everyone). `/metrics` has a
/// rule of its own (`auth.metrics_sha256`).
pub const PLATFORM_PUBLIC_ROUTES: &[&str] =
    &["/healthz", "/readyz", "/openapi.json", "/docs", "/docs/", "/docs/{*rest}", UNMATCHED_ROUTE];

/// `/metrics` on the main port: not public, and not a caller's route either (see
/// [`PublicRoutes::need_caller`]); it takes the metrics token.
pub const METRICS_ROUTE: &str = "/metrics";

/// The routes anyone may call: the platform's ([`PLATFORM_PUBLIC_ROUTES`]) and the service's
/// own that say so in their documentation, `#[utoipa::path(..., security(()))]` (no security
/// requirement), as keel's starter does for `GET /`. Every other route needs a caller. Built
/// once, with the router (`crate::app`), from the same document clients read, so the two cannot
/// disagree. A handful of short templates, scanned per request as the constant list before it
/// was: the request path gains no hashing.
#[derive(Debug, Clone)]
pub struct PublicRoutes(Arc<[Box<str>]>);

impl PublicRoutes {
    /// The platform's public routes and `declared`.
    pub fn with<'a>(declared: impl IntoIterator<Item = &'a str>) -> Self {
        Self(PLATFORM_PUBLIC_ROUTES.iter().copied().chain(declared).map(Box::from).collect())
    }

    pub fn contains(&self, route: &str) -> bool {
        self.0.iter().any(|public| &**public == route)
    }

    /// Whether requests to `route` (a template) need an authenticated caller, and so also count
    /// against the caller's rate limits: every route but the public ones and `/metrics`.
    pub fn need_caller(&self, route: &str) -> bool {
        route != METRICS_ROUTE && !self.contains(route)
    }
}

impl Default for PublicRoutes {
    fn default() -> Self {
        Self::with([])
    }
}

/// The `X-API-Key` header, the alternative to `Authorization: Bearer`.
pub const API_KEY_HEADER: header::HeaderName = header::HeaderName::from_static("x-api-key");

pub use keel_operations::model::ANONYMOUS;

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

/// How requests are authenticated: `auth`'s settings, made ready to check requests against.
pub struct Authenticator {
    method: Method,
    /// The SHA-256 of the metrics scraper's token.
    metrics: Option<[u8; 32]>,
}

enum Method {
    ApiKeys(api_key::ApiKeys),
    Jwt(jwt::TokenVerifier),
}

/// Why a request is refused, for the log; the client learns only the RFC 6750 error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    NoCredential,
    TwoCredentials,
    NotBearer,
    UnknownKey,
    MalformedToken,
    UnknownSigningKey,
    AlgorithmNotAllowed,
    BadSignature,
    Expired,
    NotYetValid,
    WrongIssuer,
    WrongAudience,
    MissingClaim,
    NoSubject,
}

impl Refusal {
    fn reason(self) -> &'static str {
        match self {
            Self::NoCredential => "no credential",
            Self::TwoCredentials => "two different credentials (Authorization and X-API-Key, or one of them twice)",
            Self::NotBearer => "Authorization is not a Bearer credential",
            Self::UnknownKey => "no configured key matches",
            Self::MalformedToken => "the token is not a JWT keel can read (malformed, or alg none)",
            Self::UnknownSigningKey => {
                "no key of the key set has the token's kid (or, without a kid, exactly one fits)"
            }
            Self::AlgorithmNotAllowed => "the token's alg is not one its key allows",
            Self::BadSignature => "the signature does not verify",
            Self::Expired => "the token has expired (exp)",
            Self::NotYetValid => "the token is not valid yet (nbf)",
            Self::WrongIssuer => "the token's iss is not the configured issuer",
            Self::WrongAudience => "the token's aud does not include the configured audience",
            Self::MissingClaim => "the token lacks exp, iss or aud, or one is malformed",
            Self::NoSubject => "the token's subject claim is missing or not 1 to 128 visible ASCII characters",
        }
    }
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::NoCredential => ApiError::Unauthenticated { invalid_token: false },
            Refusal::TwoCredentials => ApiError::InvalidCredentials,
            _ => ApiError::Unauthenticated { invalid_token: true },
        }
    }
}

impl Authenticator {
    /// `None` when auth is off. Settings are validated before this runs, so every digest parses.
    /// With JWTs, the key set is still to load: [`Authenticator::prepare`].
    pub fn from_settings(settings: &AuthSettings) -> Option<Arc<Self>> {
        let method = match (settings.mode, &settings.jwt) {
            (AuthMode::None, _) => return None,
            (AuthMode::Jwt, Some(jwt)) => Method::Jwt(jwt::TokenVerifier::new(jwt)),
            _ => Method::ApiKeys(api_key::ApiKeys::new(&settings.api_keys)),
        };
        let metrics = settings.metrics_sha256.as_deref().and_then(parse_sha256);
        Some(Arc::new(Self { method, metrics }))
    }

    /// What must happen before the first request: loading the JWT key set. The number of keys
    /// loaded, for the start-up log.
    pub async fn prepare(&self) -> Result<Option<usize>, JwksError> {
        match &self.method {
            Method::Jwt(verifier) => verifier.load_keys().await.map(Some),
            Method::ApiKeys(_) => Ok(None),
        }
    }

    async fn caller(&self, headers: &HeaderMap) -> Result<Caller, Refusal> {
        match &self.method {
            Method::ApiKeys(keys) => keys.caller(credential(headers, true)?),
            Method::Jwt(verifier) => verifier.caller(credential(headers, false)?).await,
        }
    }

    fn metrics_token_matches(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let digest = api_key::digest(credential(headers, true)?);
        match &self.metrics {
            Some(expected) if api_key::digests_match(expected, &digest) => Ok(()),
            _ => Err(Refusal::UnknownKey),
        }
    }
}

/// The one credential of a request: `Authorization: Bearer <key>`, or `X-API-Key: <key>` where
/// `api_key_header` allows it (API keys and the metrics token; JWTs come as bearer tokens only).
/// Sent in both, or twice, it must be the same key (clients such as schemathesis fill in every
/// scheme the document offers); two different ones are refused.
fn credential(headers: &HeaderMap, api_key_header: bool) -> Result<&[u8], Refusal> {
    let bearer = headers.get_all(header::AUTHORIZATION).iter().map(|value| bearer_token(value.as_bytes()));
    let api_key = headers.get_all(API_KEY_HEADER).iter().filter(|_| api_key_header).map(|value| Ok(value.as_bytes()));
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
pub async fn authenticate(
    State((auth, public)): State<(Arc<Authenticator>, PublicRoutes)>,
    mut request: Request,
    next: Next,
) -> Response {
    let route = route_of(&request);
    let checked = if public.need_caller(route) {
        auth.caller(request.headers()).await.map(Some)
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

    fn credential_of(headers: &HeaderMap) -> Result<&[u8], Refusal> {
        credential(headers, true)
    }

    #[test]
    fn a_token_is_taken_from_authorization_alone() {
        let both = headers(&[("authorization", "Bearer a"), ("x-api-key", "b")]);
        assert_eq!(credential(&both, false), Ok(&b"a"[..]));
        assert_eq!(credential(&headers(&[("x-api-key", "b")]), false), Err(Refusal::NoCredential));
    }

    #[test]
    fn one_credential_is_taken_from_either_header() {
        assert_eq!(credential_of(&headers(&[("authorization", "Bearer abc")])), Ok(&b"abc"[..]));
        assert_eq!(credential_of(&headers(&[("authorization", "bEaReR abc")])), Ok(&b"abc"[..]));
        assert_eq!(credential_of(&headers(&[("x-api-key", "abc")])), Ok(&b"abc"[..]));
        assert_eq!(credential_of(&headers(&[])), Err(Refusal::NoCredential));
        assert_eq!(credential_of(&headers(&[("authorization", "Basic YTpi")])), Err(Refusal::NotBearer));
        assert_eq!(credential_of(&headers(&[("authorization", "Bearer ")])), Err(Refusal::NotBearer));
        assert_eq!(credential_of(&headers(&[("authorization", "Bearer")])), Err(Refusal::NotBearer));
        let same = headers(&[("authorization", "Bearer a"), ("x-api-key", "a")]);
        assert_eq!(credential_of(&same), Ok(&b"a"[..]), "the same key in both");
        let both = headers(&[("authorization", "Bearer a"), ("x-api-key", "b")]);
        assert_eq!(credential_of(&both), Err(Refusal::TwoCredentials));
        let twice = headers(&[("x-api-key", "a"), ("x-api-key", "b")]);
        assert_eq!(credential_of(&twice), Err(Refusal::TwoCredentials));
        let not_bearer = headers(&[("x-api-key", "a"), ("authorization", "Basic a")]);
        assert_eq!(credential_of(&not_bearer), Err(Refusal::NotBearer));
    }

    #[test]
    fn scopes_are_a_set() {
        let caller = Caller::new("c", &[Scope::Read, Scope::Admin]);
        assert!(caller.has(Scope::Read) && caller.has(Scope::Admin) && !caller.has(Scope::Write));
        assert!(Caller::anonymous().has(Scope::Write) && !Caller::anonymous().has(Scope::Admin));
    }
}
