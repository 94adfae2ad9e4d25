//! What an operation is, as clients see it (Google AIP-151, in plain REST).

use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;
use time::OffsetDateTime;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl Status {
    pub const ALL: [Status; 5] = [Self::Queued, Self::Running, Self::Succeeded, Self::Failed, Self::Cancelled];

    /// A terminal status never changes again.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
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

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// 0 to 100.
    pub percent: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Why an operation failed or was cancelled; shaped like a problem-details object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperationError {
    /// A stable slug clients may match on, e.g. `deadline-exceeded`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl OperationError {
    pub fn new(kind: impl Into<String>, title: impl Into<String>, detail: impl Into<Option<String>>) -> Self {
        Self { kind: kind.into(), title: title.into(), detail: detail.into() }
    }

    /// The operation's own code reported failure.
    pub fn failed(detail: impl Into<String>) -> Self {
        Self::new("operation-failed", "The operation failed", Some(detail.into()))
    }

    pub fn deadline_exceeded() -> Self {
        Self::new("deadline-exceeded", "The operation passed its deadline", None)
    }

    pub fn cancelled_by_client() -> Self {
        Self::new("cancelled", "The operation was cancelled", Some("cancelled at the client's request".to_owned()))
    }

    pub fn shutdown() -> Self {
        Self::new("shutdown", "The operation was cancelled", Some("the server shut down before it finished".to_owned()))
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
            Self::Cancelled(_) => Status::Cancelled,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Operation {
    pub id: String,
    pub kind: String,
    pub status: Status,
    pub input: Value,
    #[serde(default)]
    pub progress: Progress,
    #[serde(default)]
    pub result: Option<Value>,
    #[serde(default)]
    pub error: Option<OperationError>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub started_at: Option<OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub deadline_at: OffsetDateTime,
}

impl Operation {
    pub fn done(&self) -> bool {
        self.status.is_terminal()
    }

    /// Moves to the terminal state of `outcome`. Callers check that the operation is not
    /// terminal yet; a terminal state never changes.
    pub fn finish(&mut self, outcome: Outcome, at: OffsetDateTime) {
        debug_assert!(!self.done(), "a terminal state never changes");
        self.status = outcome.status();
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

/// `done` is derived from `status`, so it is written out rather than stored.
impl Serialize for Operation {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let rfc3339 = |t: &OffsetDateTime| {
            t.format(&time::format_description::well_known::Rfc3339).map_err(serde::ser::Error::custom)
        };
        let optional = |t: &Option<OffsetDateTime>| t.as_ref().map(rfc3339).transpose();
        let mut s = serializer.serialize_struct("Operation", 12)?;
        s.serialize_field("id", &self.id)?;
        s.serialize_field("kind", &self.kind)?;
        s.serialize_field("status", &self.status)?;
        s.serialize_field("done", &self.done())?;
        s.serialize_field("input", &self.input)?;
        s.serialize_field("progress", &self.progress)?;
        s.serialize_field("result", &self.result)?;
        s.serialize_field("error", &self.error)?;
        s.serialize_field("created_at", &rfc3339(&self.created_at)?)?;
        s.serialize_field("started_at", &optional(&self.started_at)?)?;
        s.serialize_field("finished_at", &optional(&self.finished_at)?)?;
        s.serialize_field("deadline_at", &rfc3339(&self.deadline_at)?)?;
        s.end()
    }
}
