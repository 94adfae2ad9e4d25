//! Every error the HTTP surface can answer with, and how each becomes RFC 9457 problem details.
//!
//! Handlers return [`ApiError`]; its `IntoResponse` attaches a [`Problem`] to the response, and the
//! `problem` middleware is the one place that writes it out (adding the request id). Client-facing
//! text lives in the problem; server-side detail (an internal error's source) is logged and never
//! sent.

use std::borrow::Cow;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use keel_config::Scope;
use keel_operations::OperationsError;
use keel_operations::store::StoreError;

/// The realm of keel's `WWW-Authenticate` challenges.
const REALM: &str = "keel";

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("unprocessable: {0}")]
    Unprocessable(String),
    #[error("unsupported media type: {0}")]
    UnsupportedMediaType(String),
    #[error("payload too large")]
    PayloadTooLarge,
    /// No valid credential (RFC 6750): `invalid_token` when one was sent.
    #[error("not authenticated")]
    Unauthenticated { invalid_token: bool },
    /// A malformed credential: two of them, say (RFC 6750's `invalid_request`).
    #[error("invalid credentials")]
    InvalidCredentials,
    /// Authenticated, without the scope this needs.
    #[error("scope {} missing", scope.name())]
    Forbidden { scope: Scope },
    #[error("not found: {0}")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("conflict: {0}")]
    Conflict(&'static str, String),
    /// The request repeats an `Idempotency-Key` with another body (422, as the IETF draft asks).
    #[error("idempotency key reused with another request")]
    IdempotencyKeyReused,
    /// `not_before` further ahead than keel schedules: a limit relative to now, which no schema
    /// can state, so it has a problem type of its own for clients (and fuzzers) to tell apart.
    #[error("scheduled too far ahead: {0}")]
    ScheduledTooFar(String),
    #[error("gone: {1}")]
    Gone(&'static str, String),
    /// Over the caller's rate limit (see `http::rate_limit`).
    #[error("rate limited")]
    RateLimited { retry_after_secs: u64 },
    #[error("request timed out")]
    Timeout,
    #[error("unavailable: {detail}")]
    Unavailable { kind: &'static str, detail: String, retry_after_secs: u64 },
    /// A failure on our side. The message is logged; the client sees only a generic problem.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn problem(&self) -> Problem {
        match self {
            Self::InvalidRequest(detail) => {
                Problem::new(StatusCode::BAD_REQUEST, "invalid-request", "The request is invalid").detail(detail)
            }
            Self::Unprocessable(detail) => {
                Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "validation-failed", "The request body does not fit")
                    .detail(detail)
            }
            Self::UnsupportedMediaType(detail) => {
                Problem::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type", "Unsupported media type")
                    .detail(detail)
            }
            Self::PayloadTooLarge => {
                Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large", "The request body is too large")
            }
            Self::Unauthenticated { .. } => {
                Problem::new(StatusCode::UNAUTHORIZED, "unauthenticated", "Not authenticated")
                    .detail("send a valid credential as `Authorization: Bearer <credential>` (an API key may also come as `X-API-Key: <key>`)")
            }
            Self::InvalidCredentials => Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid-credentials",
                "The credentials are malformed",
            )
            .detail(
                "send one key, as `Authorization: Bearer <key>` or `X-API-Key: <key>`; two different keys are refused",
            ),
            Self::Forbidden { scope } => Problem::new(StatusCode::FORBIDDEN, "forbidden", "Not allowed")
                .detail(format!("this needs the scope `{}`", scope.name())),
            Self::NotFound(detail) => Problem::new(StatusCode::NOT_FOUND, "not-found", "Not found").detail(detail),
            Self::MethodNotAllowed => {
                Problem::new(StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed", "Method not allowed")
            }
            Self::Conflict(kind, detail) => {
                Problem::new(StatusCode::CONFLICT, *kind, "Conflict with the current state").detail(detail)
            }
            Self::IdempotencyKeyReused => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                "The Idempotency-Key was used with another request",
            )
            .detail("this Idempotency-Key was used with a different request body; use a new key for a new request"),
            Self::ScheduledTooFar(detail) => {
                Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "schedule-too-far", "The start is too far ahead")
                    .detail(detail)
            }
            Self::Gone(kind, detail) => Problem::new(StatusCode::GONE, *kind, "Gone").detail(detail),
            Self::RateLimited { retry_after_secs } => {
                Problem::new(StatusCode::TOO_MANY_REQUESTS, "rate-limited", "Too many requests")
                    .detail("over this caller's rate limit; see `Retry-After` and `RateLimit`")
                    .retry_after(*retry_after_secs)
            }
            Self::Timeout => {
                Problem::new(StatusCode::SERVICE_UNAVAILABLE, "request-timeout", "The server did not answer in time")
                    .detail("the request took longer than the configured request timeout and was abandoned")
                    .retry_after(1)
            }
            Self::Unavailable { kind, detail, retry_after_secs } => {
                Problem::new(StatusCode::SERVICE_UNAVAILABLE, *kind, "Service unavailable")
                    .detail(detail)
                    .retry_after(*retry_after_secs)
            }
            Self::Internal(_) => Problem::internal(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Self::Internal(source) = &self {
            tracing::error!(error = %source, "internal error");
        }
        let challenge = match &self {
            Self::Unauthenticated { invalid_token: false } => Some(format!("Bearer realm=\"{REALM}\"")),
            Self::Unauthenticated { invalid_token: true } => {
                Some(format!("Bearer realm=\"{REALM}\", error=\"invalid_token\""))
            }
            Self::InvalidCredentials => Some(format!("Bearer realm=\"{REALM}\", error=\"invalid_request\"")),
            Self::Forbidden { scope } => {
                Some(format!("Bearer realm=\"{REALM}\", error=\"insufficient_scope\", scope=\"{}\"", scope.name()))
            }
            _ => None,
        };
        let mut response = self.problem().into_response();
        if let Some(challenge) = challenge.and_then(|c| axum::http::HeaderValue::from_str(&c).ok()) {
            response.headers_mut().insert(axum::http::header::WWW_AUTHENTICATE, challenge);
        }
        response
    }
}

fn rfc3339(at: time::OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339).unwrap_or_else(|_| at.to_string())
}

/// RFC 9457 problem details. `type` is a stable slug (a relative URI reference) that clients may
/// match on; docs/reference/http-api.md lists them all.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({
    "type": "not-found", "title": "Not found", "status": 404,
    "detail": "no operation has this id", "request_id": "6491736f-2757-4c53-b788-9dacac077d6d"
}))]
pub struct Problem {
    /// A stable slug naming the kind of problem, e.g. `not-found`.
    #[serde(rename = "type")]
    #[schema(value_type = String)]
    pub kind: Cow<'static, str>,
    #[schema(value_type = String)]
    pub title: Cow<'static, str>,
    #[schema(minimum = 400, maximum = 599)]
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The request's `x-request-id`, to find it in the server's logs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(skip)]
    pub retry_after_secs: Option<u64>,
}

impl Problem {
    pub fn new(status: StatusCode, kind: impl Into<Cow<'static, str>>, title: impl Into<Cow<'static, str>>) -> Self {
        Self {
            kind: kind.into(),
            title: title.into(),
            status: status.as_u16(),
            detail: None,
            request_id: None,
            retry_after_secs: None,
        }
    }

    pub fn internal() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "Internal server error")
            .detail("the server failed to handle this request; the request id identifies it in our logs")
    }

    /// A problem for an error response produced outside keel's own code (a layer, a framework
    /// default), so that every error still speaks problem+json.
    pub fn for_status(status: StatusCode) -> Self {
        match status {
            StatusCode::NOT_FOUND => ApiError::NotFound("no route matches this path".to_owned()).problem(),
            StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed.problem(),
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge.problem(),
            // keel's own 503s carry their problem; a bare one is tower-http's `TimeoutLayer`.
            StatusCode::SERVICE_UNAVAILABLE => ApiError::Timeout.problem(),
            s if s.is_server_error() => Self { status: s.as_u16(), ..Self::internal() },
            s => Self::new(s, "http-error", s.canonical_reason().unwrap_or("Error")),
        }
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after_secs = Some(secs);
        self
    }

    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for Problem {
    /// The body is written by the `problem` middleware, which knows the request id; this only
    /// sets the status and hands the problem over.
    fn into_response(self) -> Response {
        let mut response = self.status_code().into_response();
        response.extensions_mut().insert(self);
        response
    }
}

impl From<OperationsError> for ApiError {
    fn from(error: OperationsError) -> Self {
        use OperationsError as E;
        let unavailable =
            |kind, detail: &str| Self::Unavailable { kind, detail: detail.to_owned(), retry_after_secs: 1 };
        match error {
            E::UnknownKind(_) | E::InvalidInput(_) | E::TimeoutTooLong { .. } => Self::Unprocessable(error.to_string()),
            E::ScheduledTooFar => Self::ScheduledTooFar(error.to_string()),
            E::IdempotencyKeyMismatch => Self::IdempotencyKeyReused,
            E::IdempotencyKeySpent { operation_id, expires_at } => Self::Gone(
                "operation-gone",
                format!(
                    "this Idempotency-Key created operation {operation_id}, which has since been deleted; \
                     the key is free again from {}",
                    rfc3339(expires_at)
                ),
            ),
            E::QueueFull => unavailable("queue-full", "too many operations are waiting; retry later"),
            E::ShuttingDown => unavailable("shutting-down", "this instance is shutting down; retry against another"),
            E::NotFound => Self::NotFound("no operation has this id".to_owned()),
            E::AlreadyFinished => Self::Conflict("operation-finished", "the operation has finished already".to_owned()),
            E::NotFinished => Self::Conflict(
                "operation-not-finished",
                "the operation is still queued or running; cancel it first".to_owned(),
            ),
            E::Store(StoreError::Unavailable(source)) => {
                // The client learns only that a dependency is down; the driver's words are logged.
                tracing::warn!(error = %source, "operation store unavailable");
                unavailable("dependency-unavailable", "the operation store does not answer; retry shortly")
            }
            E::Store(source) => Self::Internal(source.to_string()),
        }
    }
}
