//! The submission's statement: an operation inserted queued, or already claimed by the replica
//! that accepts it when it may start at once, within the queue's bound and with its
//! idempotency key, in one round trip.

use std::time::Duration;

use sqlx::postgres::PgRow;
use time::OffsetDateTime;

use super::fanout::fetch;
use super::rows::{lease_from_row, operation_from_row};
use super::{PostgresStore, classify, returning};
use crate::store::{Created, Lease, NewOperation, StoreError};

impl PostgresStore {
    /// Stores `new`: queued, or, with `claim_for` and when it may start at once (not scheduled,
    /// nothing older ready to start), running under a fresh lease for that worker, in the same
    /// statement.
    pub(super) async fn insert(
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
}
