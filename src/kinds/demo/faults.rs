//! `fail`, `panic` and `flaky`: operations that go wrong on purpose, to see (and test) that a
//! failure is reported, a panic is contained without disturbing anything else, and a retryable
//! failure is retried.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use keel_operations::{OperationContext, OperationError, OperationKind, RetryPolicy};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FaultInput {
    /// Shown in the operation's error (for `fail`) or the server log (for `panic`).
    #[serde(default = "default_message")]
    #[schema(max_length = 1000, default = "failed on purpose")]
    pub message: String,
    /// Wait this long first, so the operation is seen `running`.
    #[serde(default)]
    #[schema(maximum = 600_000, default = 0)]
    pub after_ms: u64,
}

fn default_message() -> String {
    "failed on purpose".to_owned()
}

fn check(input: &FaultInput) -> Result<(), String> {
    if input.after_ms > 600_000 {
        return Err("`after_ms` must be at most 600000".to_owned());
    }
    // Characters, as JSON Schema's `maxLength` counts them.
    if input.message.chars().count() > 1000 {
        return Err("`message` must be at most 1000 characters".to_owned());
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

/// What `panic` would return: it never does.
#[derive(Debug, Serialize, ToSchema)]
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

/// Fails with a retryable error on its first `failures` attempts, then succeeds: retries seen
/// from outside. Its own retry policy (five attempts, quick backoff) shows how a kind sets one.
pub struct Flaky;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FlakyInput {
    /// Attempts that fail before one succeeds; 4 or fewer succeed within the policy.
    #[schema(maximum = 10)]
    pub failures: u32,
    /// Each attempt takes this long.
    #[serde(default)]
    #[schema(maximum = 60_000, default = 0)]
    pub ms: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FlakyOutput {
    /// The attempt that succeeded.
    pub attempt: u32,
}

impl OperationKind for Flaky {
    const NAME: &'static str = "flaky";
    const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
    const RETRY: RetryPolicy =
        RetryPolicy { max_attempts: 5, backoff: Duration::from_millis(100), max_backoff: Duration::from_secs(2) };
    type Input = FlakyInput;
    type Output = FlakyOutput;

    fn validate(&self, input: &FlakyInput) -> Result<(), String> {
        match (input.failures, input.ms) {
            (0..=10, 0..=60_000) => Ok(()),
            _ => Err("`failures` must be at most 10 and `ms` at most 60000".to_owned()),
        }
    }

    async fn run(&self, ctx: OperationContext, input: FlakyInput) -> Result<FlakyOutput, OperationError> {
        tokio::time::sleep(Duration::from_millis(input.ms)).await;
        if ctx.attempt() <= input.failures {
            return Err(OperationError::retryable(format!("attempt {} failed on purpose", ctx.attempt())));
        }
        Ok(FlakyOutput { attempt: ctx.attempt() })
    }
}
