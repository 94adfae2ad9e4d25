//! Rows of `keel_operations` to [`Operation`]s.

use std::sync::Arc;

use serde_json::Value;
use sqlx::Row;
use sqlx::postgres::PgRow;
use sqlx::types::Json;

use super::classify;
use crate::model::{Operation, OperationError, Progress, Status};
use crate::store::{Lease, StoreError};

/// The columns [`operation_from_row`] reads, plus those the store reads itself.
pub const OPERATION_COLUMNS: &str = "seq, id, kind, owner, status, input, progress_percent, progress_message, result, error, \
     created_at, started_at, finished_at, deadline_at, attempt, max_attempts, not_before, lease_token, version";

/// The operation in `row`, and its version.
pub fn operation_from_row(row: &PgRow) -> Result<(Operation, i64), StoreError> {
    let status: String = row.try_get("status").map_err(classify)?;
    let status: Status = status.parse().map_err(malformed)?;
    let percent: i16 = row.try_get("progress_percent").map_err(classify)?;
    let result: Option<Json<Value>> = row.try_get("result").map_err(classify)?;
    let error: Option<Json<OperationError>> = row.try_get("error").map_err(classify)?;
    let Json(input) = row.try_get::<Json<Value>, _>("input").map_err(classify)?;
    let operation = Operation {
        id: row.try_get("id").map_err(classify)?,
        kind: row.try_get("kind").map_err(classify)?,
        owner: Arc::from(row.try_get::<&str, _>("owner").map_err(classify)?),
        status,
        done: status.is_terminal(),
        input,
        progress: Progress {
            percent: u8::try_from(percent).unwrap_or(100).min(100),
            message: row.try_get("progress_message").map_err(classify)?,
        },
        result: result.map(|Json(value)| value),
        error: error.map(|Json(error)| error),
        created_at: row.try_get("created_at").map_err(classify)?,
        started_at: row.try_get("started_at").map_err(classify)?,
        finished_at: row.try_get("finished_at").map_err(classify)?,
        deadline_at: row.try_get("deadline_at").map_err(classify)?,
        attempt: count(row, "attempt")?,
        max_attempts: count(row, "max_attempts")?,
        not_before: row.try_get("not_before").map_err(classify)?,
    };
    Ok((operation, row.try_get("version").map_err(classify)?))
}

fn count(row: &PgRow, column: &str) -> Result<u32, StoreError> {
    let value: i32 = row.try_get(column).map_err(classify)?;
    Ok(u32::try_from(value).unwrap_or(0))
}

/// The lease `row` holds, if it is running: its token comes from a `bigint` sequence.
pub fn lease_from_row(row: &PgRow, operation_id: &str) -> Result<Option<Lease>, StoreError> {
    let token: Option<i64> = row.try_get("lease_token").map_err(classify)?;
    token
        .map(|token| {
            let token = u64::try_from(token).map_err(|error| StoreError::Backend(Arc::new(error)))?;
            Ok(Lease { operation_id: operation_id.to_owned(), token })
        })
        .transpose()
}

/// A row that breaks what the schema promises: a bug or a schema mismatch, not worth a retry.
pub fn malformed(what: impl Into<String>) -> StoreError {
    StoreError::Backend(Arc::from(Box::<dyn std::error::Error + Send + Sync>::from(what.into())))
}
