//! `fail` and `panic`: operations that go wrong on purpose, to see (and test) that a failure
//! is reported and a panic is contained without disturbing anything else.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::operations::{OperationContext, OperationError, OperationKind};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultInput {
    /// Shown in the operation's error (for `fail`) or the server log (for `panic`).
    #[serde(default = "default_message")]
    pub message: String,
    /// Wait this long first, so the operation is seen `running`.
    #[serde(default)]
    pub after_ms: u64,
}

fn default_message() -> String {
    "failed on purpose".to_owned()
}

fn check(input: &FaultInput) -> Result<(), String> {
    if input.after_ms > 600_000 {
        return Err("`after_ms` must be at most 600000".to_owned());
    }
    if input.message.len() > 1000 {
        return Err("`message` must be at most 1000 bytes".to_owned());
    }
    Ok(())
}

/// Ends `failed` with the given message.
pub struct Fail;

impl OperationKind for Fail {
    const NAME: &'static str = "fail";
    const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
    type Input = FaultInput;
    type Output = ();

    fn validate(&self, input: &FaultInput) -> Result<(), String> {
        check(input)
    }

    async fn run(&self, _ctx: OperationContext, input: FaultInput) -> Result<(), OperationError> {
        tokio::time::sleep(Duration::from_millis(input.after_ms)).await;
        Err(OperationError::failed(input.message))
    }
}

/// Panics; the executor reports it `failed` with an internal error.
pub struct Panic;

#[derive(Debug, Serialize)]
pub struct Never;

impl OperationKind for Panic {
    const NAME: &'static str = "panic";
    const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
    type Input = FaultInput;
    type Output = Never;

    fn validate(&self, input: &FaultInput) -> Result<(), String> {
        check(input)
    }

    async fn run(&self, _ctx: OperationContext, input: FaultInput) -> Result<Never, OperationError> {
        tokio::time::sleep(Duration::from_millis(input.after_ms)).await;
        panic!("{}", input.message);
    }
}
