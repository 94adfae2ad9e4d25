//! What a submission is, and how one becomes a new operation for the store: its kind found and
//! its input checked, its deadline and schedule computed, and its idempotency key scoped to its
//! caller and bound to a fingerprint of the request.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::{Executor, OperationsError};
use crate::store::{Idempotency, NewOperation};

/// A request to run an operation.
#[derive(Debug, Clone)]
pub struct Submission {
    /// Who submits it: the operation's owner, whose idempotency keys are its own.
    pub owner: std::sync::Arc<str>,
    pub kind: String,
    pub input: Value,
    pub timeout: Option<Duration>,
    pub idempotency_key: Option<String>,
    /// Start no earlier than this; the deadline counts from then.
    pub not_before: Option<OffsetDateTime>,
}

/// How far ahead a submission may be scheduled.
pub const MAX_SCHEDULE_AHEAD: Duration = Duration::from_secs(366 * 24 * 3600);

impl Executor {
    pub(super) fn prepare(&self, submission: Submission) -> Result<NewOperation, OperationsError> {
        let Submission { owner, kind: name, input, timeout, idempotency_key, not_before } = submission;
        let kind = self.inner.registry.get(&name).ok_or_else(|| OperationsError::UnknownKind(name.clone()))?;
        kind.check(&input).map_err(OperationsError::InvalidInput)?;
        let max = self.inner.settings.max_timeout;
        let timeout = timeout.unwrap_or_else(|| kind.default_timeout().min(max));
        if timeout > max {
            return Err(OperationsError::TimeoutTooLong { requested_ms: timeout.as_millis(), max_ms: max.as_millis() });
        }
        let now = OffsetDateTime::now_utc();
        // A time already past means "now"; the deadline counts from the start it asks for.
        let not_before = not_before.filter(|at| *at > now);
        let starts = not_before.unwrap_or(now);
        if starts - now > MAX_SCHEDULE_AHEAD {
            return Err(OperationsError::ScheduledTooFar);
        }
        // Keys are per caller: two callers may use one key. Neither an owner nor a key has a
        // space (both are visible ASCII), so the pair is unambiguous.
        let idempotency = idempotency_key.map(|key| Idempotency {
            key: format!("{owner} {key}"),
            fingerprint: fingerprint(&name, &input, timeout, not_before),
            expires_at: now + self.inner.settings.idempotency_key_ttl,
        });
        Ok(NewOperation {
            id: uuid::Uuid::new_v4().simple().to_string(),
            kind: name,
            owner,
            input,
            created_at: now,
            deadline_at: time::Duration::try_from(timeout).ok().and_then(|timeout| starts.checked_add(timeout)).ok_or(
                OperationsError::TimeoutTooLong { requested_ms: timeout.as_millis(), max_ms: max.as_millis() },
            )?,
            idempotency,
            max_attempts: kind.retry_policy().max_attempts.max(1),
            not_before,
        })
    }
}

/// What makes two submissions the same request: SHA-256 of kind, input, timeout and
/// `not_before`, so a key's record stays small however large the input (serde_json sorts object
/// keys, so equal requests hash alike).
fn fingerprint(kind: &str, input: &Value, timeout: Duration, not_before: Option<OffsetDateTime>) -> String {
    let not_before = not_before.map(|at| at.unix_timestamp_nanos().to_string());
    let request = serde_json::json!([kind, input, timeout.as_millis() as u64, not_before]).to_string();
    let digest = Sha256::digest(request.as_bytes());
    digest.iter().fold(String::with_capacity(64), |mut hex, byte| {
        let _ = write!(hex, "{byte:02x}");
        hex
    })
}
