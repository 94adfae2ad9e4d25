//! Operation kinds: what a user writes to add one, and the registry that finds them by name.
//!
//! A kind is one type implementing [`OperationKind`]: a name, a typed input (validated before
//! anything is stored), a typed output, a default deadline and `async fn run`. The registry
//! erases those types behind JSON so that the executor and the HTTP layer handle every kind alike.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::model::{OperationError, Progress};
use super::store::{Lease, OperationStore, StoreError};
use crate::blocking::BlockingPool;

pub trait OperationKind: Send + Sync + 'static {
    /// The `kind` clients submit, e.g. `"sleep"`.
    const NAME: &'static str;
    /// Used when a submission gives no `timeout_ms`.
    const DEFAULT_TIMEOUT: Duration;

    /// Parsed from the submission's `input`; use `#[serde(deny_unknown_fields)]` so that typos
    /// are rejected rather than ignored.
    type Input: DeserializeOwned + Send + 'static;
    type Output: Serialize + Send + 'static;

    /// Checks beyond what the types say (ranges, relations between fields). Runs at submission,
    /// so bad input is a 422 and nothing is created.
    fn validate(&self, input: &Self::Input) -> Result<(), String> {
        let _ = input;
        Ok(())
    }

    /// Does the work. Report progress through `ctx`, and stop when `ctx.cancelled()` fires:
    /// an operation that ignores cancellation is dropped after a grace period anyway.
    fn run(
        &self,
        ctx: OperationContext,
        input: Self::Input,
    ) -> impl Future<Output = Result<Self::Output, OperationError>> + Send;
}

/// What a running operation can reach: its id, its cancellation token, progress reporting and
/// the bounded blocking pool for CPU-bound work.
#[derive(Clone)]
pub struct OperationContext {
    id: String,
    cancellation: CancellationToken,
    progress: ProgressReporter,
    blocking: BlockingPool,
}

#[derive(Clone)]
struct ProgressReporter {
    store: Arc<dyn OperationStore>,
    lease: Lease,
}

impl OperationContext {
    pub(crate) fn new(
        store: Arc<dyn OperationStore>,
        lease: Lease,
        cancellation: CancellationToken,
        blocking: BlockingPool,
    ) -> Self {
        Self { id: lease.operation_id.clone(), cancellation, progress: ProgressReporter { store, lease }, blocking }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Records progress (`percent` is capped at 100). If the operation has ended meanwhile
    /// (cancelled, or expired), this trips the cancellation token so the work stops.
    pub async fn progress(&self, percent: u8, message: impl Into<String>) {
        let progress = Progress { percent: percent.min(100), message: Some(message.into()) };
        match self.progress.store.set_progress(&self.progress.lease, progress).await {
            Ok(()) => {}
            Err(StoreError::LeaseLost) => self.cancellation.cancel(),
            Err(error) => tracing::warn!(operation_id = %self.id, %error, "could not record progress"),
        }
    }

    /// Resolves when the operation is cancelled, by a client, its deadline or a shutdown.
    pub async fn cancelled(&self) {
        self.cancellation.cancelled().await;
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancellation.is_cancelled()
    }

    /// The token itself, to hand to blocking code that polls `is_cancelled()`.
    pub fn cancellation_token(&self) -> &CancellationToken {
        &self.cancellation
    }

    pub fn blocking(&self) -> &BlockingPool {
        &self.blocking
    }
}

/// A kind with its types erased behind JSON.
pub(crate) trait ErasedKind: Send + Sync {
    fn default_timeout(&self) -> Duration;
    fn check(&self, input: &Value) -> Result<(), String>;
    fn run(&self, ctx: OperationContext, input: Value) -> BoxFuture<'static, Result<Value, OperationError>>;
}

struct Typed<K>(Arc<K>);

impl<K: OperationKind> ErasedKind for Typed<K> {
    fn default_timeout(&self) -> Duration {
        K::DEFAULT_TIMEOUT
    }

    fn check(&self, input: &Value) -> Result<(), String> {
        // `&Value` is itself a deserializer, so checking needs no copy of the input.
        let typed = <K::Input as serde::Deserialize>::deserialize(input).map_err(|e| e.to_string())?;
        self.0.validate(&typed)
    }

    fn run(&self, ctx: OperationContext, input: Value) -> BoxFuture<'static, Result<Value, OperationError>> {
        let kind = Arc::clone(&self.0);
        Box::pin(async move {
            let input: K::Input = serde_json::from_value(input)
                .map_err(|e| OperationError::failed(format!("input no longer parses: {e}")))?;
            let output = kind.run(ctx, input).await?;
            serde_json::to_value(output).map_err(|e| {
                tracing::error!(kind = K::NAME, error = %e, "operation output does not serialise");
                OperationError::internal()
            })
        })
    }
}

/// The kinds this service runs, by name.
#[derive(Clone, Default)]
pub struct Registry {
    kinds: HashMap<&'static str, Arc<dyn ErasedKind>>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `kind`. Registering two kinds with one name is a programming error caught at start-up.
    pub fn register<K: OperationKind>(mut self, kind: K) -> Self {
        let previous = self.kinds.insert(K::NAME, Arc::new(Typed(Arc::new(kind))));
        assert!(previous.is_none(), "operation kind {:?} is registered twice", K::NAME);
        self
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Arc<dyn ErasedKind>> {
        self.kinds.get(name)
    }

    /// Registered kind names, sorted.
    pub fn names(&self) -> Vec<&'static str> {
        let mut names: Vec<_> = self.kinds.keys().copied().collect();
        names.sort_unstable();
        names
    }
}
