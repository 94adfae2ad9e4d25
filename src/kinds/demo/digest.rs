//! `digest`: CPU-bound hashing on the bounded blocking pool, Tornado's `run_in_executor`. The
//! work runs in chunks: between chunks it checks the cancellation token (blocking code cannot
//! `.await` it), and reports each new percent of progress from the blocking thread itself
//! (`ctx.progress` never blocks: the executor records the latest report).

use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use keel_operations::{OperationContext, OperationError, OperationKind};

pub struct Digest;

/// Rounds between two looks at the cancellation token: well under a millisecond of work.
const CHUNK: u64 = 65_536;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DigestInput {
    /// Rounds of hashing; a million takes a few tens of milliseconds.
    #[schema(minimum = 1, maximum = 10_000_000_000_u64)]
    pub rounds: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DigestOutput {
    pub rounds: u64,
    /// The final hash, in hex.
    pub digest: String,
}

impl OperationKind for Digest {
    const NAME: &'static str = "digest";
    const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
    type Input = DigestInput;
    type Output = DigestOutput;

    fn validate(&self, input: &DigestInput) -> Result<(), String> {
        if !(1..=10_000_000_000).contains(&input.rounds) {
            return Err("`rounds` must be between 1 and 10000000000".to_owned());
        }
        Ok(())
    }

    async fn run(&self, ctx: OperationContext, input: DigestInput) -> Result<DigestOutput, OperationError> {
        let rounds = input.rounds;
        let reporter = ctx.clone();
        let outcome = ctx.blocking().run(move || {
            let mut state = 0u64;
            let mut reported = 0;
            let mut done = 0;
            while done < rounds {
                if reporter.is_cancelled() {
                    return None;
                }
                let chunk = CHUNK.min(rounds - done);
                for _ in 0..chunk {
                    let mut hasher = DefaultHasher::new();
                    state.hash(&mut hasher);
                    state = hasher.finish();
                }
                done += chunk;
                let percent = (u128::from(done) * 100 / u128::from(rounds)) as u8;
                if percent > reported {
                    reported = percent;
                    reporter.progress(percent, "hashing");
                }
            }
            Some(state)
        });
        match outcome.await {
            Ok(Some(state)) => Ok(DigestOutput { rounds, digest: format!("{state:016x}") }),
            Ok(None) => Err(OperationError::cancelled_by_client()),
            Err(error) => Err(OperationError::failed(error.to_string())),
        }
    }
}
