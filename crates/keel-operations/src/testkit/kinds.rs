//! Operation kinds for tests: small, deterministic, named and shaped like the demo kinds a
//! service starts with (`sleep`, `fail`, `panic`, `flaky`), plus `whoami`. Tests of the executor,
//! of a store or of the HTTP surface submit these, so they keep passing when a service deletes
//! its demo kinds.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{OperationContext, OperationError, OperationKind, Registry, RetryPolicy};

/// Every kind here.
pub fn registry() -> Registry {
    Registry::new().register(Sleep).register(Goes::<false>).register(Goes::<true>).register(Flaky).register(Whoami)
}

/// Waits `ms` in `steps`, reporting progress after each; ends as soon as it is cancelled.
pub struct Sleep;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Nap {
    ms: u64,
    #[serde(default = "one")]
    steps: u32,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Slept {
    slept_ms: u64,
    steps: u32,
}

impl OperationKind for Sleep {
    const NAME: &'static str = "sleep";
    const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
    type Input = Nap;
    type Output = Slept;

    fn validate(&self, nap: &Nap) -> Result<(), String> {
        let fits = nap.ms <= 3_600_000 && (1..=1000).contains(&nap.steps);
        fits.then_some(()).ok_or_else(|| "`ms` must be at most 3600000 and `steps` 1 to 1000".to_owned())
    }

    async fn run(&self, ctx: OperationContext, nap: Nap) -> Result<Slept, OperationError> {
        let step = Duration::from_millis(nap.ms) / nap.steps;
        for done in 1..=nap.steps {
            tokio::select! {
                () = tokio::time::sleep(step) => ctx.progress((done * 100 / nap.steps) as u8, format!("step {done}")),
                () = ctx.cancelled() => return Err(OperationError::cancelled_by_client()),
            }
        }
        Ok(Slept { slept_ms: nap.ms, steps: nap.steps })
    }
}

/// `fail` and `panic` take a message and an optional wait first (to be seen `running`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Trouble {
    #[serde(default)]
    message: String,
    #[serde(default)]
    after_ms: u64,
}

/// After its wait, `fail` (`Goes<false>`) ends `failed` with the message; `panic`
/// (`Goes<true>`) panics with it.
pub struct Goes<const PANICS: bool>;

impl<const PANICS: bool> OperationKind for Goes<PANICS> {
    const NAME: &'static str = if PANICS { "panic" } else { "fail" };
    const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
    type Input = Trouble;
    type Output = ();

    fn validate(&self, trouble: &Trouble) -> Result<(), String> {
        (trouble.after_ms <= 600_000).then_some(()).ok_or_else(|| "`after_ms` must be at most 600000".to_owned())
    }

    async fn run(&self, _ctx: OperationContext, trouble: Trouble) -> Result<(), OperationError> {
        tokio::time::sleep(Duration::from_millis(trouble.after_ms)).await;
        assert!(!PANICS, "{}", trouble.message);
        Err(OperationError::failed(trouble.message))
    }
}

/// Fails with a retryable error on its first `failures` attempts, then succeeds; five attempts.
pub struct Flaky;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Flakiness {
    failures: u32,
    #[serde(default)]
    ms: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Succeeded {
    attempt: u32,
}

impl OperationKind for Flaky {
    const NAME: &'static str = "flaky";
    const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
    const RETRY: RetryPolicy =
        RetryPolicy { max_attempts: 5, backoff: Duration::from_millis(100), max_backoff: Duration::from_secs(2) };
    type Input = Flakiness;
    type Output = Succeeded;

    fn validate(&self, flakiness: &Flakiness) -> Result<(), String> {
        let fits = flakiness.failures <= 10 && flakiness.ms <= 60_000;
        fits.then_some(()).ok_or_else(|| "`failures` must be at most 10 and `ms` at most 60000".to_owned())
    }

    async fn run(&self, ctx: OperationContext, flakiness: Flakiness) -> Result<Succeeded, OperationError> {
        tokio::time::sleep(Duration::from_millis(flakiness.ms)).await;
        match ctx.attempt() {
            attempt if attempt <= flakiness.failures => {
                Err(OperationError::retryable(format!("attempt {attempt} failed on purpose")))
            }
            attempt => Ok(Succeeded { attempt }),
        }
    }
}

/// Answers with the caller that submitted it, as its context gives it.
pub struct Whoami;

#[derive(Debug, Serialize, ToSchema)]
pub struct Submitter {
    owner: String,
}

/// `whoami` takes no input: an empty object, or none.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Nothing {}

impl OperationKind for Whoami {
    const NAME: &'static str = "whoami";
    const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
    type Input = Nothing;
    type Output = Submitter;

    async fn run(&self, ctx: OperationContext, _input: Nothing) -> Result<Submitter, OperationError> {
        Ok(Submitter { owner: ctx.owner().to_owned() })
    }
}
