//! `digest`: CPU-bound hashing on the bounded blocking pool, Tornado's `run_in_executor`. The
//! work runs in chunks: between chunks it checks the cancellation token (blocking code cannot
//! `.await` it), and each new percent of progress goes back to the runtime through a channel.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::operations::{OperationContext, OperationError, OperationKind};

pub struct Digest;

/// Rounds between two looks at the cancellation token: well under a millisecond of work.
const CHUNK: u64 = 65_536;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DigestInput {
    /// Rounds of hashing; a million takes a few tens of milliseconds.
    pub rounds: u64,
}

#[derive(Debug, Serialize)]
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
        let (progress_tx, mut progress_rx) = mpsc::unbounded_channel::<u8>();
        let token = ctx.cancellation_token().clone();
        let rounds = input.rounds;
        let job = ctx.blocking().run(move || {
            let mut state = 0u64;
            let mut reported = 0;
            let mut done = 0;
            while done < rounds {
                if token.is_cancelled() {
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
                    let _ = progress_tx.send(percent);
                }
            }
            Some(state)
        });
        tokio::pin!(job);
        loop {
            tokio::select! {
                outcome = &mut job => {
                    return match outcome {
                        Ok(Some(state)) => Ok(DigestOutput { rounds, digest: format!("{state:016x}") }),
                        Ok(None) => Err(OperationError::cancelled_by_client()),
                        Err(error) => Err(OperationError::failed(error.to_string())),
                    };
                }
                Some(percent) = progress_rx.recv() => ctx.progress(percent, "hashing").await,
            }
        }
    }
}
