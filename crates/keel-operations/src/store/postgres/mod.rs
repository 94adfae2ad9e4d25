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
//! - **results** are written in batches ([`endings`]);
//! - **notifications**: every change clients can see reaches the watchers in this process at
//!   once and the other processes by `NOTIFY` ([`fanout`]), carrying the new state, which
//!   wakes their idle dispatchers and feeds what is watched there;
//! - **one sweeper at a time**: `expire` and the purges take a transaction-scoped advisory lock
//!   and skip their turn when another replica holds it.
//!
//! Names are unqualified: the tables live in the connection's current schema (`search_path`), and
//! the notification channel and advisory locks are named after that schema, so several services,
//! or parallel tests, can share one database.

mod endings;
mod fanout;
mod rows;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Connection as _, Executor as _, Row};
use time::OffsetDateTime;
use tokio::sync::watch;

use self::endings::Ending;
use self::fanout::{Fanout, fetch};
use self::rows::{OPERATION_COLUMNS, lease_from_row, malformed, operation_from_row};
use super::{Claim, Counts, Created, Lease, ListQuery, NewOperation, OperationStore, Page, PageToken, StoreError};
use crate::model::{Operation, OperationError, Outcome, Progress};
use keel_config::DatabaseSettings;

/// The embedded migrations (`migrations/`), applied by `keel migrate` or at start-up.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

/// A pooled connection idle this long is checked before use.
const IDLE_BEFORE_CHECK: Duration = Duration::from_secs(1);

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
    /// Connects with `settings` and, when `settings.migrate` is on, applies the migrations.
    pub async fn connect(settings: &DatabaseSettings) -> Result<Self, StoreError> {
        let url = settings.url.as_ref().map(|url| url.expose().as_str()).unwrap_or_default();
        let options = PgConnectOptions::from_str(url).map_err(|error| StoreError::Backend(Arc::new(error)))?;
        let store = Self::connect_with(options, settings).await?;
        if settings.migrate {
            store.migrate().await?;
        }
        Ok(store)
    }

    /// Connects with explicit options (tests point them at a schema of their own).
    pub async fn connect_with(options: PgConnectOptions, settings: &DatabaseSettings) -> Result<Self, StoreError> {
        // The connections are split by what waits on them. Submissions and ends hold theirs until
        // the commit is flushed, so their throughput grows with their pool; claims, heartbeats,
        // progress and notifications commit without the flush and are few and short. A quarter
        // (at least one) goes to those, which did markedly better than half and half
        // (docs/performance.md). The listener holds one of the flushed
        // pool's for as long as it listens, so that pool has at least two (configuration refuses
        // fewer than `DatabaseSettings::MIN_CONNECTIONS` in all).
        let relaxed_size = (settings.max_connections / 4).max(1);
        let flushed_size = settings.max_connections.saturating_sub(relaxed_size).max(2);
        // sqlx checks a connection with a round trip when it goes back to the pool, and by
        // default again when it is taken out: two round trips around every statement. Only a
        // connection that sat idle a while (across a database restart, say) is checked when
        // taken; under load that is none of them.
        let pool_options = |size: u32| {
            PgPoolOptions::new()
                .max_connections(size)
                .acquire_timeout(settings.connect_timeout())
                .test_before_acquire(false)
                .before_acquire(|connection, meta| {
                    Box::pin(async move {
                        if meta.idle_for >= IDLE_BEFORE_CHECK {
                            connection.ping().await?;
                        }
                        Ok(true)
                    })
                })
        };
        let relaxed =
            pool_options(relaxed_size).connect_lazy_with(options.clone().options([("synchronous_commit", "off")]));
        let pool = pool_options(flushed_size).connect_with(options).await.map_err(classify)?;
        let schema: String = sqlx::query_scalar("SELECT current_schema()").fetch_one(&pool).await.map_err(classify)?;
        let sweeper_lock: i64 = sqlx::query_scalar("SELECT hashtextextended('keel-sweeper:' || $1, 0)")
            .bind(&schema)
            .fetch_one(&pool)
            .await
            .map_err(classify)?;
        let (fanout, tasks) =
            Fanout::start(pool.clone(), relaxed.clone(), channel_for(&schema)).await.map_err(classify)?;
        // The writer stops by itself once the store, and with it the sender, is gone.
        let endings = endings::start(pool.clone(), Arc::clone(&fanout));
        Ok(Self { pool, relaxed, fanout, endings, sweeper_lock, tasks })
    }

    /// Applies the embedded migrations that are not applied yet. sqlx holds an advisory lock
    /// while it does, so replicas starting at once apply each migration once.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await.map_err(|error| match error {
            sqlx::migrate::MigrateError::Execute(error) => classify(error),
            other => StoreError::Backend(Arc::new(other)),
        })
    }

    /// Stores `new`: queued, or, with `claim_for` and when it may start at once (not scheduled,
    /// nothing older ready to start), running under a fresh lease for that worker, in the same
    /// statement.
    async fn insert(
        &self,
        new: NewOperation,
        queue_capacity: usize,
        claim_for: Option<(&str, Duration)>,
    ) -> Result<(Created, Option<Lease>), StoreError> {
        // The bound counts what is queued in the whole store. Concurrent submissions on several
        // replicas may each see the last free place, so it can be passed by as many submissions
        // as arrive at that same instant: a back-pressure limit, not an exact one. A claimed
        // submission is not queued, so the bound does not apply to it, and Postgres evaluates
        // the count only when it does (an InitPlan runs when first needed).
        let insert = returning(
            "INSERT INTO keel_operations (id, kind, status, input, created_at, deadline_at, max_attempts, not_before,
                                          owner, started_at, worker, lease_token, lease_expires_at, attempt)
             SELECT $1, $2, CASE WHEN start THEN 'running' ELSE 'queued' END, $3, $4, $5, $7, $8, $9,
                    CASE WHEN start THEN $10 END, CASE WHEN start THEN $11 END,
                    CASE WHEN start THEN nextval('keel_lease_tokens') END, CASE WHEN start THEN $12 END,
                    CASE WHEN start THEN 1 ELSE 0 END
             FROM (SELECT $11::text IS NOT NULL AND ($8::timestamptz IS NULL OR $8 <= $10)
                          AND NOT EXISTS (SELECT FROM keel_operations
                                          WHERE status = 'queued' AND (not_before IS NULL OR not_before <= $10))) AS d(start)
             WHERE start OR (SELECT count(*) FROM keel_operations WHERE status = 'queued') < $6",
        );
        let capacity = i64::try_from(queue_capacity).unwrap_or(i64::MAX);
        let now = OffsetDateTime::now_utc();
        let query = sqlx::query(&insert)
            .bind(&new.id)
            .bind(&new.kind)
            .bind(sqlx::types::Json(&new.input))
            .bind(new.created_at)
            .bind(new.deadline_at)
            .bind(capacity)
            .bind(i32::try_from(new.max_attempts).unwrap_or(i32::MAX))
            .bind(new.not_before)
            .bind(&*new.owner)
            .bind(now)
            .bind(claim_for.map(|(worker, _)| worker))
            .bind(claim_for.map(|(_, lease_ttl)| now + lease_ttl));
        let Some(idem) = &new.idempotency else {
            // Without a key, one statement.
            let row = query.fetch_optional(&self.pool).await.map_err(classify)?;
            return self.created(&row.ok_or(StoreError::QueueFull)?);
        };
        let mut tx = self.pool.begin().await.map_err(classify)?;
        // Takes the key when it is free or expired; when another submission holds it, waits for
        // that one to commit and then leaves the key as it is.
        let taken = sqlx::query(
            "INSERT INTO keel_idempotency_keys AS k (key, fingerprint, operation_id, expires_at)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (key) DO UPDATE
               SET fingerprint = EXCLUDED.fingerprint, operation_id = EXCLUDED.operation_id,
                   expires_at = EXCLUDED.expires_at
               WHERE k.expires_at <= $5",
        )
        .bind(&idem.key)
        .bind(&idem.fingerprint)
        .bind(&new.id)
        .bind(idem.expires_at)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        if taken.rows_affected() == 0 {
            let (fingerprint, operation_id, expires_at): (String, String, OffsetDateTime) = sqlx::query_as(
                "SELECT fingerprint, operation_id, expires_at FROM keel_idempotency_keys WHERE key = $1",
            )
            .bind(&idem.key)
            .fetch_one(&mut *tx)
            .await
            .map_err(classify)?;
            tx.rollback().await.map_err(classify)?;
            if fingerprint != idem.fingerprint {
                return Err(StoreError::IdempotencyKeyMismatch);
            }
            return match fetch(&self.pool, &operation_id).await? {
                Some((operation, _)) => Ok((Created::Existing(operation), None)),
                None => Err(StoreError::IdempotencyKeySpent { operation_id, expires_at }),
            };
        }
        let Some(row) = query.fetch_optional(&mut *tx).await.map_err(classify)? else {
            tx.rollback().await.map_err(classify)?;
            return Err(StoreError::QueueFull);
        };
        tx.commit().await.map_err(classify)?;
        self.created(&row)
    }

    /// The operation an insert returned, and its lease if it was claimed. A queued one may
    /// wake other replicas; a claimed one concerns nobody else yet.
    fn created(&self, row: &PgRow) -> Result<(Created, Option<Lease>), StoreError> {
        let (operation, version) = operation_from_row(row)?;
        let lease = lease_from_row(row, &operation.id)?;
        match lease {
            Some(_) => self.fanout.started(&operation, version),
            None => self.fanout.created(&operation, version),
        }
        Ok((Created::New(operation), lease))
    }

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

/// The notification channel of the operations in `schema`: `keel_operations_<schema>` when that
/// fits the 63 bytes of a Postgres identifier (`pg_notify` refuses a longer channel, and `LISTEN`
/// cuts it short), otherwise the start of that name and a hash of all of it, the same in every
/// replica and different for every schema.
fn channel_for(schema: &str) -> String {
    const MAX_IDENTIFIER_BYTES: usize = 63;
    let name = format!("keel_operations_{schema}");
    if name.len() <= MAX_IDENTIFIER_BYTES {
        return name;
    }
    use sha2::Digest;
    let hash: String = sha2::Sha256::digest(name.as_bytes())[..8].iter().map(|byte| format!("{byte:02x}")).collect();
    let mut cut = MAX_IDENTIFIER_BYTES - hash.len() - 1;
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}_{hash}", &name[..cut])
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_channel_name_always_fits_a_postgres_identifier() {
        assert_eq!(super::channel_for("public"), "keel_operations_public", "readable when it fits");
        let long = "billing_service_test_0123456789abcdef0123456789abcdef";
        let channel = super::channel_for(long);
        assert!(channel.len() <= 63, "{channel}");
        assert_eq!(channel, super::channel_for(long), "the same in every replica");
        assert_ne!(channel, super::channel_for(&format!("{long}x")), "and another for another schema");
        assert!(super::channel_for(&"é".repeat(40)).len() <= 63);
    }
}
