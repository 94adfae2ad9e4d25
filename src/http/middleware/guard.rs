//! The innermost middleware: what keeps one request from hurting the service or the client.
//!
//! - **timeout**: past the request timeout the handler's future is dropped (its work stops at
//!   its next `.await`) and the client gets 503: the server was slow, the client did nothing
//!   wrong, so not 408. Only the response head is timed; a streaming body (SSE) is not cut.
//! - **panic isolation**: a panicking handler becomes a 500 problem; the panic message is
//!   logged, never sent; the server keeps serving.
//! - **problem rendering**: every error response leaves as `application/problem+json`.
//! - **body limit**: a request with a body gets the configured limit (axum's `DefaultBodyLimit`),
//!   enforced when a handler reads the body, so an oversized one gets 413. A request without a
//!   body has nothing to limit and is left alone: the limit travels as a request extension,
//!   and inserting it into every `GET` cost more than the rest of this service.
//!
//! One hand-written service for the three, for the reason given in `observe.rs`. tower-http's
//! `TimeoutLayer::with_status_code` and `CatchPanicLayer` do the first two
//! (`bench/alternatives/tower-http-guard.patch` swaps them in; `bench/alternatives.py` measures
//! both): with them a `GET /` costs 1,087 more instructions (+6.5%) and 11% more CPU time. The
//! timeout creates a tokio sleep for every request, reading the clock; the panic catcher boxes
//! every response body; and the timeout's response future is not exported, so keel's stack,
//! whose future type is named, would have to box every request's future. The timer is
//! armed only when the handler does not answer on its first poll, so a quick handler never
//! touches the timer wheel or reads the clock. The first poll follows the call at once, so the
//! timeout still runs from the start of the request.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::body::HttpBody;
use axum::extract::{DefaultBodyLimit, Request};
use axum::response::{IntoResponse, Response};
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower::{Layer, Service};

use super::problem;
use crate::blocking::panic_message;
use crate::http::error::ApiError;

/// Guards every request of the routes it wraps.
#[derive(Clone)]
pub struct GuardLayer {
    timeout: Duration,
    body_limit: DefaultBodyLimit,
}

impl GuardLayer {
    /// `timeout`: the request timeout; `body_limit_bytes`: the largest request body accepted.
    pub fn new(timeout: Duration, body_limit_bytes: usize) -> Self {
        Self { timeout, body_limit: DefaultBodyLimit::max(body_limit_bytes) }
    }
}

impl<S> Layer<S> for GuardLayer {
    type Service = Guard<S>;

    fn layer(&self, inner: S) -> Guard<S> {
        Guard { inner, timeout: self.timeout, body_limit: self.body_limit }
    }
}

#[derive(Clone)]
pub struct Guard<S> {
    inner: S,
    timeout: Duration,
    body_limit: DefaultBodyLimit,
}

impl<S> Service<Request> for Guard<S>
where
    S: Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = GuardFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        if !request.body().is_end_stream() {
            self.body_limit.apply(&mut request);
        }
        // A service may panic while building its future, not only while it is polled.
        let handling = match catch_unwind(AssertUnwindSafe(|| self.inner.call(request))) {
            Ok(future) => Handling::Running { future, timeout: self.timeout, timer: None },
            // Rendered, and so logged, when polled: in the request's context.
            Err(payload) => Handling::Panicked { message: Some(panic_message(payload.as_ref())) },
        };
        GuardFuture { handling }
    }
}

pin_project! {
    /// The response future of [`Guard`].
    pub struct GuardFuture<F> {
        #[pin]
        handling: Handling<F>,
    }
}

pin_project! {
    #[project = HandlingProjection]
    enum Handling<F> {
        Running {
            #[pin]
            future: F,
            timeout: Duration,
            #[pin]
            timer: Option<Sleep>,
        },
        Panicked {
            message: Option<String>,
        },
    }
}

impl<F, E> Future for GuardFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = match this.handling.project() {
            HandlingProjection::Panicked { message } => match message.take() {
                Some(message) => panicked_with(&message),
                None => ApiError::Internal("polled after completion".to_owned()).into_response(),
            },
            HandlingProjection::Running { future, timeout, mut timer } => {
                match catch_unwind(AssertUnwindSafe(|| future.poll(cx))) {
                    Ok(Poll::Ready(result)) => result?,
                    Err(payload) => panicked(payload.as_ref()),
                    Ok(Poll::Pending) => {
                        if timer.is_none() {
                            timer.set(Some(tokio::time::sleep(*timeout)));
                        }
                        if let Some(timer) = timer.as_pin_mut() {
                            ready!(timer.poll(cx));
                        }
                        ApiError::Timeout.into_response()
                    }
                }
            }
        };
        // Polled in the request's context, which gives the problem its request id.
        Poll::Ready(Ok(problem::render(response)))
    }
}

fn panicked(payload: &(dyn std::any::Any + Send)) -> Response {
    panicked_with(&panic_message(payload))
}

fn panicked_with(message: &str) -> Response {
    ApiError::Internal(format!("handler panicked: {message}")).into_response()
}
