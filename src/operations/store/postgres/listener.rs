//! One `LISTEN` connection per process, fanned out in-process: it wakes the idle dispatcher when
//! work is queued anywhere, and refreshes the operations that waiters and event streams here
//! watch when any replica changes them. No waiting client polls the table.
//!
//! Notifications can be lost (the connection drops; Postgres restarts). After a reconnect, and
//! once a second in any case, everything watched here is read again in one query and the
//! dispatcher is woken, so a lost notification costs at most a second.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgListener, PgPool};

use super::{OPERATION_COLUMNS, Shared, classify, lock, operation_from_row, refresh};
use crate::operations::store::StoreError;

/// How often everything watched here is read again, should a notification have been lost.
const RESYNC_INTERVAL: Duration = Duration::from_secs(1);

/// Listens on the store's channel, then serves notifications until the task is aborted.
pub(super) async fn start(pool: PgPool, shared: Arc<Shared>) -> Result<tokio::task::JoinHandle<()>, sqlx::Error> {
    let mut listener = PgListener::connect_with(&pool).await?;
    listener.listen(&shared.channel).await?;
    Ok(tokio::spawn(async move {
        let resync = tokio::spawn(resync_every(pool.clone(), Arc::clone(&shared)));
        serve(listener, pool, shared).await;
        resync.abort();
    }))
}

async fn serve(mut listener: PgListener, pool: PgPool, shared: Arc<Shared>) {
    loop {
        match listener.try_recv().await {
            Ok(Some(notification)) => {
                let payload = notification.payload();
                let (event, id) = payload.split_at(payload.len().min(1));
                match event {
                    "q" => shared.work.notify_one(),
                    "c" => {
                        if let Err(error) = refresh(&pool, &shared, id).await {
                            tracing::warn!(%error, operation_id = id, "could not refresh a watched operation");
                        }
                    }
                    "d" => {
                        lock(&shared.watched).remove(id);
                    }
                    _ => tracing::debug!(payload, "unknown notification"),
                }
            }
            // The connection was lost; the next call reconnects and listens again. What was
            // announced meanwhile is read again now.
            Ok(None) => {
                tracing::warn!("operation notifications: connection lost, reconnecting");
                resync(&pool, &shared).await.ok();
            }
            Err(error) => {
                tracing::warn!(error = %classify(error), "operation notifications: listening failed; retrying in a second");
                tokio::time::sleep(RESYNC_INTERVAL).await;
                resync(&pool, &shared).await.ok();
            }
        }
    }
}

async fn resync_every(pool: PgPool, shared: Arc<Shared>) {
    let mut ticks = tokio::time::interval(RESYNC_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if let Err(error) = resync(&pool, &shared).await {
            tracing::debug!(%error, "could not resynchronise watched operations");
        }
    }
}

/// Reads every watched operation in one query, drops watches of deleted ones, wakes the
/// dispatcher.
async fn resync(pool: &PgPool, shared: &Shared) -> Result<(), StoreError> {
    shared.work.notify_one();
    let ids: Vec<String> = {
        let mut watched = lock(&shared.watched);
        watched.retain(|_, entry| entry.sender.receiver_count() > 0);
        watched.keys().cloned().collect()
    };
    if ids.is_empty() {
        return Ok(());
    }
    let sql = format!("SELECT {OPERATION_COLUMNS} FROM keel_operations WHERE id = ANY($1)");
    let rows = sqlx::query(&sql).bind(&ids).fetch_all(pool).await.map_err(classify)?;
    let mut current = Vec::with_capacity(rows.len());
    for row in &rows {
        current.push(operation_from_row(row)?);
    }
    let mut watched = lock(&shared.watched);
    for id in &ids {
        if !current.iter().any(|(operation, _)| operation.id == *id) {
            watched.remove(id);
        }
    }
    for (operation, version) in current {
        if let Some(entry) = watched.get_mut(&operation.id) {
            entry.publish(operation, version);
        }
    }
    Ok(())
}
