//! `/v1/operations`: submit, poll, list, wait on, stream, cancel and delete long-running
//! operations. The shapes follow Google AIP-151 and the Azure REST guidelines (`202 Accepted` with
//! `Operation-Location`), in plain REST; docs/reference/http-api.md has curl examples for each route.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::watch;
use utoipa::{IntoParams, ToSchema};

use crate::auth::Caller;
use crate::error::{ApiError, Problem};
use crate::extract::{Json, Path, Query, saturating_count, whole_number};
use crate::location;
use crate::state::AppState;
use keel_config::Scope;
use keel_operations::store::{ListQuery, PageToken};
use keel_operations::{Executor, Operation, OperationsError, Status, Submission};

const OPERATION_LOCATION: HeaderName = HeaderName::from_static("operation-location");
const PREFERENCE_APPLIED: HeaderName = HeaderName::from_static("preference-applied");
const IDEMPOTENCY_KEY: &str = "idempotency-key";
const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;
const DEFAULT_PAGE_SIZE: usize = 50;
const MAX_PAGE_SIZE: usize = 1000;
/// How soon a client should poll again, in seconds.
const POLL_AFTER_SECS: u32 = 1;

/// A submission: which kind to run, with what input, within what time.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    /// The name of a registered kind.
    kind: String,
    /// The kind's input; each kind documents its fields.
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    input: Value,
    /// Deadline in milliseconds, counted from the start asked by `not_before` (or from
    /// submission); the kind's default when absent.
    #[schema(minimum = 1)]
    #[serde(default, deserialize_with = "whole_number")]
    timeout_ms: Option<u64>,
    /// RFC 3339: start no earlier than this (at most a year ahead). A time already past means now.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    not_before: Option<time::OffsetDateTime>,
}

fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

/// Submits an operation: 202 with `Operation-Location`, or 200 with the finished operation when
/// `Prefer: wait=N` was given and it finished in time.
#[utoipa::path(post, path = "/v1/operations", tag = "operations",
    security(("bearer" = ["operations:write"]), ("api_key" = ["operations:write"])),
    request_body = SubmitRequest,
    params(
        ("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = r"^[!-~]{1,255}$", description = "Retries with the same key and body return the same operation (1 to 255 visible ASCII characters; anything else is a 400). A key is kept for `operations.idempotency_key_ttl_ms` (24 hours by default) from its first use, even if its operation is deleted sooner; the same key with another body is a 422."),
        ("Prefer" = Option<String>, Header, description = "`wait=N` (RFC 7240): wait up to N seconds (at most `operations.max_wait_ms`) for the operation to finish. Other preferences, and a `wait` that is not a whole number, are ignored, as the RFC asks."),
    ),
    responses(
        (status = 202, description = "Accepted; poll `Operation-Location`", body = Operation, headers(
            ("Location" = String, description = "The operation's absolute URL: `server.public_url`, or `http://` and the request's `Host`, followed by `/v1/operations/{id}`"),
            ("Operation-Location" = String, description = "The operation's absolute URL, as `Location`"),
            ("Retry-After" = u32, description = "Seconds before polling again"),
        )),
        (status = 200, description = "Finished within the `Prefer: wait` time", body = Operation),
        (status = 400, description = "Malformed JSON or `Idempotency-Key`", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "`Idempotency-Key` whose operation has been deleted; it is free again when it expires", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not `application/json`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Unknown kind, input that does not fit, a timeout above the maximum, or an `Idempotency-Key` reused with another body", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Queue full or shutting down; see `Retry-After`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn submit(
    State(state): State<AppState>,
    caller: Caller,
    uri: Uri,
    headers: HeaderMap,
    Json(request): Json<SubmitRequest>,
) -> Result<Response, ApiError> {
    caller.require(Scope::Write)?;
    if request.timeout_ms == Some(0) {
        return Err(ApiError::Unprocessable("`timeout_ms` must be greater than 0".to_owned()));
    }
    let submission = Submission {
        owner: caller.shared_id(),
        kind: request.kind,
        input: request.input,
        timeout: request.timeout_ms.map(Duration::from_millis),
        idempotency_key: idempotency_key(&headers)?,
        not_before: request.not_before,
    };
    let operation = state.executor.submit(submission).await?.into_operation();
    let location = location::absolute(
        state.settings.server.public_url.as_deref(),
        &uri,
        &headers,
        &format!("/v1/operations/{}", operation.id),
    );
    let Some(wait) = preferred_wait(&headers) else { return Ok(accepted(operation, &location)) };
    let wait = wait.min(Duration::from_millis(state.settings.operations.max_wait_ms));
    let operation = state.executor.wait(&operation.id, wait).await?;
    if !operation.done {
        return Ok(accepted(operation, &location));
    }
    let mut response = (StatusCode::OK, axum::Json(operation)).into_response();
    if let Ok(applied) = HeaderValue::from_str(&format!("wait={}", wait.as_secs())) {
        response.headers_mut().insert(PREFERENCE_APPLIED, applied);
    }
    Ok(response)
}

/// `location`: the operation's absolute URL (see `http::location`).
fn accepted(operation: Operation, location: &str) -> Response {
    let mut response = (StatusCode::ACCEPTED, axum::Json(operation)).into_response();
    let headers = response.headers_mut();
    if let Ok(location) = HeaderValue::from_str(location) {
        headers.insert(header::LOCATION, location.clone());
        headers.insert(OPERATION_LOCATION, location);
    }
    headers.insert(header::RETRY_AFTER, HeaderValue::from(POLL_AFTER_SECS));
    response
}

/// An `Idempotency-Key` must be 1 to 255 visible ASCII characters; anything else is a client
/// bug worth a 400 rather than a silently ignored key.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let mut values = headers.get_all(IDEMPOTENCY_KEY).iter();
    let Some(value) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(ApiError::InvalidRequest("send one `Idempotency-Key` header, not several".to_owned()));
    }
    let key = value
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY_LEN && k.bytes().all(|b| b.is_ascii_graphic()));
    match key {
        Some(key) => Ok(Some(key.to_owned())),
        None => Err(ApiError::InvalidRequest(format!(
            "`Idempotency-Key` must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"
        ))),
    }
}

/// `Prefer: wait=N` (RFC 7240), in seconds. Preferences that cannot be parsed are ignored, as
/// the RFC asks.
fn preferred_wait(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get_all(header::HeaderName::from_static("prefer"))
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split([',', ';']))
        .filter_map(|preference| preference.split_once('='))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("wait"))
        .and_then(|(_, seconds)| seconds.trim().trim_matches('"').parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// Gets an operation. While it is not done, `Retry-After` says when to poll again, as the Azure
/// guidelines ask of a status monitor.
#[utoipa::path(get, path = "/v1/operations/{id}", tag = "operations",
    security(("bearer" = ["operations:read"]), ("api_key" = ["operations:read"])),
    params(("id" = String, Path, description = "The operation's id")),
    responses(
        (status = 200, description = "The operation", body = Operation, headers(
            ("Retry-After" = u32, description = "Seconds before polling again; only while the operation is not done"),
        )),
        (status = 404, description = "No operation has this id", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn fetch(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(Scope::Read)?;
    Ok(polled(visible(&state, &caller, &id).await?))
}

/// `id`'s operation, if `caller` may see it (its own; any with `operations:admin`). Another
/// caller's is `404`, exactly as an id that does not exist: one read either way, and the same
/// problem, so that nothing tells them apart.
async fn visible(state: &AppState, caller: &Caller, id: &str) -> Result<Operation, ApiError> {
    let operation = state.executor.get(id).await?;
    if caller.sees(&operation.owner) { Ok(operation) } else { Err(OperationsError::NotFound.into()) }
}

/// A live view of `id`'s operation, if `caller` may see it (as [`visible`]).
async fn watch_visible(state: &AppState, caller: &Caller, id: &str) -> Result<watch::Receiver<Operation>, ApiError> {
    let changes = state.executor.watch(id).await?;
    let seen = caller.sees(&changes.borrow().owner);
    if seen { Ok(changes) } else { Err(OperationsError::NotFound.into()) }
}

/// An operation as a poll's answer: `200`, with `Retry-After` while it is not done.
fn polled(operation: Operation) -> Response {
    let done = operation.done;
    let mut response = axum::Json(operation).into_response();
    if !done {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(POLL_AFTER_SECS));
    }
    response
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only operations with this status.
    #[param(value_type = Option<Status>)]
    status: Option<String>,
    /// Only operations of this kind.
    kind: Option<String>,
    /// Operations per page: 50 by default; above 1000 is lowered to 1000.
    #[param(minimum = 1)]
    #[serde(default, deserialize_with = "saturating_count")]
    page_size: Option<usize>,
    /// `next_page_token` from the previous page; empty or absent for the first page. Any token
    /// of this form is accepted: it names a position in creation order, and the page starts
    /// after it.
    #[param(pattern = r"^(v1\.[0-9a-fA-F]{1,16})?$")]
    page_token: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ListResponse {
    /// Newest first.
    operations: Vec<Operation>,
    /// Present when there are more; pass it as `page_token`.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_page_token: Option<String>,
}

/// `GET /v1/operations`: newest first, in pages. A page size above the maximum is lowered to it
/// (AIP-158); zero, or a token this server did not issue, is a 400.
#[utoipa::path(get, path = "/v1/operations", tag = "operations",
    security(("bearer" = ["operations:read"]), ("api_key" = ["operations:read"])),
    params(ListParams),
    responses(
        (status = 200, description = "A page of operations, newest first", body = ListResponse),
        (status = 400, description = "A bad filter, page size or page token", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<ListParams>,
) -> Result<axum::Json<ListResponse>, ApiError> {
    caller.require(Scope::Read)?;
    let status = params.status.as_deref().map(str::parse::<Status>).transpose().map_err(ApiError::InvalidRequest)?;
    let page_size = match params.page_size {
        Some(0) => return Err(ApiError::InvalidRequest("`page_size` must be at least 1".to_owned())),
        Some(size) => size.min(MAX_PAGE_SIZE),
        None => DEFAULT_PAGE_SIZE,
    };
    let page_token = match params.page_token.as_deref() {
        None | Some("") => None,
        Some(raw) => Some(PageToken::decode(raw).ok_or_else(|| {
            ApiError::InvalidRequest(
                "`page_token` must be `v1.` and 1 to 16 hex digits, as `next_page_token` gives it".to_owned(),
            )
        })?),
    };
    // A caller lists its own operations; `operations:admin` lists everyone's.
    let owner = (!caller.has(Scope::Admin)).then(|| caller.shared_id());
    let query = ListQuery { owner, status, kind: params.kind, page_size, page_token };
    let page = state.executor.list(&query).await?;
    Ok(axum::Json(ListResponse {
        operations: page.operations,
        next_page_token: page.next_page_token.map(PageToken::encode),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WaitParams {
    /// How long to wait at most; `operations.max_wait_ms` by default, and at most that.
    timeout_ms: Option<u64>,
}

/// `GET /v1/operations/{id}/wait`: answers as soon as the operation is done, or with its current
/// state when the timeout passes; `done` says which.
#[utoipa::path(get, path = "/v1/operations/{id}/wait", tag = "operations",
    security(("bearer" = ["operations:read"]), ("api_key" = ["operations:read"])),
    params(("id" = String, Path, description = "The operation's id"), WaitParams),
    responses(
        (status = 200, description = "The operation, done or as it was when the timeout passed", body = Operation, headers(
            ("Retry-After" = u32, description = "Seconds before polling again; only while the operation is not done"),
        )),
        (status = 400, description = "A timeout above the maximum", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No operation has this id", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn wait(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(params): Query<WaitParams>,
) -> Result<Response, ApiError> {
    caller.require(Scope::Read)?;
    let max_ms = state.settings.operations.max_wait_ms;
    let timeout_ms = params.timeout_ms.unwrap_or(max_ms);
    if timeout_ms > max_ms {
        return Err(ApiError::InvalidRequest(format!("`timeout_ms` must be at most {max_ms}")));
    }
    let changes = watch_visible(&state, &caller, &id).await?;
    Ok(polled(Executor::wait_on(changes, Duration::from_millis(timeout_ms)).await))
}

/// `POST /v1/operations/{id}/cancel`: `200` with the operation, which is `cancelled` from now on.
/// Not `202`: the cancel has taken effect when keel answers (the operation's own code is told to
/// stop, but nothing it does later can change the terminal state), so there is nothing left to
/// accept; the Azure guidelines answer a cancel that way.
#[utoipa::path(post, path = "/v1/operations/{id}/cancel", tag = "operations",
    security(("bearer" = ["operations:write"]), ("api_key" = ["operations:write"])),
    params(("id" = String, Path, description = "The operation's id")),
    responses(
        (status = 200, description = "Canceled: the operation in its terminal state", body = Operation),
        (status = 404, description = "No operation has this id", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The operation had already finished", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(Scope::Write)?;
    visible(&state, &caller, &id).await?;
    let cancelled = state.executor.cancel(&id).await?;
    Ok(axum::Json(cancelled).into_response())
}

/// `DELETE /v1/operations/{id}`: forgets a finished operation.
#[utoipa::path(delete, path = "/v1/operations/{id}", tag = "operations",
    security(("bearer" = ["operations:write"]), ("api_key" = ["operations:write"])),
    params(("id" = String, Path, description = "The operation's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No operation has this id", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Still queued or running; cancel it first", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(Scope::Write)?;
    visible(&state, &caller, &id).await?;
    state.executor.delete(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// One Server-Sent Event of `/events`, as a client's event parser sees it.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // Documents the wire format; events are written by axum's `Event`.
pub struct OperationEvent {
    /// Always `operation`.
    #[schema(example = "operation")]
    event: String,
    /// The whole operation, as JSON.
    data: String,
}

/// `GET /v1/operations/{id}/events`: Server-Sent Events, an `operation` event with the whole
/// operation first and at every change of status or progress, ending after the terminal state.
/// A slow reader may see progress coalesced, never a missed terminal state.
#[utoipa::path(get, path = "/v1/operations/{id}/events", tag = "operations",
    security(("bearer" = ["operations:read"]), ("api_key" = ["operations:read"])),
    params(("id" = String, Path, description = "The operation's id")),
    responses(
        (status = 200, description = "`operation` events, each carrying the whole operation as JSON; the stream ends after the terminal state",
         body = OperationEvent, content_type = "text/event-stream"),
        (status = 404, description = "No operation has this id", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn events(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(Scope::Read)?;
    let changes = watch_visible(&state, &caller, &id).await?;
    let stream = futures_util::stream::unfold((changes, true, false), |(mut changes, first, ended)| async move {
        if ended || (!first && changes.changed().await.is_err()) {
            return None;
        }
        let operation = changes.borrow_and_update().clone();
        let data = serde_json::to_string(&operation).unwrap_or_default();
        let event = Event::default().event("operation").data(data);
        Some((Ok::<_, Infallible>(event), (changes, false, operation.done)))
    });
    // One caller's operation: no cache may keep it (axum's `Sse` says only `no-cache`).
    let no_store = [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))];
    Ok((no_store, Sse::new(stream).keep_alive(KeepAlive::default())))
}
