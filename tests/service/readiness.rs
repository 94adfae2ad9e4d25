//! `/readyz` turns 503 when the operation store does not answer, and back when it does.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use keel_http::lifecycle::Phase;
use keel_operations::store::{
    Claim, Counts, Created, Lease, ListQuery, NewOperation, OperationStore, Page, StoreError,
};
use keel_operations::{MemoryStore, Operation, OperationError, Outcome, Progress};
use time::OffsetDateTime;
use tokio::sync::watch;

/// The memory store, with a switch that makes it stop answering `ping`, as a database that
/// went away would.
#[derive(Default)]
struct Flaky {
    inner: MemoryStore,
    down: AtomicBool,
}

#[async_trait]
impl OperationStore for Flaky {
    async fn create(&self, new: NewOperation, capacity: usize) -> Result<Created, StoreError> {
        self.inner.create(new, capacity).await
    }
    async fn get(&self, id: &str) -> Result<Option<Operation>, StoreError> {
        self.inner.get(id).await
    }
    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError> {
        self.inner.list(query).await
    }
    async fn claim_many(&self, worker: &str, ttl: Duration, max: usize) -> Result<Vec<Claim>, StoreError> {
        self.inner.claim_many(worker, ttl, max).await
    }
    async fn heartbeat(&self, lease: &Lease, ttl: Duration) -> Result<(), StoreError> {
        self.inner.heartbeat(lease, ttl).await
    }
    async fn set_progress(&self, lease: &Lease, progress: Progress) -> Result<(), StoreError> {
        self.inner.set_progress(lease, progress).await
    }
    async fn finish(&self, lease: &Lease, outcome: Outcome, last: Option<Progress>) -> Result<Operation, StoreError> {
        self.inner.finish(lease, outcome, last).await
    }
    async fn retry(&self, lease: &Lease, not_before: OffsetDateTime) -> Result<Operation, StoreError> {
        self.inner.retry(lease, not_before).await
    }
    async fn release(&self, lease: &Lease) -> Result<Operation, StoreError> {
        self.inner.release(lease).await
    }
    async fn cancel(&self, id: &str, reason: OperationError) -> Result<Operation, StoreError> {
        self.inner.cancel(id, reason).await
    }
    async fn delete(&self, id: &str) -> Result<(), StoreError> {
        self.inner.delete(id).await
    }
    async fn expire(&self, now: OffsetDateTime) -> Result<Vec<Operation>, StoreError> {
        self.inner.expire(now).await
    }
    async fn purge_finished(&self, cutoff: OffsetDateTime) -> Result<usize, StoreError> {
        self.inner.purge_finished(cutoff).await
    }
    async fn purge_expired_keys(&self, now: OffsetDateTime) -> Result<usize, StoreError> {
        self.inner.purge_expired_keys(now).await
    }
    async fn watch(&self, id: &str) -> Result<Option<watch::Receiver<Operation>>, StoreError> {
        self.inner.watch(id).await
    }
    async fn counts(&self) -> Result<Counts, StoreError> {
        self.inner.counts().await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
            return Err(StoreError::Unavailable(std::sync::Arc::new(refused)));
        }
        Ok(())
    }
    fn is_shared(&self) -> bool {
        false
    }
}

#[tokio::test]
async fn readiness_follows_the_store() {
    let store = Arc::new(Flaky::default());
    let state =
        keel::startup::build_state_with_store(crate::support::settings(), keel::kinds::registry(), store.clone());
    state.lifecycle.set(Phase::Ready);
    let app = keel::startup::router(state).unwrap();

    assert_eq!(crate::support::get(&app, "/readyz").await.status, 200);
    store.down.store(true, Ordering::SeqCst);
    let answer = crate::support::get(&app, "/readyz").await;
    let problem = answer.problem(503, "dependency-unavailable");
    assert!(!problem.to_string().contains("connection refused"), "store detail stays in the logs: {problem}");
    assert_eq!(crate::support::get(&app, "/healthz").await.status, 200, "alive all the same");
    store.down.store(false, Ordering::SeqCst);
    assert_eq!(crate::support::get(&app, "/readyz").await.status, 200);
}
