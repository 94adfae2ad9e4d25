//! What an operation is, as clients see it (Google AIP-151, in plain REST).

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Queued,
    Running,
    Succeeded,
    Failed,
    /// Spelled as Azure's API guidelines spell it, so that generic pollers (azure-core's
    /// `LROBasePolling`) know it as a terminal status.
    Canceled,
}

impl Status {
    pub const ALL: [Status; 5] = [Self::Queued, Self::Running, Self::Succeeded, Self::Failed, Self::Canceled];

    /// A terminal status never changes again.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Canceled)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Canceled => "canceled",
        }
    }
}

impl std::str::FromStr for Status {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|status| status.as_str() == s).ok_or_else(|| {
            format!("unknown status {s:?}; expected one of queued, running, succeeded, failed, cancelled")
        })
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Progress {
    /// 0 to 100.
    #[schema(maximum = 100)]
    pub percent: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Why an operation failed or was cancelled; shaped like a problem-details object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OperationError {
    /// A stable slug clients may match on, e.g. `deadline-exceeded`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Whether another attempt may succeed (a timeout upstream, a lost connection). The executor
    /// queues the operation again while its kind's retry policy and its deadline allow; a
    /// permanent error ends it at once. Not part of the wire format.
    #[serde(skip)]
    pub retryable: bool,
}

impl OperationError {
    pub fn new(kind: impl Into<String>, title: impl Into<String>, detail: impl Into<Option<String>>) -> Self {
        Self { kind: kind.into(), title: title.into(), detail: detail.into(), retryable: false }
    }

    /// The operation's own code reported failure, for good: no other attempt is made.
    pub fn failed(detail: impl Into<String>) -> Self {
        Self::new("operation-failed", "The operation failed", Some(detail.into()))
    }

    /// The operation's own code reported a failure another attempt may not meet: it is queued
    /// again (see [`crate::RetryPolicy`]), and ends `failed` with this error only
    /// when no attempt is left.
    pub fn retryable(detail: impl Into<String>) -> Self {
        Self { retryable: true, ..Self::failed(detail) }
    }

    pub fn deadline_exceeded() -> Self {
        Self::new("deadline-exceeded", "The operation passed its deadline", None)
    }

    pub fn cancelled_by_client() -> Self {
        Self::new("canceled", "The operation was canceled", Some("canceled at the client's request".to_owned()))
    }

    pub fn shutdown() -> Self {
        Self::new("shutdown", "The operation was canceled", Some("the server shut down before it finished".to_owned()))
    }

    /// The worker running it vanished (its lease expired without a heartbeat).
    pub fn worker_lost() -> Self {
        Self::new(
            "worker-lost",
            "The operation was abandoned",
            Some("the worker running it stopped responding".to_owned()),
        )
    }

    /// A panic or another failure on our side; the detail is in the server's logs, not here.
    pub fn internal() -> Self {
        Self::new(
            "internal",
            "Internal error",
            Some("the operation failed unexpectedly; see the server logs".to_owned()),
        )
    }
}

/// How a run ended, as the worker reports it.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Succeeded(Value),
    Failed(OperationError),
    Cancelled(OperationError),
}

impl Outcome {
    pub fn status(&self) -> Status {
        match self {
            Self::Succeeded(_) => Status::Succeeded,
            Self::Failed(_) => Status::Failed,
            Self::Cancelled(_) => Status::Canceled,
        }
    }
}

/// A long-running operation, as clients see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "id": "9f1c2e4b6a8d4c0e9b7a5f3d1e2c4b6a", "kind": "sleep", "owner": "billing", "status": "running", "done": false,
    "input": {"ms": 3000, "steps": 3}, "progress": {"percent": 33, "message": "step 1 of 3"},
    "result": null, "error": null, "created_at": "2026-11-24T00:04:16.317536757Z",
    "started_at": "2026-11-24T00:04:16.318004934Z", "finished_at": null,
    "deadline_at": "2026-11-24T00:05:16.317536757Z", "attempt": 1, "max_attempts": 3, "not_before": null
}))]
pub struct Operation {
    /// 128 random bits, hex-encoded.
    pub id: String,
    pub kind: String,
    /// The caller that submitted it: its API key's id or its token's subject, or `anonymous`
    /// with auth off. Only its owner (and a caller with `operations:admin`) sees it. Shared with
    /// the caller's own id and with its other operations, not copied for each.
    #[serde(default = "anonymous")]
    #[schema(value_type = String, required = true)]
    pub owner: Arc<str>,
    pub status: Status,
    /// Whether `status` is terminal (`succeeded`, `failed`, `cancelled`). Kept as a field so that
    /// one derive gives both the wire format and its schema; only [`Operation::finish`] sets it.
    pub done: bool,
    /// The input as submitted.
    #[schema(value_type = Object)]
    pub input: Value,
    #[serde(default)]
    #[schema(required = true)]
    pub progress: Progress,
    /// Set when the operation succeeded.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
    /// Set when the operation failed or was cancelled.
    #[serde(default)]
    pub error: Option<OperationError>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub started_at: Option<OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
    /// Past this instant the operation is stopped and fails with `deadline-exceeded`.
    #[serde(with = "time::serde::rfc3339")]
    pub deadline_at: OffsetDateTime,
    /// Which attempt is running or ran last: 0 until the first starts. An operation runs again
    /// when its code reports a retryable error or its replica dies while running it, so its
    /// code may run more than once (at least once, never twice at the same time).
    #[serde(default)]
    #[schema(required = true)]
    pub attempt: u32,
    /// The attempts its kind's retry policy allows.
    #[serde(default = "one")]
    #[schema(minimum = 1, required = true)]
    pub max_attempts: u32,
    /// A queued operation starts no earlier than this: the submission's `not_before`, or the
    /// backoff before a retry.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub not_before: Option<OffsetDateTime>,
}

fn one() -> u32 {
    1
}

fn anonymous() -> Arc<str> {
    Arc::from(ANONYMOUS)
}

/// The owner of what is submitted with auth off, and of every operation stored before owners
/// were recorded.
pub const ANONYMOUS: &str = "anonymous";

impl Operation {
    /// Moves to the terminal state of `outcome`. Callers check that the operation is not
    /// terminal yet; a terminal state never changes.
    pub fn finish(&mut self, outcome: Outcome, at: OffsetDateTime) {
        debug_assert!(!self.done, "a terminal state never changes");
        self.status = outcome.status();
        self.done = true;
        self.finished_at = Some(at);
        match outcome {
            Outcome::Succeeded(result) => {
                self.progress.percent = 100;
                self.result = Some(result);
            }
            Outcome::Failed(error) | Outcome::Cancelled(error) => self.error = Some(error),
        }
    }
}
