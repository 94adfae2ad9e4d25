//! Operations in Postgres, shared by every replica: the store for more than one process.
//!
//! How it works, in the manner of the queues built on Postgres (Oban, River, graphile-worker):
//! - **claiming**: `UPDATE … WHERE id IN (SELECT … LIMIT n FOR UPDATE SKIP LOCKED)`, oldest
//!   first, as many as the dispatcher has free slots, so claimers on every replica take
//!   different rows without waiting on each other. A submission that finds a free slot here and
//!   nothing older ready is inserted already claimed, in the same statement: one row version
//!   and one statement fewer, and no other replica woken for it;
//! - **fencing**: every claim draws a new token from a sequence; heartbeats, progress and the
//!   result are written only where `lease_token` is still that token (held exactly while the
//!   operation runs, a constraint says), so a stale worker's writes change nothing;
//! - **submission**: one statement inserts, claims when it may, bounds the queue and keeps the
//!   idempotency key (`submission.rs`);
//! - **results** are written in batches (`endings.rs`);
//! - **notifications**: every change clients can see reaches the watchers in this process at
//!   once and the other processes by `NOTIFY` (`fanout/`), carrying the new state, which
//!   wakes their idle dispatchers and feeds what is watched there;
//! - **one sweeper at a time**: `expire` and the purges take a transaction-scoped advisory lock
//!   and skip their turn when another replica holds it.
//!
//! Connecting (two pools, the listener, the migrations) is `connection.rs`. Names are
//! unqualified: the tables live in the connection's current schema (`search_path`), and
//! the notification channel and advisory locks are named after that schema, so several services,
//! or parallel tests, can share one database.

mod connection;
mod endings;
mod fanout;
mod rows;
mod submission;

pub use connection::MIGRATOR;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgPool, PgRow};
use sqlx::{Executor as _, Row};
use time::OffsetDateTime;
use tokio::sync::watch;

use self::endings::Ending;
use self::fanout::{Fanout, fetch};
use self::rows::{OPERATION_COLUMNS, lease_from_row, malformed, operation_from_row};
use super::{Claim, Counts, Created, Lease, ListQuery, NewOperation, OperationStore, Page, PageToken, StoreError};
use crate::model::{Operation, OperationError, Outcome, Progress};

/// Rows deleted per statement when purging, so that retention never holds long locks.
const PURGE_BATCH: i64 = 1000;

pub struct PostgresStore {
    /// Commits wait for the WAL flush: what a client is told has happened survives a crash.
    pool: PgPool,
    /// Commits do not wait for the WAL flush (`synchronous_commit = off`): for writes whose loss
    /// in a database crash only repeats work, never loses or undoes what a client was told
    /// (claims, heartbeats, progress, notifications). A lost claim's worker finds its lease
    /// gone and its result refused; the operation runs again. Half the flushes per operation.
    relaxed: PgPool,
    fanout: Arc<Fanout>,
    /// Operations' ends, written in batches ([`endings`]).
    endings: tokio::sync::mpsc::UnboundedSender<Ending>,
    /// Key of the sweeper's advisory lock, from the schema's name.
    sweeper_lock: i64,
    /// The listener, notifier and resync tasks, stopped with the store.
    tasks: tokio::task::JoinHandle<()>,
}

impl PostgresStore {
    /// The operation a changing statement returned, handed to its watchers and announced.
    fn changed(&self, row: &PgRow) -> Result<Operation, StoreError> {
        let (operation, version) = operation_from_row(row)?;
        self.fanout.changed(&operation, version);
        Ok(operation)
    }

    /// Why a write that needed an unfinished operation changed nothing.
    async fn why_unchanged(&self, id: &str) -> StoreError {
        match fetch(&self.pool, id).await {
            Ok(Some(_)) => StoreError::AlreadyFinished,
            Ok(None) => StoreError::NotFound,
            Err(error) => error,
        }
    }

    /// Takes a running operation back to `queued` with `set` (`$3` is `not_before`, if given),
    /// fenced by the lease: new work for every replica.
    async fn requeue(
        &self,
        lease: &Lease,
        set: &str,
        not_before: Option<OffsetDateTime>,
    ) -> Result<Operation, StoreError> {
        let Some(token) = lease_token(lease) else { return Err(StoreError::LeaseLost) };
        let sql = returning(&format!(
            "UPDATE keel_operations SET status = 'queued', {set}, progress_percent = 0, progress_message = NULL,
               lease_token = NULL, lease_expires_at = NULL, version = version + 1
             WHERE id = $1 AND lease_token = $2 AND status = 'running'"
        ));
        let mut query = sqlx::query(&sql).bind(&lease.operation_id).bind(token);
        if let Some(not_before) = not_before {
            query = query.bind(not_before);
        }
        let row = query.fetch_optional(&self.pool).await.map_err(classify)?;
        let operation = self.changed(&row.ok_or(StoreError::LeaseLost)?)?;
        self.fanout.queued();
        Ok(operation)
    }

    /// Deletes the rows of `table` whose `time` column is before `cutoff`, [`PURGE_BATCH`] at a
    /// time, under the sweeper's lock, and returns their `key` column. The names are keel's own
    /// constants, never input.
    async fn purge(
        &self,
        table: &str,
        key: &str,
        time: &str,
        cutoff: OffsetDateTime,
    ) -> Result<Vec<String>, StoreError> {
        let sql = format!(
            "DELETE FROM {table} WHERE {key} IN (SELECT {key} FROM {table} WHERE {time} < $1 LIMIT $2) RETURNING {key}"
        );
        let mut purged = Vec::new();
        loop {
            let mut tx = self.pool.begin().await.map_err(classify)?;
            if !try_sweeper_lock(&mut tx, self.sweeper_lock).await? {
                return Ok(purged);
            }
            let batch: Vec<String> =
                sqlx::query_scalar(&sql).bind(cutoff).bind(PURGE_BATCH).fetch_all(&mut *tx).await.map_err(classify)?;
            tx.commit().await.map_err(classify)?;
            let short = (batch.len() as i64) < PURGE_BATCH;
            purged.extend(batch);
            if short {
                return Ok(purged);
            }
        }
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        self.tasks.abort();
    }
}

/// Sorts a driver error: connectivity is [`StoreError::Unavailable`] (a 503, worth a retry), the
/// rest [`StoreError::Backend`].
pub(crate) fn classify(error: sqlx::Error) -> StoreError {
    use sqlx::Error as E;
    let unavailable = match &error {
        E::Io(_) | E::Tls(_) | E::PoolTimedOut | E::PoolClosed | E::WorkerCrashed | E::Protocol(_) => true,
        // Class 08: connection exceptions; 57P0x: the server is shutting down or starting;
        // 53300: too many connections.
        E::Database(db) => {
            db.code().is_some_and(|code| code.starts_with("08") || code.starts_with("57P") || code == "53300")
        }
        _ => false,
    };
    if unavailable { StoreError::Unavailable(Arc::new(error)) } else { StoreError::Backend(Arc::new(error)) }
}

/// Tokens come from a `bigint` sequence; one that does not fit was never issued.
fn lease_token(lease: &Lease) -> Option<i64> {
    i64::try_from(lease.token).ok()
}

/// `statement`, returning the changed operations' columns.
fn returning(statement: &str) -> String {
    format!("{statement} RETURNING {OPERATION_COLUMNS}")
}

async fn try_sweeper_lock(tx: &mut sqlx::PgConnection, key: i64) -> Result<bool, StoreError> {
    sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)").bind(key).fetch_one(tx).await.map_err(classify)
}

#[async_trait]
impl OperationStore for PostgresStore {
    async fn create(&self, new: NewOperation, queue_capacity: usize) -> Result<Created, StoreError> {
        Ok(self.insert(new, queue_capacity, None).await?.0)
    }

    async fn create_claimed(
        &self,
        new: NewOperation,
        queue_capacity: usize,
        worker: &str,
        lease_ttl: Duration,
    ) -> Result<(Created, Option<Lease>), StoreError> {
        self.insert(new, queue_capacity, Some((worker, lease_ttl))).await
    }

    async fn get(&self, id: &str) -> Result<Option<Operation>, StoreError> {
        Ok(fetch(&self.pool, id).await?.map(|(operation, _)| operation))
    }

    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError> {
        let before = query.page_token.map_or(i64::MAX, |token| i64::try_from(token.0).unwrap_or(i64::MAX));
        let limit = i64::try_from(query.page_size).unwrap_or(i64::MAX - 1);
        let sql = format!(
            "SELECT {OPERATION_COLUMNS} FROM keel_operations
             WHERE seq < $1 AND ($2::text IS NULL OR status = $2) AND ($3::text IS NULL OR kind = $3)
               AND ($5::text IS NULL OR owner = $5)
             ORDER BY seq DESC LIMIT $4 + 1"
        );
        let rows = sqlx::query(&sql)
            .bind(before)
            .bind(query.status.map(|status| status.as_str()))
            .bind(query.kind.as_deref())
            .bind(limit)
            .bind(query.owner.as_deref())
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        let more = rows.len() > query.page_size;
        let mut operations = Vec::with_capacity(rows.len().min(query.page_size));
        let mut last_seq = None;
        for row in rows.iter().take(query.page_size) {
            operations.push(operation_from_row(row)?.0);
            last_seq = Some(row.try_get::<i64, _>("seq").map_err(classify)?);
        }
        let next_page_token = last_seq.filter(|_| more).and_then(|seq| u64::try_from(seq).ok()).map(PageToken);
        Ok(Page { operations, next_page_token })
    }

    async fn claim_many(&self, worker: &str, lease_ttl: Duration, max: usize) -> Result<Vec<Claim>, StoreError> {
        let now = OffsetDateTime::now_utc();
        let sql = returning(
            "UPDATE keel_operations SET status = 'running', started_at = $1, worker = $2,
               lease_token = nextval('keel_lease_tokens'), lease_expires_at = $3, attempt = attempt + 1,
               version = version + 1
             WHERE id IN (SELECT id FROM keel_operations
                          WHERE status = 'queued' AND (not_before IS NULL OR not_before <= $1)
                          ORDER BY seq LIMIT $4 FOR UPDATE SKIP LOCKED)",
        );
        let rows = sqlx::query(&sql)
            .bind(now)
            .bind(worker)
            .bind(now + lease_ttl)
            .bind(i64::try_from(max).unwrap_or(i64::MAX))
            .fetch_all(&self.relaxed)
            .await
            .map_err(classify)?;
        let mut claims = Vec::with_capacity(rows.len());
        for row in &rows {
            let seq: i64 = row.try_get("seq").map_err(classify)?;
            let operation = self.changed(row)?;
            let lease = lease_from_row(row, &operation.id)?.ok_or_else(|| malformed("a claim without a lease"))?;
            claims.push((seq, Claim { operation, lease }));
        }
        // RETURNING keeps no order: oldest first, as they were chosen.
        claims.sort_unstable_by_key(|(seq, _)| *seq);
        Ok(claims.into_iter().map(|(_, claim)| claim).collect())
    }

    async fn heartbeat(&self, lease: &Lease, lease_ttl: Duration) -> Result<(), StoreError> {
        let Some(token) = lease_token(lease) else { return Err(StoreError::LeaseLost) };
        let renewed = sqlx::query(
            "UPDATE keel_operations SET lease_expires_at = $3
             WHERE id = $1 AND lease_token = $2 AND status = 'running'",
        )
        .bind(&lease.operation_id)
        .bind(token)
        .bind(OffsetDateTime::now_utc() + lease_ttl)
        .execute(&self.relaxed)
        .await
        .map_err(classify)?;
        if renewed.rows_affected() == 0 {
            return Err(StoreError::LeaseLost);
        }
        Ok(())
    }

    async fn set_progress(&self, lease: &Lease, progress: Progress) -> Result<(), StoreError> {
        let Some(token) = lease_token(lease) else { return Err(StoreError::LeaseLost) };
        let sql = returning(
            "UPDATE keel_operations SET progress_percent = $3, progress_message = $4, version = version + 1
             WHERE id = $1 AND lease_token = $2 AND status = 'running'",
        );
        let row = sqlx::query(&sql)
            .bind(&lease.operation_id)
            .bind(token)
            .bind(i16::from(progress.percent))
            .bind(progress.message.as_deref())
            .fetch_optional(&self.relaxed)
            .await
            .map_err(classify)?;
        self.changed(&row.ok_or(StoreError::LeaseLost)?).map(|_| ())
    }

    async fn finish(&self, lease: &Lease, outcome: Outcome, last: Option<Progress>) -> Result<Operation, StoreError> {
        let Some(token) = lease_token(lease) else { return Err(StoreError::LeaseLost) };
        let (ending, written) = Ending::new(&lease.operation_id, token, &outcome, last)?;
        let stopped = || StoreError::Unavailable(Arc::new(std::io::Error::other("the store's writer has stopped")));
        self.endings.send(ending).map_err(|_| stopped())?;
        written.await.map_err(|_| stopped())?
    }

    async fn retry(&self, lease: &Lease, not_before: OffsetDateTime) -> Result<Operation, StoreError> {
        self.requeue(lease, "not_before = $3", Some(not_before)).await
    }

    async fn release(&self, lease: &Lease) -> Result<Operation, StoreError> {
        self.requeue(lease, "not_before = NULL, attempt = greatest(attempt - 1, 0)", None).await
    }

    async fn cancel(&self, id: &str, reason: OperationError) -> Result<Operation, StoreError> {
        let sql = returning(
            "UPDATE keel_operations SET status = 'canceled', error = $2, finished_at = $3,
               lease_token = NULL, lease_expires_at = NULL, version = version + 1
             WHERE id = $1 AND status IN ('queued', 'running')",
        );
        let row = sqlx::query(&sql)
            .bind(id)
            .bind(sqlx::types::Json(reason))
            .bind(OffsetDateTime::now_utc())
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        match row {
            Some(row) => self.changed(&row),
            None => Err(self.why_unchanged(id).await),
        }
    }

    async fn delete(&self, id: &str) -> Result<(), StoreError> {
        let deleted =
            sqlx::query("DELETE FROM keel_operations WHERE id = $1 AND status IN ('succeeded', 'failed', 'canceled')")
                .bind(id)
                .execute(&self.pool)
                .await
                .map_err(classify)?;
        if deleted.rows_affected() > 0 {
            self.fanout.deleted(id);
            return Ok(());
        }
        Err(match self.why_unchanged(id).await {
            StoreError::AlreadyFinished => StoreError::NotFinished,
            other => other,
        })
    }

    async fn expire(&self, now: OffsetDateTime) -> Result<Vec<Operation>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(classify)?;
        if !try_sweeper_lock(&mut tx, self.sweeper_lock).await? {
            return Ok(Vec::new());
        }
        // A lost worker's operation runs again while it has attempts and time left; past its
        // deadline it ends as any overdue operation does.
        let lost = returning(
            "UPDATE keel_operations SET
               status = CASE WHEN attempt < max_attempts AND deadline_at > $1 THEN 'queued' ELSE 'failed' END,
               error = CASE WHEN deadline_at <= $1 THEN $3
                            WHEN attempt < max_attempts THEN NULL ELSE $2 END,
               finished_at = CASE WHEN attempt < max_attempts AND deadline_at > $1 THEN NULL ELSE $1 END,
               progress_percent = 0, progress_message = NULL, not_before = NULL,
               lease_token = NULL, lease_expires_at = NULL, version = version + 1
             WHERE status = 'running' AND lease_expires_at < $1",
        );
        let overdue = returning(
            "UPDATE keel_operations SET status = 'failed', error = $2, finished_at = $1, version = version + 1
             WHERE status = 'queued' AND deadline_at < $1",
        );
        let deadline_exceeded = sqlx::types::Json(OperationError::deadline_exceeded());
        let mut rows = sqlx::query(&lost)
            .bind(now)
            .bind(sqlx::types::Json(OperationError::worker_lost()))
            .bind(&deadline_exceeded)
            .fetch_all(&mut *tx)
            .await
            .map_err(classify)?;
        rows.extend(
            sqlx::query(&overdue).bind(now).bind(&deadline_exceeded).fetch_all(&mut *tx).await.map_err(classify)?,
        );
        tx.commit().await.map_err(classify)?;
        let ended = rows.iter().map(|row| self.changed(row)).collect::<Result<Vec<_>, _>>()?;
        if ended.iter().any(|operation| !operation.done) {
            self.fanout.queued();
        }
        Ok(ended)
    }

    async fn purge_finished(&self, cutoff: OffsetDateTime) -> Result<usize, StoreError> {
        let ids = self.purge("keel_operations", "id", "finished_at", cutoff).await?;
        ids.iter().for_each(|id| self.fanout.forgotten(id));
        Ok(ids.len())
    }

    async fn purge_expired_keys(&self, now: OffsetDateTime) -> Result<usize, StoreError> {
        Ok(self.purge("keel_idempotency_keys", "key", "expires_at", now).await?.len())
    }

    async fn watch(&self, id: &str) -> Result<Option<watch::Receiver<Operation>>, StoreError> {
        self.fanout.watch(&self.pool, id).await
    }

    async fn counts(&self) -> Result<Counts, StoreError> {
        let (queued, running, finished): (i64, i64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE status = 'queued'), count(*) FILTER (WHERE status = 'running'),
                    count(*) FILTER (WHERE finished_at IS NOT NULL)
             FROM keel_operations",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(classify)?;
        let count = |n: i64| usize::try_from(n).unwrap_or(0);
        Ok(Counts { queued: count(queued), running: count(running), finished: count(finished) })
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.pool.execute("SELECT 1").await.map(|_| ()).map_err(classify)
    }

    fn is_shared(&self) -> bool {
        true
    }

    async fn work_queued(&self) {
        self.fanout.work.notified().await;
    }
}
