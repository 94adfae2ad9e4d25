//! CPU-bound work on tokio's blocking pool, with a bound on how much runs at once.
//!
//! Tornado's `IOLoop.run_in_executor` became `tokio::task::spawn_blocking`. Unbounded, a burst of
//! requests would queue hundreds of jobs on the blocking pool (512 threads by default) and starve
//! the machine; the semaphore here makes the excess wait, asynchronously, for a turn.

use std::sync::Arc;

use keel_telemetry::panic_message;
use tokio::sync::Semaphore;

#[derive(Debug, Clone)]
pub struct BlockingPool {
    permits: Arc<Semaphore>,
}

#[derive(Debug, thiserror::Error)]
pub enum BlockingError {
    #[error("blocking job panicked: {0}")]
    Panicked(String),
    #[error("blocking job was cancelled")]
    Cancelled,
}

impl BlockingPool {
    pub fn new(max_parallel: usize) -> Self {
        Self { permits: Arc::new(Semaphore::new(max_parallel.max(1))) }
    }

    /// Waits for a turn, then runs `job` on the blocking pool.
    ///
    /// The permit moves into the job, so it is released when the *work* ends, not when the
    /// caller stops waiting: a request that times out cannot free a slot that a thread still uses.
    pub async fn run<T, F>(&self, job: F) -> Result<T, BlockingError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let permit = self.permits.clone().acquire_owned().await.map_err(|_| BlockingError::Cancelled)?;
        tokio::task::spawn_blocking(move || {
            let _turn = permit;
            job()
        })
        .await
        .map_err(|e| match e.try_into_panic() {
            Ok(payload) => BlockingError::Panicked(panic_message(payload.as_ref())),
            Err(_) => BlockingError::Cancelled,
        })
    }

    /// Jobs that could start now without waiting.
    pub fn available(&self) -> usize {
        self.permits.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bounds_parallel_jobs() {
        let pool = BlockingPool::new(2);
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let gate = Arc::new(std::sync::Mutex::new(gate));
        let running: Vec<_> = (0..2)
            .map(|_| {
                let pool = pool.clone();
                let gate = gate.clone();
                tokio::spawn(async move { pool.run(move || gate.lock().unwrap().recv().unwrap()).await })
            })
            .collect();
        while pool.available() > 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(pool.available(), 0, "two jobs hold both turns");
        release.send(()).unwrap();
        release.send(()).unwrap();
        for job in running {
            job.await.unwrap().unwrap();
        }
        assert_eq!(pool.available(), 2);
    }

    #[tokio::test]
    async fn reports_a_panic() {
        let pool = BlockingPool::new(1);
        let outcome = pool.run(|| panic!("boom")).await;
        assert!(matches!(outcome, Err(BlockingError::Panicked(m)) if m == "boom"));
        assert_eq!(pool.available(), 1);
    }
}
