//! Operations in Postgres, shared by every replica: the store for more than one process.
//!
//! How it works, in the manner of the queues built on Postgres (Oban, River, graphile-worker):
//! - **claiming**: `UPDATE … WHERE id = (SELECT … FOR UPDATE SKIP LOCKED LIMIT 1)`, oldest first,
//!   so claimers on every replica take different rows without waiting on each other;
//! - **fencing**: every claim draws a new token from a sequence; heartbeats, progress and the
//!   result are written only `WHERE lease_token = $token AND status = 'running'`, so a stale
//!   worker's writes change nothing;
//! - **notifications**: every change clients can see sends `NOTIFY` in the same statement (it is
//!   delivered when the change commits). One listening connection per process ([`listener`])
//!   wakes the idle dispatcher for new work and refreshes the operations someone here watches;
//! - **one sweeper at a time**: `expire` and the purges take a transaction-scoped advisory lock
//!   and skip their turn when another replica holds it.
//!
//! Names are unqualified: the tables live in the connection's current schema (`search_path`), and
//! the notification channel and advisory locks are named after that schema, so several services,
//! or parallel tests, can share one database.

mod listener;
mod rows;

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Executor as _, Row};
use time::OffsetDateTime;
use tokio::sync::{Notify, watch};

use self::rows::{OPERATION_COLUMNS, operation_from_row};
use super::{Claim, Counts, Created, Lease, ListQuery, NewOperation, OperationStore, Page, PageToken, StoreError};
use crate::config::DatabaseSettings;
use crate::operations::model::{Operation, OperationError, Outcome, Progress};

/// The embedded migrations (`migrations/`), applied by `keel migrate` or at start-up.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

/// Rows deleted per statement when purging, so that retention never holds long locks.
const PURGE_BATCH: i64 = 1000;

pub struct PostgresStore {
    pool: PgPool,
    shared: Arc<Shared>,
    listener: tokio::task::JoinHandle<()>,
}

/// What the store and its listener task both hold.
struct Shared {
    /// `keel_operations_<schema>`: this schema's notification channel.
    channel: String,
    /// Key of the sweeper's advisory lock, from the schema's name.
    sweeper_lock: i64,
    watched: Mutex<HashMap<String, Watched>>,
    /// Pulsed when another process may have queued work.
    work: Notify,
}

/// One operation someone in this process watches, and the version of the state they hold.
struct Watched {
    sender: watch::Sender<Operation>,
    version: i64,
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
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(settings.connect_timeout())
            .connect_with(options)
            .await
            .map_err(classify)?;
        let schema: String = sqlx::query_scalar("SELECT current_schema()").fetch_one(&pool).await.map_err(classify)?;
        let sweeper_lock: i64 = sqlx::query_scalar("SELECT hashtextextended('keel-sweeper:' || $1, 0)")
            .bind(&schema)
            .fetch_one(&pool)
            .await
            .map_err(classify)?;
        let shared = Arc::new(Shared {
            channel: format!("keel_operations_{schema}"),
            sweeper_lock,
            watched: Mutex::new(HashMap::new()),
            work: Notify::new(),
        });
        let listener = listener::start(pool.clone(), Arc::clone(&shared)).await.map_err(classify)?;
        Ok(Self { pool, shared, listener })
    }

    /// Applies the embedded migrations that are not applied yet. sqlx holds an advisory lock
    /// while it does, so replicas starting at once apply each migration once.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await.map_err(|error| match error {
            sqlx::migrate::MigrateError::Execute(error) => classify(error),
            other => StoreError::Backend(Arc::new(other)),
        })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn fetch(&self, id: &str) -> Result<Option<(Operation, i64)>, StoreError> {
        fetch(&self.pool, id).await
    }

    /// Why a fenced write changed nothing: the caller learns `NotFound` or `AlreadyFinished`.
    async fn why_unchanged(&self, id: &str) -> StoreError {
        match self.fetch(id).await {
            Ok(Some(_)) => StoreError::AlreadyFinished,
            Ok(None) => StoreError::NotFound,
            Err(error) => error,
        }
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

/// Reads `id` again and hands it to its watchers here, if any; drops them if it is gone.
async fn refresh(pool: &PgPool, shared: &Shared, id: &str) -> Result<(), StoreError> {
    if !lock(&shared.watched).contains_key(id) {
        return Ok(());
    }
    let current = fetch(pool, id).await?;
    let mut watched = lock(&shared.watched);
    match current {
        Some((operation, version)) => {
            if let Some(entry) = watched.get_mut(id) {
                entry.publish(operation, version);
            }
        }
        None => {
            watched.remove(id);
        }
    }
    Ok(())
}

async fn fetch(pool: &PgPool, id: &str) -> Result<Option<(Operation, i64)>, StoreError> {
    let sql = format!("SELECT {OPERATION_COLUMNS} FROM keel_operations WHERE id = $1");
    let row = sqlx::query(&sql).bind(id).fetch_optional(pool).await.map_err(classify)?;
    row.map(|row| operation_from_row(&row)).transpose()
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

fn lease_token(lease: &Lease) -> Option<i64> {
    i64::try_from(lease.token).ok()
}

/// `SELECT` list of a statement that changed operations: the rows, each announced on the channel.
fn announced(cte: &str) -> String {
    format!(
        "WITH changed AS ({cte} RETURNING {OPERATION_COLUMNS}) SELECT changed.*, pg_notify($1, 'c' || changed.id) FROM changed"
    )
}

#[async_trait]
impl OperationStore for PostgresStore {
    async fn create(&self, new: NewOperation, queue_capacity: usize) -> Result<Created, StoreError> {
        let mut tx = self.pool.begin().await.map_err(classify)?;
        if let Some(idem) = &new.idempotency {
            let now = OffsetDateTime::now_utc();
            // Takes the key when it is free or expired; when another submission holds it, waits
            // for that one to commit and then leaves the key as it is.
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
                let used = sqlx::query(
                    "SELECT fingerprint, operation_id, expires_at FROM keel_idempotency_keys WHERE key = $1",
                )
                .bind(&idem.key)
                .fetch_one(&mut *tx)
                .await
                .map_err(classify)?;
                let fingerprint: String = used.try_get("fingerprint").map_err(classify)?;
                let operation_id: String = used.try_get("operation_id").map_err(classify)?;
                let expires_at: OffsetDateTime = used.try_get("expires_at").map_err(classify)?;
                tx.rollback().await.map_err(classify)?;
                if fingerprint != idem.fingerprint {
                    return Err(StoreError::IdempotencyKeyMismatch);
                }
                return match self.fetch(&operation_id).await? {
                    Some((operation, _)) => Ok(Created::Existing(operation)),
                    None => Err(StoreError::IdempotencyKeySpent { operation_id, expires_at }),
                };
            }
        }
        // The bound counts what is queued in the whole store. Concurrent submissions on several
        // replicas may each see the last free place, so it can be passed by as many submissions
        // as arrive at that same instant: a back-pressure limit, not an exact one.
        let sql = format!(
            "WITH created AS (
               INSERT INTO keel_operations (id, kind, status, input, created_at, deadline_at, max_attempts, not_before)
               SELECT $2, $3, 'queued', $4, $5, $6, $8, $9
               WHERE (SELECT count(*) FROM keel_operations WHERE status = 'queued') < $7
               RETURNING {OPERATION_COLUMNS})
             SELECT created.*, pg_notify($1, 'q') FROM created"
        );
        let capacity = i64::try_from(queue_capacity).unwrap_or(i64::MAX);
        let row = sqlx::query(&sql)
            .bind(&self.shared.channel)
            .bind(&new.id)
            .bind(&new.kind)
            .bind(sqlx::types::Json(&new.input))
            .bind(new.created_at)
            .bind(new.deadline_at)
            .bind(capacity)
            .bind(i32::try_from(new.max_attempts).unwrap_or(i32::MAX))
            .bind(new.not_before)
            .fetch_optional(&mut *tx)
            .await
            .map_err(classify)?;
        let Some(row) = row else {
            tx.rollback().await.map_err(classify)?;
            return Err(StoreError::QueueFull);
        };
        let (operation, _) = operation_from_row(&row)?;
        tx.commit().await.map_err(classify)?;
        Ok(Created::New(operation))
    }

    async fn get(&self, id: &str) -> Result<Option<Operation>, StoreError> {
        Ok(self.fetch(id).await?.map(|(operation, _)| operation))
    }

    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError> {
        let before = query.page_token.map_or(i64::MAX, |token| i64::try_from(token.0).unwrap_or(i64::MAX));
        let limit = i64::try_from(query.page_size).unwrap_or(i64::MAX - 1);
        let sql = format!(
            "SELECT {OPERATION_COLUMNS} FROM keel_operations
             WHERE seq < $1 AND ($2::text IS NULL OR status = $2) AND ($3::text IS NULL OR kind = $3)
             ORDER BY seq DESC LIMIT $4 + 1"
        );
        let rows = sqlx::query(&sql)
            .bind(before)
            .bind(query.status.map(|status| status.as_str()))
            .bind(query.kind.as_deref())
            .bind(limit)
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

    async fn claim(&self, worker: &str, lease_ttl: Duration) -> Result<Option<Claim>, StoreError> {
        let now = OffsetDateTime::now_utc();
        let sql = announced(
            "UPDATE keel_operations SET status = 'running', started_at = $2, worker = $3,
               lease_token = nextval('keel_lease_tokens'), lease_expires_at = $4, attempt = attempt + 1,
               version = version + 1
             WHERE id = (SELECT id FROM keel_operations
                         WHERE status = 'queued' AND (not_before IS NULL OR not_before <= $2)
                         ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED)",
        );
        let row = sqlx::query(&sql)
            .bind(&self.shared.channel)
            .bind(now)
            .bind(worker)
            .bind(now + lease_ttl)
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        let Some(row) = row else { return Ok(None) };
        let (operation, _) = operation_from_row(&row)?;
        let token: i64 = row.try_get("lease_token").map_err(classify)?;
        let token = u64::try_from(token).map_err(|error| StoreError::Backend(Arc::new(error)))?;
        let lease = Lease { operation_id: operation.id.clone(), token };
        Ok(Some(Claim { operation, lease }))
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
        .execute(&self.pool)
        .await
        .map_err(classify)?;
        if renewed.rows_affected() == 0 {
            return Err(StoreError::LeaseLost);
        }
        Ok(())
    }

    async fn set_progress(&self, lease: &Lease, progress: Progress) -> Result<(), StoreError> {
        let Some(token) = lease_token(lease) else { return Err(StoreError::LeaseLost) };
        let sql = announced(
            "UPDATE keel_operations SET progress_percent = $4, progress_message = $5, version = version + 1
             WHERE id = $2 AND lease_token = $3 AND status = 'running'",
        );
        let row = sqlx::query(&sql)
            .bind(&self.shared.channel)
            .bind(&lease.operation_id)
            .bind(token)
            .bind(i16::from(progress.percent))
            .bind(progress.message.as_deref())
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        row.map(|_| ()).ok_or(StoreError::LeaseLost)
    }

    async fn finish(&self, lease: &Lease, outcome: Outcome) -> Result<Operation, StoreError> {
        let Some(token) = lease_token(lease) else { return Err(StoreError::LeaseLost) };
        let status = outcome.status();
        let (result, error) = match outcome {
            Outcome::Succeeded(value) => (Some(value), None),
            Outcome::Failed(error) | Outcome::Cancelled(error) => (None, Some(error)),
        };
        let sql = announced(
            "UPDATE keel_operations SET status = $4, result = $5, error = $6, finished_at = $7,
               progress_percent = CASE WHEN $4 = 'succeeded' THEN 100 ELSE progress_percent END,
               lease_token = NULL, lease_expires_at = NULL, version = version + 1
             WHERE id = $2 AND lease_token = $3 AND status = 'running'",
        );
        let row = sqlx::query(&sql)
            .bind(&self.shared.channel)
            .bind(&lease.operation_id)
            .bind(token)
            .bind(status.as_str())
            .bind(result.map(sqlx::types::Json))
            .bind(error.map(sqlx::types::Json))
            .bind(OffsetDateTime::now_utc())
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        let row = row.ok_or(StoreError::LeaseLost)?;
        Ok(operation_from_row(&row)?.0)
    }

    async fn retry(&self, lease: &Lease, not_before: OffsetDateTime) -> Result<Operation, StoreError> {
        self.requeue(lease, "not_before = $4", Some(not_before)).await
    }

    async fn release(&self, lease: &Lease) -> Result<Operation, StoreError> {
        self.requeue(lease, "not_before = NULL, attempt = greatest(attempt - 1, 0)", None).await
    }

    async fn cancel(&self, id: &str, reason: OperationError) -> Result<Operation, StoreError> {
        let sql = announced(
            "UPDATE keel_operations SET status = 'cancelled', error = $3, finished_at = $4,
               lease_token = NULL, lease_expires_at = NULL, version = version + 1
             WHERE id = $2 AND status IN ('queued', 'running')",
        );
        let row = sqlx::query(&sql)
            .bind(&self.shared.channel)
            .bind(id)
            .bind(sqlx::types::Json(reason))
            .bind(OffsetDateTime::now_utc())
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        match row {
            Some(row) => Ok(operation_from_row(&row)?.0),
            None => Err(self.why_unchanged(id).await),
        }
    }

    async fn delete(&self, id: &str) -> Result<(), StoreError> {
        let deleted = sqlx::query(
            "WITH gone AS (DELETE FROM keel_operations
                           WHERE id = $2 AND status IN ('succeeded', 'failed', 'cancelled') RETURNING id)
             SELECT pg_notify($1, 'd' || gone.id) FROM gone",
        )
        .bind(&self.shared.channel)
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(classify)?;
        if deleted.is_some() {
            return Ok(());
        }
        Err(match self.why_unchanged(id).await {
            StoreError::AlreadyFinished => StoreError::NotFinished,
            other => other,
        })
    }

    async fn expire(&self, now: OffsetDateTime) -> Result<Vec<Operation>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(classify)?;
        if !try_sweeper_lock(&mut tx, self.shared.sweeper_lock).await? {
            return Ok(Vec::new());
        }
        // A lost worker's operation runs again while it has attempts and time left.
        let lost = announced(
            "UPDATE keel_operations SET
               status = CASE WHEN attempt < max_attempts AND deadline_at > $2 THEN 'queued' ELSE 'failed' END,
               error = CASE WHEN attempt < max_attempts AND deadline_at > $2 THEN NULL ELSE $3 END,
               finished_at = CASE WHEN attempt < max_attempts AND deadline_at > $2 THEN NULL ELSE $2 END,
               progress_percent = 0, progress_message = NULL, not_before = NULL,
               lease_token = NULL, lease_expires_at = NULL, version = version + 1
             WHERE status = 'running' AND lease_expires_at < $2",
        );
        let overdue = announced(
            "UPDATE keel_operations SET status = 'failed', error = $3, finished_at = $2, version = version + 1
             WHERE status = 'queued' AND deadline_at < $2",
        );
        let mut ended = Vec::new();
        for (sql, error) in [(lost, OperationError::worker_lost()), (overdue, OperationError::deadline_exceeded())] {
            let rows = sqlx::query(&sql)
                .bind(&self.shared.channel)
                .bind(now)
                .bind(sqlx::types::Json(error))
                .fetch_all(&mut *tx)
                .await
                .map_err(classify)?;
            for row in &rows {
                ended.push(operation_from_row(row)?.0);
            }
        }
        if ended.iter().any(|operation| !operation.done) {
            // Operations queued again: work for every replica.
            sqlx::query("SELECT pg_notify($1, 'q')")
                .bind(&self.shared.channel)
                .execute(&mut *tx)
                .await
                .map_err(classify)?;
        }
        tx.commit().await.map_err(classify)?;
        Ok(ended)
    }

    async fn purge_finished(&self, cutoff: OffsetDateTime) -> Result<usize, StoreError> {
        // Watchers here and on other replicas hear of each removal, as of a `DELETE`.
        self.purge(
            "WITH gone AS (DELETE FROM keel_operations WHERE id IN
               (SELECT id FROM keel_operations WHERE finished_at < $1 LIMIT $2) RETURNING id),
             told AS (SELECT pg_notify($3, 'd' || gone.id) FROM gone)
             SELECT count(*) FROM told",
            cutoff,
            Some(&self.shared.channel),
        )
        .await
    }

    async fn purge_expired_keys(&self, now: OffsetDateTime) -> Result<usize, StoreError> {
        self.purge(
            "WITH gone AS (DELETE FROM keel_idempotency_keys WHERE key IN
               (SELECT key FROM keel_idempotency_keys WHERE expires_at < $1 LIMIT $2) RETURNING key)
             SELECT count(*) FROM gone",
            now,
            None,
        )
        .await
    }

    async fn watch(&self, id: &str) -> Result<Option<watch::Receiver<Operation>>, StoreError> {
        if let Some(watched) = lock(&self.shared.watched).get(id) {
            return Ok(Some(watched.sender.subscribe()));
        }
        let Some((operation, version)) = self.fetch(id).await? else { return Ok(None) };
        let receiver = {
            let mut watched = lock(&self.shared.watched);
            // Entries nobody reads any more go here, and when their operation changes.
            watched.retain(|_, entry| entry.sender.receiver_count() > 0);
            let entry = watched
                .entry(id.to_owned())
                .or_insert_with(|| Watched { sender: watch::channel(operation.clone()).0, version });
            entry.publish(operation, version);
            entry.sender.subscribe()
        };
        // A change committed between the read above and the registration was announced before
        // anyone here listened for it: read once more now that the listener will refresh it.
        refresh(&self.pool, &self.shared, id).await?;
        Ok(Some(receiver))
    }

    async fn counts(&self) -> Result<Counts, StoreError> {
        let row = sqlx::query(
            "SELECT count(*) FILTER (WHERE status = 'queued') AS queued,
                    count(*) FILTER (WHERE status = 'running') AS running,
                    count(*) FILTER (WHERE finished_at IS NOT NULL) AS finished
             FROM keel_operations",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(classify)?;
        let count = |name: &str| -> Result<usize, StoreError> {
            let n: i64 = row.try_get(name).map_err(classify)?;
            Ok(usize::try_from(n).unwrap_or(0))
        };
        Ok(Counts { queued: count("queued")?, running: count("running")?, finished: count("finished")? })
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.pool.execute("SELECT 1").await.map(|_| ()).map_err(classify)
    }

    fn is_shared(&self) -> bool {
        true
    }

    async fn work_queued(&self) {
        self.shared.work.notified().await;
    }
}

impl PostgresStore {
    /// Takes a running operation back to `queued` with `set` (`$4` is `not_before`, if given),
    /// fenced by the lease, and announces it: new work for every replica.
    async fn requeue(
        &self,
        lease: &Lease,
        set: &str,
        not_before: Option<OffsetDateTime>,
    ) -> Result<Operation, StoreError> {
        let Some(token) = lease_token(lease) else { return Err(StoreError::LeaseLost) };
        let sql = format!(
            "WITH changed AS (
               UPDATE keel_operations SET status = 'queued', {set}, progress_percent = 0, progress_message = NULL,
                 lease_token = NULL, lease_expires_at = NULL, version = version + 1
               WHERE id = $2 AND lease_token = $3 AND status = 'running'
               RETURNING {OPERATION_COLUMNS})
             SELECT changed.*, pg_notify($1, 'c' || changed.id), pg_notify($1, 'q') FROM changed"
        );
        let mut query = sqlx::query(&sql).bind(&self.shared.channel).bind(&lease.operation_id).bind(token);
        if let Some(not_before) = not_before {
            query = query.bind(not_before);
        }
        let row = query.fetch_optional(&self.pool).await.map_err(classify)?;
        let row = row.ok_or(StoreError::LeaseLost)?;
        Ok(operation_from_row(&row)?.0)
    }

    /// Runs a batched `DELETE` (`$1` the cutoff, `$2` the batch size, `$3` the channel if given)
    /// until a batch comes back short, under the sweeper's lock.
    async fn purge(&self, sql: &str, cutoff: OffsetDateTime, channel: Option<&str>) -> Result<usize, StoreError> {
        let mut purged = 0;
        loop {
            let mut tx = self.pool.begin().await.map_err(classify)?;
            if !try_sweeper_lock(&mut tx, self.shared.sweeper_lock).await? {
                return Ok(purged);
            }
            let mut query = sqlx::query_scalar(sql).bind(cutoff).bind(PURGE_BATCH);
            if let Some(channel) = channel {
                query = query.bind(channel);
            }
            let batch: i64 = query.fetch_one(&mut *tx).await.map_err(classify)?;
            tx.commit().await.map_err(classify)?;
            purged += usize::try_from(batch).unwrap_or(0);
            if batch < PURGE_BATCH {
                return Ok(purged);
            }
        }
    }
}

async fn try_sweeper_lock(tx: &mut sqlx::PgConnection, key: i64) -> Result<bool, StoreError> {
    sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)").bind(key).fetch_one(tx).await.map_err(classify)
}

impl Watched {
    /// Hands `operation` to the watchers unless they hold a newer version already: reads that
    /// race each other may come back out of order.
    fn publish(&mut self, operation: Operation, version: i64) {
        if version < self.version {
            return;
        }
        self.version = version;
        self.sender.send_if_modified(|current| {
            let changed = *current != operation;
            *current = operation;
            changed
        });
    }
}

/// The guarded map holds plain data that no panic can leave half-changed.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
