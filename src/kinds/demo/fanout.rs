//! `fanout`: `n` sub-tasks that each take `ms`, run concurrently, with progress as each
//! completes. Tornado's `gen.multi` is `join_all`; its `WaitIterator` (results in completion
//! order) is `FuturesUnordered`, used here so progress moves as soon as any sub-task ends.

use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use keel_operations::{OperationContext, OperationError, OperationKind};

pub struct Fanout;

pub const MAX_SUBTASKS: u32 = 1000;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FanoutInput {
    /// Sub-tasks to run concurrently.
    #[schema(minimum = 1, maximum = 1000)]
    pub n: u32,
    /// The longest a sub-task sleeps, in milliseconds.
    #[schema(maximum = 600_000)]
    pub ms: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FanoutOutput {
    /// Sub-task indexes in the order they completed.
    pub completion_order: Vec<u32>,
}

impl OperationKind for Fanout {
    const NAME: &'static str = "fanout";
    const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
    type Input = FanoutInput;
    type Output = FanoutOutput;

    fn validate(&self, input: &FanoutInput) -> Result<(), String> {
        if !(1..=MAX_SUBTASKS).contains(&input.n) {
            return Err(format!("`n` must be between 1 and {MAX_SUBTASKS}"));
        }
        if input.ms > 600_000 {
            return Err("`ms` must be at most 600000".to_owned());
        }
        Ok(())
    }

    async fn run(&self, ctx: OperationContext, input: FanoutInput) -> Result<FanoutOutput, OperationError> {
        // Staggered a little, so completion order is visible.
        let mut pending: FuturesUnordered<_> = (0..input.n)
            .map(|i| async move {
                tokio::time::sleep(Duration::from_millis(input.ms) + Duration::from_micros(u64::from(i))).await;
                i
            })
            .collect();
        let mut completion_order = Vec::with_capacity(input.n as usize);
        loop {
            let next = tokio::select! {
                next = pending.next() => next,
                () = ctx.cancelled() => return Err(OperationError::cancelled_by_client()),
            };
            let Some(index) = next else { break };
            completion_order.push(index);
            let percent = (completion_order.len() * 100 / input.n as usize) as u8;
            ctx.progress(percent, format!("{} of {} sub-tasks done", completion_order.len(), input.n));
        }
        Ok(FanoutOutput { completion_order })
    }
}
