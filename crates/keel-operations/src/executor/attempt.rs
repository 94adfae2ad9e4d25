//! One attempt at an operation: the kind's future raced against the deadline, cancellation and
//! a lost lease, with the lease renewed while it runs, progress recorded as it comes, a panic
//! caught, and the end written with the lease (so a late end cannot overwrite a terminal
//! state); a retryable failure queues the operation again.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use keel_telemetry::metrics as names;
use keel_telemetry::panic_message;
use time::OffsetDateTime;
use tokio::sync::{OwnedSemaphorePermit, watch};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{Inner, lock, record_finished};
use crate::kind::OperationContext;
use crate::model::{Operation, OperationError, Outcome, Progress};
use crate::store::{Claim, Lease, StoreError};

impl Inner {
    /// One attempt at `claim`'s operation, in a span of its own (`operation`, with the id, kind,
    /// attempt and owner), so that every line its code logs names it. The span has no parent: the
    /// run is the same whichever replica claimed it, and whenever.
    pub(super) fn run(
        self: Arc<Self>,
        claim: Claim,
        slot: OwnedSemaphorePermit,
    ) -> impl Future<Output = ()> + Send + 'static {
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
}
