//! `sleep`: waits `ms` in `steps`, reporting progress at each step and stopping at any step when
//! cancelled. Tornado's `yield gen.sleep(...)` in a loop, with `select!` for cancellation.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use keel_operations::{OperationContext, OperationError, OperationKind};

pub struct Sleep;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SleepInput {
    /// Total time to sleep, in milliseconds.
    #[schema(maximum = 3_600_000)]
    pub ms: u64,
    /// How many progress reports to make along the way.
    #[serde(default = "one_step")]
    #[schema(minimum = 1, maximum = 1000, default = 1)]
    pub steps: u32,
}

fn one_step() -> u32 {
    1
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SleepOutput {
    pub slept_ms: u64,
    pub steps: u32,
}

impl OperationKind for Sleep {
    const NAME: &'static str = "sleep";
    const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
    type Input = SleepInput;
    type Output = SleepOutput;

    fn validate(&self, input: &SleepInput) -> Result<(), String> {
        if input.ms > 3_600_000 {
            return Err("`ms` must be at most 3600000 (one hour)".to_owned());
        }
        if !(1..=1000).contains(&input.steps) {
            return Err("`steps` must be between 1 and 1000".to_owned());
        }
        Ok(())
    }

    async fn run(&self, ctx: OperationContext, input: SleepInput) -> Result<SleepOutput, OperationError> {
        let step = Duration::from_millis(input.ms) / input.steps;
        for done in 1..=input.steps {
            tokio::select! {
                () = tokio::time::sleep(step) => {}
                () = ctx.cancelled() => return Err(OperationError::cancelled_by_client()),
            }
            let percent = (u64::from(done) * 100 / u64::from(input.steps)) as u8;
            ctx.progress(percent, format!("step {done} of {}", input.steps));
        }
        Ok(SleepOutput { slept_ms: input.ms, steps: input.steps })
    }
}
