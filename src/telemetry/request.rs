//! The request being handled, as every line logged while handling it names it.
//!
//! A [`RequestContext`] (the request id, the method and the matched route's template) is the
//! value of a tokio task-local for as long as the request's code runs: while the HTTP
//! middleware polls the request's future, and while it writes the access line. The log formats
//! read it from there and add it to each line, so a line a handler logs carries its request id
//! without the handler passing anything along.
//!
//! Why not a tracing span per request: a span lives in tracing-subscriber's registry, and
//! creating, rendering and closing one cost more than the rest of keel's middleware together
//! (see the README's performance notes). The context is three plain fields, moved in and out of
//! the task-local on each poll. (A thread-local of keel's own did the same, 45 instructions per
//! `GET /` cheaper: not worth the code.) Spans work as before for anything a handler wants to
//! time or group; their lines carry the request context too.
//!
//! Work a handler spawns runs in another task, outside the request's scope: carry the context
//! along with `tokio::spawn(RequestContext::scope_current(work))`, and the spawned work's lines
//! stay tied to the request.

use std::future::Future;

use axum::body::Bytes;
use axum::http::{HeaderValue, Method};
use tokio::task::futures::TaskLocalFuture;

/// The longest request id kept from a client.
const MAX_ID_LENGTH: usize = 64;

/// A request's id: the client's `x-request-id` when it sent a sane one, a fresh UUID otherwise.
/// Held as a header value, so that cloning it shares one buffer: the context and the response
/// header use the same bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(HeaderValue);

impl RequestId {
    /// Keeps the characters that are safe in logs and headers (`A-Z a-z 0-9 - _ . :`), at most
    /// 64 of them; `None` when nothing is left. An incoming id is untrusted input that lands in
    /// every log line of the request.
    pub fn sanitised(raw: &[u8]) -> Option<Self> {
        let id: String = raw
            .iter()
            .copied()
            .filter(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
            .take(MAX_ID_LENGTH)
            .map(char::from)
            .collect();
        HeaderValue::try_from(id).ok().filter(|value| !value.is_empty()).map(Self)
    }

    pub fn generate() -> Self {
        let mut id = [0; uuid::fmt::Hyphenated::LENGTH];
        uuid::Uuid::new_v4().hyphenated().encode_lower(&mut id);
        // Owned bytes rather than a copied `Vec`: cloning a `Bytes` made from a `Vec` allocates
        // the first time, and the id is cloned into the response header.
        Self(
            HeaderValue::from_maybe_shared(Bytes::from_owner(id))
                .unwrap_or_else(|_| HeaderValue::from_static("unavailable")),
        )
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII ever goes in, so this never falls back.
        self.0.to_str().unwrap_or("")
    }

    pub fn header_value(&self) -> HeaderValue {
        self.0.clone()
    }
}

/// What each line logged for a request says of it.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub id: RequestId,
    pub method: Method,
    /// The matched route's template (`/v1/operations/{id}`), never the raw path.
    pub route: &'static str,
}

tokio::task_local! {
    /// The request whose code this task is running, made current by [`RequestContext::scope`].
    static CURRENT: Option<RequestContext>;
}

impl RequestContext {
    /// The context of the request whose code is running, if any.
    pub fn current() -> Option<Self> {
        Self::with_current(|current| current.cloned())
    }

    /// Runs `read` with the current context; what the log formats use for each line. Never
    /// panics: logging must not.
    pub fn with_current<R>(mut read: impl FnMut(Option<&Self>) -> R) -> R {
        match CURRENT.try_with(|current| read(current.as_ref())) {
            Ok(result) => result,
            Err(_) => read(None),
        }
    }

    /// `future`, with this context current while it is polled (and while it is dropped). The
    /// context comes back with [`TaskLocalFuture::take_value`] once the future is done.
    pub fn scope<F: Future>(self, future: F) -> TaskLocalFuture<Option<Self>, F> {
        CURRENT.scope(Some(self), future)
    }

    /// Runs `run` with this context current: for synchronous code, and tests.
    pub fn sync_scope<R>(self, run: impl FnOnce() -> R) -> R {
        CURRENT.sync_scope(Some(self), run)
    }

    /// `future`, run with the current request's context current (none if there is none): for
    /// work a handler spawns, which would otherwise run outside the request's scope.
    pub fn scope_current<F: Future>(future: F) -> TaskLocalFuture<Option<Self>, F> {
        CURRENT.scope(Self::current(), future)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(id: &str) -> RequestContext {
        RequestContext { id: RequestId::sanitised(id.as_bytes()).unwrap(), method: Method::GET, route: "/" }
    }

    fn current_id() -> Option<String> {
        RequestContext::current().map(|context| context.id.as_str().to_owned())
    }

    #[test]
    fn keeps_a_sane_id() {
        assert_eq!(RequestId::sanitised(b"abc-123_x.y:z").unwrap().as_str(), "abc-123_x.y:z");
    }

    #[test]
    fn strips_unsafe_characters_and_caps_length() {
        assert_eq!(RequestId::sanitised(b"a b\"c\n{d}").unwrap().as_str(), "abcd");
        assert_eq!(RequestId::sanitised(&[b'x'; 500]).unwrap().as_str().len(), MAX_ID_LENGTH);
        assert_eq!(RequestId::sanitised("é∑".as_bytes()), None);
        assert_eq!(RequestId::sanitised(b""), None);
    }

    #[test]
    fn generates_a_uuid() {
        assert_eq!(RequestId::generate().as_str().len(), 36);
    }

    #[test]
    fn a_context_is_current_only_inside_its_scope_and_the_enclosing_one_comes_back() {
        assert_eq!(current_id(), None);
        context("outer").sync_scope(|| {
            assert_eq!(current_id().as_deref(), Some("outer"));
            context("inner").sync_scope(|| assert_eq!(current_id().as_deref(), Some("inner")));
            assert_eq!(current_id().as_deref(), Some("outer"), "the enclosing context is current again");
        });
        assert_eq!(current_id(), None);
    }

    #[test]
    fn a_panic_inside_a_scope_leaves_nothing_current() {
        let result = std::panic::catch_unwind(|| context("panics").sync_scope(|| panic!("handler bug")));
        assert!(result.is_err());
        assert_eq!(current_id(), None);
    }

    #[tokio::test]
    async fn a_scoped_future_hands_its_context_back_when_done() {
        let mut scoped = std::pin::pin!(context("handler").scope(async {
            tokio::task::yield_now().await;
            current_id()
        }));
        assert_eq!(scoped.as_mut().await.as_deref(), Some("handler"));
        assert_eq!(current_id(), None, "current only while polled");
        let back = scoped.as_mut().take_value().flatten();
        assert_eq!(back.map(|context| context.id.as_str().to_owned()).as_deref(), Some("handler"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_scoped_future_carries_the_context_into_a_spawned_task() {
        let spawned = context("spawned").sync_scope(|| {
            tokio::spawn(RequestContext::scope_current(async {
                tokio::task::yield_now().await;
                current_id()
            }))
        });
        assert_eq!(spawned.await.unwrap().as_deref(), Some("spawned"));
        assert_eq!(current_id(), None, "nothing leaks onto the test's own thread");
    }
}
