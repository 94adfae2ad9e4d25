//! The sweeper: ends or queues again what can no longer finish (expired leases, passed
//! deadlines) and forgets finished operations and idempotency keys after their retention, so
//! the store stays bounded under a steady stream. Also the drain's last step with the memory
//! store: cancelling what is still queued.

use std::sync::Arc;

use time::OffsetDateTime;

use super::{Inner, record_finished};
use crate::model::{OperationError, Status};
use crate::store::ListQuery;

impl Inner {
    pub(super) async fn sweep(self: Arc<Self>) {
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

    pub(super) async fn cancel_queued(&self) {
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
