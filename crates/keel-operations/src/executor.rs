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

use std::collections::HashMap;
use std::fmt::Write as _;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use serde_json::Value;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tokio::sync::{Notify, OwnedSemaphorePermit, RwLock, Semaphore, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::blocking::BlockingPool;
use crate::kind::{OperationContext, Registry};
use crate::model::{Operation, OperationError, Outcome, Progress, Status};
use crate::store::{
    Claim, Counts, Created, Idempotency, Lease, ListQuery, NewOperation, OperationStore, Page, StoreError,
};
use keel_config::OperationSettings;
use keel_telemetry::metrics as names;
use keel_telemetry::panic_message;

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

/// A request to run an operation.
#[derive(Debug, Clone)]
pub struct Submission {
    /// Who submits it: the operation's owner, whose idempotency keys are its own.
    pub owner: std::sync::Arc<str>,
    pub kind: String,
    pub input: Value,
    pub timeout: Option<Duration>,
    pub idempotency_key: Option<String>,
    /// Start no earlier than this; the deadline counts from then.
    pub not_before: Option<OffsetDateTime>,
}

/// Most operations claimed in one call to the store.
const CLAIM_BATCH: usize = 32;

/// How far ahead a submission may be scheduled.
pub const MAX_SCHEDULE_AHEAD: Duration = Duration::from_secs(366 * 24 * 3600);

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

    fn prepare(&self, submission: Submission) -> Result<NewOperation, OperationsError> {
        let Submission { owner, kind: name, input, timeout, idempotency_key, not_before } = submission;
        let kind = self.inner.registry.get(&name).ok_or_else(|| OperationsError::UnknownKind(name.clone()))?;
        kind.check(&input).map_err(OperationsError::InvalidInput)?;
        let max = self.inner.settings.max_timeout;
        let timeout = timeout.unwrap_or_else(|| kind.default_timeout().min(max));
        if timeout > max {
            return Err(OperationsError::TimeoutTooLong { requested_ms: timeout.as_millis(), max_ms: max.as_millis() });
        }
        let now = OffsetDateTime::now_utc();
        // A time already past means "now"; the deadline counts from the start it asks for.
        let not_before = not_before.filter(|at| *at > now);
        let starts = not_before.unwrap_or(now);
        if starts - now > MAX_SCHEDULE_AHEAD {
            return Err(OperationsError::ScheduledTooFar);
        }
        // Keys are per caller: two callers may use one key. Neither an owner nor a key has a
        // space (both are visible ASCII), so the pair is unambiguous.
        let idempotency = idempotency_key.map(|key| Idempotency {
            key: format!("{owner} {key}"),
            fingerprint: fingerprint(&name, &input, timeout, not_before),
            expires_at: now + self.inner.settings.idempotency_key_ttl,
        });
        Ok(NewOperation {
            id: uuid::Uuid::new_v4().simple().to_string(),
            kind: name,
            owner,
            input,
            created_at: now,
            deadline_at: time::Duration::try_from(timeout).ok().and_then(|timeout| starts.checked_add(timeout)).ok_or(
                OperationsError::TimeoutTooLong { requested_ms: timeout.as_millis(), max_ms: max.as_millis() },
            )?,
            idempotency,
            max_attempts: kind.retry_policy().max_attempts.max(1),
            not_before,
        })
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

impl Inner {
    /// Claims as many operations as there are free slots, at most [`CLAIM_BATCH`] at a time:
    /// one round trip to a shared store for a batch, not one per operation.
    async fn dispatch(self: Arc<Self>) {
        loop {
            let first = tokio::select! {
                biased;
                () = self.stopping.cancelled() => return,
                slot = Arc::clone(&self.slots).acquire_owned() => match slot {
                    Ok(slot) => slot,
                    Err(_) => return,
                },
            };
            let mut slots = vec![first];
            while slots.len() < CLAIM_BATCH
                && let Ok(slot) = Arc::clone(&self.slots).try_acquire_owned()
            {
                slots.push(slot);
            }
            let wanted = slots.len();
            match self.store.claim_many(&self.worker_id, self.settings.lease_ttl, wanted).await {
                Ok(claims) => {
                    let got = claims.len();
                    for (claim, slot) in claims.into_iter().zip(slots.drain(..)) {
                        self.runs.spawn(Arc::clone(&self).run(claim, slot));
                    }
                    drop(slots);
                    if got < wanted {
                        self.idle().await;
                    }
                }
                Err(error) => {
                    drop(slots);
                    tracing::error!(%error, "could not claim operations");
                    self.idle().await;
                }
            }
        }
    }

    /// Waits for a submission here, a notification of work from the store, or the next poll:
    /// the fallback for a lost notification, and for scheduled work whose timer (`wake_at`)
    /// lives in another process.
    async fn idle(&self) {
        tokio::select! {
            () = self.work_available.notified() => {}
            () = self.store.work_queued() => {}
            () = tokio::time::sleep(self.settings.poll_interval) => {}
            () = self.stopping.cancelled() => {}
        }
    }

    /// Wakes the dispatcher now, or when `at` comes for work scheduled for later.
    fn wake_at(self: &Arc<Self>, at: Option<OffsetDateTime>) {
        let wait = at.and_then(|at| Duration::try_from(at - OffsetDateTime::now_utc()).ok());
        match wait {
            None => self.work_available.notify_one(),
            Some(wait) => {
                let inner = Arc::downgrade(self);
                tokio::spawn(async move {
                    // A millisecond late rather than early: the store compares with the wall clock.
                    tokio::time::sleep(wait + Duration::from_millis(1)).await;
                    if let Some(inner) = inner.upgrade() {
                        inner.work_available.notify_one();
                    }
                });
            }
        }
    }

    /// One attempt at `claim`'s operation, in a span of its own (`operation`, with the id, kind,
    /// attempt and owner), so that every line its code logs names it. The span has no parent: the
    /// run is the same whichever replica claimed it, and whenever.
    fn run(self: Arc<Self>, claim: Claim, slot: OwnedSemaphorePermit) -> impl Future<Output = ()> + Send + 'static {
        let operation = &claim.operation;
        let span = tracing::info_span!(
            parent: None,
            "operation",
            operation_id = %operation.id,
            kind = %operation.kind,
            attempt = operation.attempt,
            owner = %operation.owner,
        );
        self.run_attempt(claim, slot).instrument(span)
    }

    async fn run_attempt(self: Arc<Self>, claim: Claim, _slot: OwnedSemaphorePermit) {
        let Claim { operation, lease } = claim;
        let token = CancellationToken::new();
        lock(&self.running).insert(operation.id.clone(), (lease.clone(), token.clone()));
        let (kind, attempt, max_attempts, deadline_at) =
            (operation.kind.clone(), operation.attempt, operation.max_attempts, operation.deadline_at);
        tracing::debug!("operation started");
        let started = tokio::time::Instant::now();
        let (outcome, last_progress) = self.execute(operation, &lease, &token).await;
        metrics::histogram!(names::OPERATION_RUN_DURATION, "kind" => kind.clone())
            .record(started.elapsed().as_secs_f64());
        // Blocking work that outlived the race polls this token to stop.
        token.cancel();
        lock(&self.running).remove(&lease.operation_id);
        if let Outcome::Failed(error) = &outcome
            && error.retryable
            && attempt < max_attempts
            && let Some(policy) = self.registry.get(&kind).map(|kind| kind.retry_policy())
        {
            let not_before = OffsetDateTime::now_utc() + policy.backoff_after(attempt);
            if not_before < deadline_at {
                match self.store.retry(&lease, not_before).await {
                    Ok(queued) => {
                        metrics::counter!(names::OPERATIONS_RETRIED, "kind" => kind).increment(1);
                        tracing::info!(max_attempts, error = ?error.detail, "attempt failed; queued again");
                        self.wake_at(queued.not_before);
                        return;
                    }
                    Err(StoreError::LeaseLost) => {
                        return tracing::debug!("retry discarded: the operation had already ended");
                    }
                    Err(error) => {
                        tracing::error!(%error, "could not queue a retry; failing it");
                    }
                }
            }
        }
        match self.record_end(&lease, outcome, last_progress).await {
            Ok(finished) => {
                record_finished(&finished);
                tracing::debug!(status = finished.status.as_str(), "operation finished");
            }
            Err(StoreError::LeaseLost) => {
                tracing::debug!("result discarded: the operation had already ended");
            }
            Err(error) => {
                tracing::error!(%error, "could not record an operation's end")
            }
        }
    }

    /// Writes the outcome, trying again while the store is unreachable and the lease may still
    /// hold: a result lost to a short database outage would otherwise cost a whole new attempt.
    async fn record_end(
        &self,
        lease: &Lease,
        outcome: Outcome,
        last_progress: Option<Progress>,
    ) -> Result<Operation, StoreError> {
        let give_up = tokio::time::Instant::now() + self.settings.lease_ttl;
        let mut pause = Duration::from_millis(100);
        loop {
            match self.store.finish(lease, outcome.clone(), last_progress.clone()).await {
                Err(StoreError::Unavailable(error)) if tokio::time::Instant::now() + pause < give_up => {
                    tracing::warn!(%error, "store unavailable; recording the end again shortly");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
                other => return other,
            }
        }
    }

    /// Runs the kind's code to its outcome, and returns it with the last progress it reported.
    async fn execute(
        &self,
        operation: Operation,
        lease: &Lease,
        token: &CancellationToken,
    ) -> (Outcome, Option<Progress>) {
        let Some(kind) = self.registry.get(&operation.kind) else {
            let error = OperationError::failed(format!("kind {:?} is not registered here", operation.kind));
            return (Outcome::Failed(error), None);
        };
        let remaining = operation.deadline_at - OffsetDateTime::now_utc();
        let Ok(remaining) = Duration::try_from(remaining) else {
            return (Outcome::Failed(OperationError::deadline_exceeded()), None);
        };
        let (progress, mut reports) = watch::channel(None);
        let ctx = OperationContext::new(
            operation.id.clone(),
            std::sync::Arc::clone(&operation.owner),
            operation.attempt,
            token.clone(),
            progress,
            self.blocking.clone(),
        );
        let work = AssertUnwindSafe(kind.run(ctx, operation.input)).catch_unwind();
        let outcome = tokio::select! {
            result = work => match result {
                Ok(Ok(value)) => Outcome::Succeeded(value),
                Ok(Err(error)) => Outcome::Failed(error),
                Err(payload) => {
                    tracing::error!(panic = %panic_message(payload.as_ref()), "operation panicked");
                    Outcome::Failed(OperationError::internal())
                }
            },
            () = tokio::time::sleep(remaining) => Outcome::Failed(OperationError::deadline_exceeded()),
            // Cancellation has already ended the operation in the store; this only bounds how
            // long code that ignores its token keeps a slot.
            () = async { token.cancelled().await; tokio::time::sleep(self.settings.cancel_grace).await } => {
                Outcome::Cancelled(OperationError::cancelled_by_client())
            }
            outcome = self.keep_lease(lease, token) => outcome,
            outcome = self.ended_elsewhere(&operation.id, token) => outcome,
            outcome = self.record_progress(lease, &mut reports, token) => outcome,
        };
        let last_progress = reports.borrow().clone();
        (outcome, last_progress)
    }

    /// Records the kind's latest progress report, then waits `progress_interval` before the
    /// next: one write per interval however often the kind reports (a kind reporting in a tight
    /// loop would otherwise write per report), and none at all for work that ends first, since
    /// the end records the last report. Trips `token` when the lease is gone. Never completes
    /// by itself.
    async fn record_progress(
        &self,
        lease: &Lease,
        reports: &mut watch::Receiver<Option<Progress>>,
        token: &CancellationToken,
    ) -> Outcome {
        while reports.changed().await.is_ok() {
            let Some(progress) = reports.borrow_and_update().clone() else { continue };
            match self.store.set_progress(lease, progress).await {
                Ok(()) => {}
                Err(StoreError::LeaseLost) => {
                    token.cancel();
                    break;
                }
                Err(error) => tracing::warn!(operation_id = %lease.operation_id, %error, "could not record progress"),
            }
            tokio::time::sleep(self.settings.progress_interval).await;
        }
        std::future::pending().await
    }

    /// Trips `token` as soon as the store shows the operation ended without this run: a cancel
    /// made through another replica (or the sweeper) reaches the code at once, not at the next
    /// heartbeat. Never completes by itself.
    async fn ended_elsewhere(&self, id: &str, token: &CancellationToken) -> Outcome {
        if let Ok(Some(mut changes)) = self.store.watch(id).await
            && changes.wait_for(|op| op.done).await.is_ok()
        {
            token.cancel();
        }
        std::future::pending().await
    }

    /// Renews the lease until it is lost, then trips `token`. Never completes by itself.
    async fn keep_lease(&self, lease: &Lease, token: &CancellationToken) -> Outcome {
        let every = self.settings.heartbeat_interval;
        loop {
            tokio::time::sleep(every).await;
            match self.store.heartbeat(lease, self.settings.lease_ttl).await {
                Ok(()) => {}
                Err(StoreError::LeaseLost) => {
                    token.cancel();
                    return std::future::pending().await;
                }
                Err(error) => tracing::warn!(operation_id = %lease.operation_id, %error, "heartbeat failed"),
            }
        }
    }

    async fn sweep(self: Arc<Self>) {
        let mut ticks = tokio::time::interval(self.settings.sweep_interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = self.stopping.cancelled() => return,
                _ = ticks.tick() => {}
            }
            let now = OffsetDateTime::now_utc();
            match self.store.expire(now).await {
                Ok(ended) if !ended.is_empty() => {
                    if ended.iter().any(|operation| !operation.done) {
                        self.work_available.notify_one(); // Queued again: claimable here too.
                    }
                    ended.iter().filter(|operation| operation.done).for_each(record_finished);
                    tracing::info!(count = ended.len(), "expired operations that could no longer finish");
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "could not expire operations"),
            }
            if let Err(error) = self.store.purge_finished(now - self.settings.retention).await {
                tracing::warn!(%error, "could not purge finished operations");
            }
            if let Err(error) = self.store.purge_expired_keys(now).await {
                tracing::warn!(%error, "could not purge expired idempotency keys");
            }
        }
    }

    async fn cancel_queued(&self) {
        let query = ListQuery { status: Some(Status::Queued), page_size: 1024, ..ListQuery::default() };
        loop {
            let queued = match self.store.list(&query).await {
                Ok(page) => page.operations,
                Err(error) => return tracing::error!(%error, "could not list queued operations at shutdown"),
            };
            let mut cancelled = 0;
            for operation in &queued {
                match self.store.cancel(&operation.id, OperationError::shutdown()).await {
                    Ok(operation) => {
                        record_finished(&operation);
                        cancelled += 1;
                    }
                    Err(error) => tracing::warn!(operation_id = %operation.id, %error, "could not cancel at shutdown"),
                }
            }
            // An empty page means done; a page where nothing could be cancelled would repeat forever.
            if cancelled == 0 {
                return;
            }
        }
    }
}

/// What makes two submissions the same request: SHA-256 of kind, input, timeout and
/// `not_before`, so a key's record stays small however large the input (serde_json sorts object
/// keys, so equal requests hash alike).
fn fingerprint(kind: &str, input: &Value, timeout: Duration, not_before: Option<OffsetDateTime>) -> String {
    let not_before = not_before.map(|at| at.unix_timestamp_nanos().to_string());
    let request = serde_json::json!([kind, input, timeout.as_millis() as u64, not_before]).to_string();
    let digest = Sha256::digest(request.as_bytes());
    digest.iter().fold(String::with_capacity(64), |mut hex, byte| {
        let _ = write!(hex, "{byte:02x}");
        hex
    })
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
