//! Runs operations: the public face of the operation layer, used by the HTTP handlers (or a
//! queue consumer, a CLI, a test) without knowing how operations are stored.
//!
//! - A **dispatcher** task holds the concurrency limit: it takes a free slot, then claims the
//!   oldest queued operation, so operations start in submission order and never more than
//!   `max_running` at once. A submission that finds a free slot takes it and is stored already
//!   claimed when nothing older is ready (`OperationStore::create_claimed`): it starts without
//!   waiting for the dispatcher, on the replica that accepted it.
//! - Each **run** races the kind's future against its deadline and against cancellation
//!   (plus a grace period, for code that ignores its token); a panic is caught and becomes
//!   `failed`. The lease is renewed while it runs, and a lost lease (a cancel from anywhere)
//!   stops it. The result is written with the lease, so a late result cannot overwrite a
//!   terminal state.
//! - A **sweeper** ends what can no longer finish and forgets finished operations after the
//!   retention period, so memory stays bounded under a steady stream.
//! - **drain** closes submissions, lets running operations finish within the grace period, and
//!   cancels the rest, so nothing is left `running`.
//!
//! This module is the public face ([`Executor`]) and the drain; each actor has a file of its
//! own: `submission.rs` (a submission checked and made a new operation), `dispatch.rs` (the
//! dispatcher), `attempt.rs` (one attempt, its lease and its end) and `sweep.rs` (the sweeper).

mod attempt;
mod dispatch;
mod submission;
mod sweep;

pub use submission::{MAX_SCHEDULE_AHEAD, Submission};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::{Notify, RwLock, Semaphore, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::blocking::BlockingPool;
use crate::kind::Registry;
use crate::model::{Operation, OperationError};
use crate::store::{Claim, Counts, Created, Lease, ListQuery, OperationStore, Page, StoreError};
use keel_config::OperationSettings;
use keel_telemetry::metrics as names;

/// The executor's limits, usually from [`OperationSettings`].
#[derive(Debug, Clone)]
pub struct ExecutorSettings {
    pub max_running: usize,
    pub queue_capacity: usize,
    pub max_timeout: Duration,
    pub retention: Duration,
    /// How long an `Idempotency-Key` is remembered, from the submission that used it first.
    pub idempotency_key_ttl: Duration,
    pub cancel_grace: Duration,
    /// How long a claim holds without a heartbeat.
    pub lease_ttl: Duration,
    /// How often a running operation's lease is renewed.
    pub heartbeat_interval: Duration,
    /// How often the sweeper expires and purges.
    pub sweep_interval: Duration,
    /// How often an idle dispatcher looks for work anyway: work another process queued whose
    /// notification was lost, and work scheduled (`not_before`) by another process.
    pub poll_interval: Duration,
    /// A running operation's progress is written to the store at most this often.
    pub progress_interval: Duration,
}

impl From<&OperationSettings> for ExecutorSettings {
    fn from(s: &OperationSettings) -> Self {
        Self {
            max_running: s.max_running,
            queue_capacity: s.queue_capacity,
            max_timeout: Duration::from_millis(s.max_timeout_ms),
            retention: Duration::from_millis(s.retention_ms),
            idempotency_key_ttl: Duration::from_millis(s.idempotency_key_ttl_ms),
            cancel_grace: Duration::from_millis(s.cancel_grace_ms),
            lease_ttl: Duration::from_millis(s.lease_ttl_ms),
            heartbeat_interval: Duration::from_millis(s.heartbeat_interval_ms),
            sweep_interval: Duration::from_millis(s.sweep_interval_ms),
            poll_interval: Duration::from_millis(s.poll_interval_ms),
            progress_interval: Duration::from_millis(s.progress_interval_ms),
        }
    }
}

/// Most operations claimed in one call to the store.
const CLAIM_BATCH: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum OperationsError {
    #[error("unknown operation kind {0:?}")]
    UnknownKind(String),
    #[error("input does not fit the kind: {0}")]
    InvalidInput(String),
    #[error("timeout of {requested_ms} ms is above the maximum of {max_ms} ms")]
    TimeoutTooLong { requested_ms: u128, max_ms: u128 },
    #[error("`not_before` is more than {} days ahead", MAX_SCHEDULE_AHEAD.as_secs() / 86_400)]
    ScheduledTooFar,
    #[error("the idempotency key was used with another request")]
    IdempotencyKeyMismatch,
    #[error("the idempotency key created operation {operation_id}, which is gone")]
    IdempotencyKeySpent { operation_id: String, expires_at: OffsetDateTime },
    #[error("the queue is full")]
    QueueFull,
    #[error("shutting down")]
    ShuttingDown,
    #[error("no such operation")]
    NotFound,
    #[error("the operation has finished already")]
    AlreadyFinished,
    #[error("the operation has not finished")]
    NotFinished,
    #[error("store: {0}")]
    Store(StoreError),
}

impl From<StoreError> for OperationsError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound => Self::NotFound,
            StoreError::QueueFull => Self::QueueFull,
            StoreError::IdempotencyKeyMismatch => Self::IdempotencyKeyMismatch,
            StoreError::IdempotencyKeySpent { operation_id, expires_at } => {
                Self::IdempotencyKeySpent { operation_id, expires_at }
            }
            StoreError::AlreadyFinished => Self::AlreadyFinished,
            StoreError::NotFinished => Self::NotFinished,
            other => Self::Store(other),
        }
    }
}

#[derive(Clone)]
pub struct Executor {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn OperationStore>,
    registry: Registry,
    blocking: BlockingPool,
    settings: ExecutorSettings,
    worker_id: String,
    slots: Arc<Semaphore>,
    work_available: Notify,
    /// Submissions hold a read guard while they create; drain takes the write guard to close,
    /// so no submission can slip in after drain has looked at the queue.
    submissions_open: RwLock<bool>,
    stopping: CancellationToken,
    runs: TaskTracker,
    /// What runs here: its lease (to give it back on a drain) and its cancellation token.
    running: Mutex<HashMap<String, (Lease, CancellationToken)>>,
    background: Mutex<Vec<JoinHandle<()>>>,
}

impl Executor {
    /// Starts the dispatcher and the sweeper on the current tokio runtime.
    pub fn start(
        store: Arc<dyn OperationStore>,
        registry: Registry,
        blocking: BlockingPool,
        settings: ExecutorSettings,
    ) -> Self {
        let inner = Arc::new(Inner {
            slots: Arc::new(Semaphore::new(settings.max_running)),
            store,
            registry,
            blocking,
            settings,
            worker_id: uuid::Uuid::new_v4().to_string(),
            work_available: Notify::new(),
            submissions_open: RwLock::new(true),
            stopping: CancellationToken::new(),
            runs: TaskTracker::new(),
            running: Mutex::new(HashMap::new()),
            background: Mutex::new(Vec::new()),
        });
        let dispatcher = tokio::spawn(Arc::clone(&inner).dispatch());
        let sweeper = tokio::spawn(Arc::clone(&inner).sweep());
        lock(&inner.background).extend([dispatcher, sweeper]);
        Self { inner }
    }

    /// Validates and stores a submission. It starts at once when a slot is free here and nothing
    /// older is waiting; otherwise the dispatcher starts it when its turn comes.
    pub async fn submit(&self, submission: Submission) -> Result<Created, OperationsError> {
        let open = self.inner.submissions_open.read().await;
        if !*open {
            metrics::counter!(names::OPERATIONS_REJECTED, "reason" => "shutting_down").increment(1);
            return Err(OperationsError::ShuttingDown);
        }
        let new = self.prepare(submission)?;
        let inner = &self.inner;
        // With a slot free here, the store may hand the operation straight to this process (see
        // `create_claimed`): no claim, and no other replica woken for it.
        let slot = Arc::clone(&inner.slots).try_acquire_owned().ok();
        let capacity = inner.settings.queue_capacity;
        let stored = match &slot {
            Some(_) => inner.store.create_claimed(new, capacity, &inner.worker_id, inner.settings.lease_ttl).await,
            None => inner.store.create(new, capacity).await.map(|created| (created, None)),
        };
        let (created, lease) = match stored {
            Ok(stored) => stored,
            Err(StoreError::QueueFull) => {
                metrics::counter!(names::OPERATIONS_REJECTED, "reason" => "queue_full").increment(1);
                return Err(OperationsError::QueueFull);
            }
            Err(error) => return Err(error.into()),
        };
        if let Created::New(operation) = &created {
            metrics::counter!(names::OPERATIONS_SUBMITTED, "kind" => operation.kind.clone()).increment(1);
            match (lease, slot) {
                // Spawned before submissions can close: drain waits for it like any run.
                (Some(lease), Some(slot)) => {
                    let claim = Claim { operation: operation.clone(), lease };
                    inner.runs.spawn(Arc::clone(inner).run(claim, slot));
                }
                _ => inner.wake_at(operation.not_before),
            }
        }
        drop(open);
        Ok(created)
    }

    pub async fn get(&self, id: &str) -> Result<Operation, OperationsError> {
        self.inner.store.get(id).await?.ok_or(OperationsError::NotFound)
    }

    pub async fn list(&self, query: &ListQuery) -> Result<Page, OperationsError> {
        Ok(self.inner.store.list(query).await?)
    }

    /// A live view of one operation, for streaming its changes.
    pub async fn watch(&self, id: &str) -> Result<watch::Receiver<Operation>, OperationsError> {
        self.inner.store.watch(id).await?.ok_or(OperationsError::NotFound)
    }

    /// The operation as soon as it is done, or as it is when `timeout` passes.
    pub async fn wait(&self, id: &str, timeout: Duration) -> Result<Operation, OperationsError> {
        Ok(Self::wait_on(self.watch(id).await?, timeout).await)
    }

    /// [`wait`](Self::wait), on a view [`watch`](Self::watch) gave.
    pub async fn wait_on(mut changes: watch::Receiver<Operation>, timeout: Duration) -> Operation {
        // An error means the operation was deleted meanwhile; its last state is still here.
        let _ = tokio::time::timeout(timeout, changes.wait_for(|op| op.done)).await;
        changes.borrow().clone()
    }

    /// Ends a queued or running operation as `cancelled` now. A running one is also told to
    /// stop; whatever it returns later is discarded.
    pub async fn cancel(&self, id: &str) -> Result<Operation, OperationsError> {
        let cancelled = self.inner.store.cancel(id, OperationError::cancelled_by_client()).await?;
        record_finished(&cancelled);
        if let Some((_, token)) = lock(&self.inner.running).get(id) {
            token.cancel();
        }
        Ok(cancelled)
    }

    pub async fn delete(&self, id: &str) -> Result<(), OperationsError> {
        Ok(self.inner.store.delete(id).await?)
    }

    pub async fn counts(&self) -> Result<Counts, OperationsError> {
        Ok(self.inner.store.counts().await?)
    }

    /// Whether the store answers: part of readiness.
    pub async fn check_store(&self) -> Result<(), StoreError> {
        self.inner.store.ping().await
    }

    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// Closes submissions and stops claiming, gives running operations `grace` to finish, then
    /// deals with what is left. With a process-local store nobody else could run it, so it is
    /// cancelled (`shutdown`), queued operations too. With a shared store the leases are given
    /// back at once: queued again, for another replica to take without waiting for them to
    /// expire, and the queue is left as it is.
    pub async fn drain(&self, grace: Duration) {
        let inner = &self.inner;
        *inner.submissions_open.write().await = false;
        inner.stopping.cancel();
        let background: Vec<_> = lock(&inner.background).drain(..).collect();
        for task in background {
            let _ = task.await;
        }
        if !inner.store.is_shared() {
            inner.cancel_queued().await;
        }
        inner.runs.close();
        if tokio::time::timeout(grace, inner.runs.wait()).await.is_ok() {
            return;
        }
        let abandoned: Vec<(String, Lease, CancellationToken)> = lock(&inner.running)
            .iter()
            .map(|(id, (lease, token))| (id.clone(), lease.clone(), token.clone()))
            .collect();
        let shared = inner.store.is_shared();
        tracing::warn!(
            count = abandoned.len(),
            action = if shared { "giving back their leases" } else { "cancelling" },
            "grace period over: operations still running"
        );
        for (id, lease, token) in abandoned {
            if shared {
                match inner.store.release(&lease).await {
                    Ok(_) => tracing::info!(operation_id = %id, "lease given back: queued for another replica"),
                    Err(StoreError::LeaseLost) => {}
                    Err(error) => tracing::error!(operation_id = %id, %error, "could not give a lease back"),
                }
            } else {
                match inner.store.cancel(&id, OperationError::shutdown()).await {
                    Ok(cancelled) => record_finished(&cancelled),
                    Err(StoreError::AlreadyFinished | StoreError::NotFound) => {}
                    Err(error) => tracing::error!(operation_id = %id, %error, "could not cancel at shutdown"),
                }
            }
            token.cancel();
        }
        // Each run drops its work at most `cancel_grace` after its token fires.
        let _ = tokio::time::timeout(inner.settings.cancel_grace + Duration::from_secs(1), inner.runs.wait()).await;
    }
}

/// Counts a terminal transition. Every path to a terminal state passes through here once.
fn record_finished(operation: &Operation) {
    metrics::counter!(names::OPERATIONS_FINISHED, "kind" => operation.kind.clone(), "status" => operation.status.as_str())
        .increment(1);
}

/// The guarded maps hold plain data that no panic can leave half-changed.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
