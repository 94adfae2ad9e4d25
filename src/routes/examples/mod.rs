//! `/examples/*`: request-scoped async patterns, each the tokio answer to a Tornado construct.
//! docs/guides/remove-the-examples.md drops them: this folder, its lines in `routes/mod.rs` and
//! `tests/service/examples.rs` with its line in `tests/service/main.rs`.
//!
//! | endpoint | Tornado | tokio |
//! |---|---|---|
//! | `fanout` | `yield gen.multi([...])` | `futures::future::join_all` |
//! | `blocking` | `IOLoop.run_in_executor` | `spawn_blocking`, bounded by [`BlockingPool`](keel_operations::blocking::BlockingPool) |
//! | `sleep` | `yield gen.sleep(...)` | `tokio::time::sleep`, dropped by the request timeout |

use std::time::{Duration, Instant};

use axum::extract::State;
use futures_util::future::join_all;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use keel_http::error::{ApiError, Problem};
use keel_http::extract::Query;
use keel_http::state::AppState;

pub const MAX_FANOUT: u32 = 100;
pub const MAX_FANOUT_MS: u64 = 5_000;
pub const MAX_PRIME_LIMIT: usize = 5_000_000;
pub const MAX_SLEEP_MS: u64 = 600_000;

/// The examples' tag, declared here so that it goes when this folder goes.
#[derive(OpenApi)]
#[openapi(tags((name = "examples", description = "Request-scoped async patterns (`src/routes/examples/`)")))]
struct ExamplesDoc;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ExamplesDoc::openapi())
        .routes(routes!(fanout))
        .routes(routes!(blocking))
        .routes(routes!(sleep))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct FanoutParams {
    /// Sub-operations to run at once.
    #[param(minimum = 1, maximum = 100)]
    n: u32,
    /// How long each takes, in milliseconds.
    #[param(maximum = 5000)]
    ms: u64,
}

#[derive(Debug, Serialize, ToSchema)]
struct FanoutResponse {
    results: Vec<String>,
    elapsed_ms: u128,
}

/// `n` sub-operations of `ms` each, concurrently: the whole takes about `ms`, not `n × ms`.
#[utoipa::path(get, path = "/fanout", tag = "examples", params(FanoutParams), responses(
    (status = 200, description = "Every sub-operation's result and the elapsed time", body = FanoutResponse),
    (status = 400, description = "`n` or `ms` out of range", body = Problem, content_type = "application/problem+json"),
))]
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

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct BlockingParams {
    /// Count the primes below this.
    #[param(minimum = 2, maximum = 5000000)]
    limit: usize,
}

#[derive(Debug, Serialize, ToSchema)]
struct BlockingResponse {
    limit: usize,
    primes_below_limit: usize,
    elapsed_ms: u128,
}

/// Counts primes below `limit` on the blocking pool, never on the async workers.
#[utoipa::path(get, path = "/blocking", tag = "examples", params(BlockingParams), responses(
    (status = 200, description = "The count and the elapsed time", body = BlockingResponse),
    (status = 400, description = "`limit` out of range", body = Problem, content_type = "application/problem+json"),
))]
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

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct SleepParams {
    /// How long to wait, in milliseconds.
    #[param(maximum = 600000)]
    ms: u64,
}

#[derive(Debug, Serialize, ToSchema)]
struct SleepResponse {
    slept_ms: u64,
}

/// Waits `ms`, then answers. Beyond the request timeout the client gets 503 and the wait is
/// dropped with the handler's future.
#[utoipa::path(get, path = "/sleep", tag = "examples", params(SleepParams), responses(
    (status = 200, description = "Slept", body = SleepResponse),
    (status = 400, description = "`ms` out of range", body = Problem, content_type = "application/problem+json"),
    (status = 503, description = "`ms` is above the request timeout", body = Problem, content_type = "application/problem+json"),
))]
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
