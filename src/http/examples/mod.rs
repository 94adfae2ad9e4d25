//! `/examples/*`: request-scoped async patterns, each the tokio answer to a Tornado construct.
//! Delete this folder and its line in `http/mod.rs` to drop them.
//!
//! | endpoint | Tornado | tokio |
//! |---|---|---|
//! | `fanout` | `yield gen.multi([...])` | `futures::future::join_all` |
//! | `blocking` | `IOLoop.run_in_executor` | `spawn_blocking`, bounded by [`BlockingPool`](crate::blocking::BlockingPool) |
//! | `sleep` | `yield gen.sleep(...)` | `tokio::time::sleep`, dropped by the request timeout |

use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use futures_util::future::join_all;
use serde::{Deserialize, Serialize};

use crate::http::error::ApiError;
use crate::http::extract::Query;
use crate::http::state::AppState;

pub const MAX_FANOUT: u32 = 100;
pub const MAX_FANOUT_MS: u64 = 10_000;
pub const MAX_PRIME_LIMIT: usize = 5_000_000;
pub const MAX_SLEEP_MS: u64 = 600_000;

pub fn routes() -> Router<AppState> {
    Router::new().route("/fanout", get(fanout)).route("/blocking", get(blocking)).route("/sleep", get(sleep))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FanoutParams {
    n: u32,
    ms: u64,
}

#[derive(Debug, Serialize)]
struct FanoutResponse {
    results: Vec<String>,
    elapsed_ms: u128,
}

/// `n` sub-operations of `ms` each, concurrently: the whole takes about `ms`, not `n × ms`.
async fn fanout(Query(params): Query<FanoutParams>) -> Result<axum::Json<FanoutResponse>, ApiError> {
    if !(1..=MAX_FANOUT).contains(&params.n) || params.ms > MAX_FANOUT_MS {
        return Err(ApiError::InvalidRequest(format!(
            "`n` must be 1 to {MAX_FANOUT} and `ms` at most {MAX_FANOUT_MS}"
        )));
    }
    let started = Instant::now();
    let results = join_all((0..params.n).map(|i| async move {
        tokio::time::sleep(Duration::from_millis(params.ms)).await;
        format!("sub-operation {i} done")
    }))
    .await;
    Ok(axum::Json(FanoutResponse { results, elapsed_ms: started.elapsed().as_millis() }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BlockingParams {
    limit: usize,
}

#[derive(Debug, Serialize)]
struct BlockingResponse {
    limit: usize,
    primes_below_limit: usize,
    elapsed_ms: u128,
}

/// Counts primes below `limit` on the blocking pool, never on the async workers.
async fn blocking(
    State(state): State<AppState>,
    Query(params): Query<BlockingParams>,
) -> Result<axum::Json<BlockingResponse>, ApiError> {
    if !(2..=MAX_PRIME_LIMIT).contains(&params.limit) {
        return Err(ApiError::InvalidRequest(format!("`limit` must be 2 to {MAX_PRIME_LIMIT}")));
    }
    let started = Instant::now();
    let limit = params.limit;
    let primes =
        state.blocking.run(move || count_primes_below(limit)).await.map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(axum::Json(BlockingResponse { limit, primes_below_limit: primes, elapsed_ms: started.elapsed().as_millis() }))
}

/// The sieve of Eratosthenes: honest CPU work with a known answer.
fn count_primes_below(limit: usize) -> usize {
    let mut composite = vec![false; limit];
    let mut count = 0;
    for n in 2..limit {
        if !composite[n] {
            count += 1;
            for multiple in (n * n..limit).step_by(n) {
                composite[multiple] = true;
            }
        }
    }
    count
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SleepParams {
    ms: u64,
}

#[derive(Debug, Serialize)]
struct SleepResponse {
    slept_ms: u64,
}

/// Waits `ms`, then answers. Beyond the request timeout the client gets 503 and the wait is
/// dropped with the handler's future.
async fn sleep(Query(params): Query<SleepParams>) -> Result<axum::Json<SleepResponse>, ApiError> {
    if params.ms > MAX_SLEEP_MS {
        return Err(ApiError::InvalidRequest(format!("`ms` must be at most {MAX_SLEEP_MS}")));
    }
    tokio::time::sleep(Duration::from_millis(params.ms)).await;
    Ok(axum::Json(SleepResponse { slept_ms: params.ms }))
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_primes() {
        assert_eq!(super::count_primes_below(2), 0);
        assert_eq!(super::count_primes_below(100), 25);
        assert_eq!(super::count_primes_below(1_000_000), 78_498);
    }
}
