//! The dispatcher: one task per executor that holds the concurrency limit. It takes a free slot,
//! then claims the oldest due operations from the store, and starts an attempt for each; when
//! there is nothing to claim it sleeps until the store wakes it, the next scheduled operation is
//! due, or the poll interval passes.

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use super::{CLAIM_BATCH, Inner};

impl Inner {
    /// Claims as many operations as there are free slots, at most [`CLAIM_BATCH`] at a time:
    /// one round trip to a shared store for a batch, not one per operation.
    pub(super) async fn dispatch(self: Arc<Self>) {
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
    pub(super) fn wake_at(self: &Arc<Self>, at: Option<OffsetDateTime>) {
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
}
