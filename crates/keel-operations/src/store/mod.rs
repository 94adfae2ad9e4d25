//! Where operations live, behind one trait so that the in-memory store and a shared one
//! (Postgres, for several replicas) are interchangeable under the same executor and HTTP layer.
//!
//! The contract is written for several worker processes sharing one store:
//! - **claiming**: `claim` hands the oldest queued operation to exactly one worker, under a lease;
//!   `create_claimed` hands a new one to the worker submitting it when nothing older is ready;
//! - **leases**: the worker renews them with `heartbeat`; `expire` ends operations whose worker
//!   stopped renewing;
//! - **fencing**: `set_progress` and `finish` need the current [`Lease`], so a stale worker (one
//!   whose operation was cancelled, expired or re-leased) cannot overwrite anything;
//! - **cancellation across processes**: `cancel` ends the operation at once and invalidates its
//!   lease, so the worker's next heartbeat tells it to stop, wherever it runs.
//!
//! Every implementation must pass the conformance suite, `testkit::conformance`
//! (feature `testkit`).

mod memory;
pub mod postgres;

use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use time::OffsetDateTime;
use tokio::sync::watch;

pub use memory::MemoryStore;
pub use postgres::PostgresStore;

use crate::model::{Operation, OperationError, Outcome, Progress, Status};

#[async_trait]
pub trait OperationStore: Send + Sync + 'static {
    /// Stores a new `queued` operation, unless `new.idempotency` names a key that has not expired
    /// (then the operation it created is returned, [`StoreError::IdempotencyKeyMismatch`] if it
    /// came with another fingerprint, [`StoreError::IdempotencyKeySpent`] if that operation is
    /// gone) or `queue_capacity` operations are queued already. Creation is atomic: of two
    /// concurrent submissions with one key, one creates and the other gets what it created.
    async fn create(&self, new: NewOperation, queue_capacity: usize) -> Result<Created, StoreError>;

    /// [`create`](Self::create), claiming the new operation for `worker` in the same step when
    /// it may start at once: it is not scheduled for later and nothing older is ready to start,
    /// so submission order still holds. The caller holds a free slot for it. The lease comes
    /// back with the operation, `running` on its first attempt; `None` when it was queued
    /// instead, or when an idempotency key returned an existing one.
    ///
    /// Why: a replica that runs what it accepts spends one write on it where a create and a
    /// claim spend two, and wakes no other replica to race for it. The default claims nothing,
    /// which is correct for any store, only slower.
    async fn create_claimed(
        &self,
        new: NewOperation,
        queue_capacity: usize,
        worker: &str,
        lease_ttl: Duration,
    ) -> Result<(Created, Option<Lease>), StoreError> {
        let _ = (worker, lease_ttl);
        Ok((self.create(new, queue_capacity).await?, None))
    }

    async fn get(&self, id: &str) -> Result<Option<Operation>, StoreError>;

    /// Newest first, resuming strictly after `query.page_token`, so that operations created
    /// meanwhile are neither skipped nor repeated.
    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError>;

    /// Marks the oldest queued operations whose `not_before` has come (at most `max`) `running`,
    /// each under a fresh lease for `worker`, and counts their attempt. Oldest first.
    async fn claim_many(&self, worker: &str, lease_ttl: Duration, max: usize) -> Result<Vec<Claim>, StoreError>;

    /// [`claim_many`](Self::claim_many) for one.
    async fn claim(&self, worker: &str, lease_ttl: Duration) -> Result<Option<Claim>, StoreError> {
        Ok(self.claim_many(worker, lease_ttl, 1).await?.pop())
    }

    /// Extends the lease; [`StoreError::LeaseLost`] means the worker must stop.
    async fn heartbeat(&self, lease: &Lease, lease_ttl: Duration) -> Result<(), StoreError>;

    async fn set_progress(&self, lease: &Lease, progress: Progress) -> Result<(), StoreError>;

    /// Ends a claimed operation, only if `lease` is still its current lease, with `last`, the
    /// last progress report (which the executor may not have recorded yet), when given.
    async fn finish(&self, lease: &Lease, outcome: Outcome, last: Option<Progress>) -> Result<Operation, StoreError>;

    /// Queues a claimed operation again, to start no earlier than `not_before`: its attempt
    /// failed with a retryable error. Only with the current lease.
    async fn retry(&self, lease: &Lease, not_before: OffsetDateTime) -> Result<Operation, StoreError>;

    /// Gives a claimed operation back, queued as if the attempt had not started: this process
    /// is draining, and another should take it at once rather than after the lease expires.
    async fn release(&self, lease: &Lease) -> Result<Operation, StoreError>;

    /// Ends a queued or running operation as `cancelled` at once and invalidates its lease.
    /// [`StoreError::AlreadyFinished`] if it had ended already.
    async fn cancel(&self, id: &str, reason: OperationError) -> Result<Operation, StoreError>;

    /// Removes a finished operation. [`StoreError::NotFinished`] while it is queued or running.
    async fn delete(&self, id: &str) -> Result<(), StoreError>;

    /// Deals with what its worker can no longer finish as of `now`, and returns what changed:
    /// a running operation whose lease expired is queued again if it has attempts left and its
    /// deadline has not passed, and fails `worker-lost` if not; a queued one past its deadline
    /// fails `deadline-exceeded`.
    async fn expire(&self, now: OffsetDateTime) -> Result<Vec<Operation>, StoreError>;

    /// Removes operations that finished before `cutoff`; returns how many. Their idempotency keys
    /// stay until they expire.
    async fn purge_finished(&self, cutoff: OffsetDateTime) -> Result<usize, StoreError>;

    /// Forgets idempotency keys that expired before `now`; returns how many.
    async fn purge_expired_keys(&self, now: OffsetDateTime) -> Result<usize, StoreError>;

    /// A live view of one operation: the receiver always holds its latest state, whichever
    /// process changed it. A slow reader may miss intermediate states, never the latest one.
    /// The sender is dropped when the operation is deleted.
    async fn watch(&self, id: &str) -> Result<Option<watch::Receiver<Operation>>, StoreError>;

    /// Resolves when another process may have queued work, so an idle dispatcher claims at once
    /// instead of at its next poll. A process-local store never resolves: its only submitter,
    /// this process's executor, wakes the dispatcher itself.
    async fn work_queued(&self) {
        std::future::pending::<()>().await;
    }

    async fn counts(&self) -> Result<Counts, StoreError>;

    /// Answers when the store is usable; `/readyz` turns 503 when it errors.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Whether other processes share this store. A process-local store cancels its queued
    /// operations on shutdown (nobody else could run them); a shared one leaves them queued.
    fn is_shared(&self) -> bool;
}

/// A validated submission, ready to store.
#[derive(Debug, Clone)]
pub struct NewOperation {
    pub id: String,
    pub kind: String,
    /// The caller submitting it.
    pub owner: std::sync::Arc<str>,
    pub input: Value,
    pub created_at: OffsetDateTime,
    pub deadline_at: OffsetDateTime,
    pub idempotency: Option<Idempotency>,
    /// From the kind's retry policy.
    pub max_attempts: u32,
    /// Not to start before this; `None` for as soon as possible.
    pub not_before: Option<OffsetDateTime>,
}

/// An `Idempotency-Key` and a fingerprint of the request it came with: the same key with
/// another fingerprint is a client bug, not a retry.
///
/// A key lives until `expires_at`, whatever becomes of its operation: a retry that arrives after
/// the operation was deleted must not create it a second time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotency {
    pub key: String,
    pub fingerprint: String,
    pub expires_at: OffsetDateTime,
}

#[derive(Debug, Clone)]
pub enum Created {
    New(Operation),
    /// The same idempotency key and request were seen before; nothing new was created.
    Existing(Operation),
}

impl Created {
    pub fn operation(&self) -> &Operation {
        match self {
            Self::New(op) | Self::Existing(op) => op,
        }
    }

    pub fn into_operation(self) -> Operation {
        match self {
            Self::New(op) | Self::Existing(op) => op,
        }
    }
}

/// The right to run one operation, fenced by a token that changes with every claim and cancel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub operation_id: String,
    pub token: u64,
}

#[derive(Debug, Clone)]
pub struct Claim {
    pub operation: Operation,
    pub lease: Lease,
}

#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// Only this caller's operations; `None` for everyone's.
    pub owner: Option<std::sync::Arc<str>>,
    pub status: Option<Status>,
    pub kind: Option<String>,
    pub page_size: usize,
    pub page_token: Option<PageToken>,
}

#[derive(Debug, Clone)]
pub struct Page {
    pub operations: Vec<Operation>,
    pub next_page_token: Option<PageToken>,
}

/// Where a listing resumes: the position of the last operation of the previous page in
/// creation order. Opaque to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageToken(pub u64);

impl PageToken {
    const PREFIX: &'static str = "v1.";

    pub fn encode(self) -> String {
        format!("{}{:x}", Self::PREFIX, self.0)
    }

    pub fn decode(raw: &str) -> Option<Self> {
        let hex = raw.strip_prefix(Self::PREFIX)?;
        if hex.is_empty() || hex.len() > 16 {
            return None;
        }
        u64::from_str_radix(hex, 16).ok().map(Self)
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub queued: usize,
    pub running: usize,
    pub finished: usize,
}

/// A driver's error, shared so that [`StoreError`] stays `Clone` and keeps its source chain.
pub type Source = std::sync::Arc<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("no such operation")]
    NotFound,
    #[error("the queue is full")]
    QueueFull,
    #[error("the idempotency key was used with another request")]
    IdempotencyKeyMismatch,
    /// The key's operation was deleted (by a client or by retention) before the key expired.
    #[error("the idempotency key created operation {operation_id}, which is gone")]
    IdempotencyKeySpent { operation_id: String, expires_at: OffsetDateTime },
    #[error("the operation has finished already")]
    AlreadyFinished,
    #[error("the operation has not finished")]
    NotFinished,
    /// The lease was invalidated: the operation was cancelled, expired or claimed again.
    #[error("the lease on this operation is no longer held")]
    LeaseLost,
    /// The store cannot be reached (connection refused or lost, pool exhausted): worth a retry.
    #[error("the operation store is unavailable: {0}")]
    Unavailable(#[source] Source),
    /// The store answered with an error that retrying will not fix: a bug or a schema mismatch.
    #[error("the operation store failed: {0}")]
    Backend(#[source] Source),
}
