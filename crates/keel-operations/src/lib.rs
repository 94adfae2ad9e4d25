//! keel's operation layer: work that outlives a request. Clients submit an operation, then poll,
//! wait on, stream or cancel it (Google AIP-151's long-running operations); the executor runs it
//! with a concurrency limit, deadlines, retries, cancellation and draining, in whichever store
//! the service chose.
//!
//! Nothing here knows about HTTP, nor about any service's kinds: the same operations can be
//! driven by handlers (keel-http's operations API), a queue consumer, a CLI or a test.
//!
//! - [`model`]: the operation as clients see it;
//! - [`kind`]: what a service writes to add a kind ([`OperationKind`]), and the [`Registry`];
//! - [`executor`]: runs operations, through the store;
//! - [`store`]: where operations live, behind [`OperationStore`]: [`MemoryStore`] for one
//!   process, [`PostgresStore`](store::PostgresStore) for replicas (claims, leases, fencing;
//!   its migrations are embedded from this crate's `migrations/`);
//! - [`blocking`]: CPU-bound work on tokio's blocking pool, bounded;
//! - `testkit` (feature `testkit`): the conformance suite every store passes, and kinds for tests.
//!
//! ```ignore
//! let store = Arc::new(MemoryStore::new());
//! let executor = Executor::start(store, registry, BlockingPool::new(4), ExecutorSettings::from(&settings.operations));
//! let accepted = executor.submit(submission).await?;
//! ```

#![forbid(unsafe_code)]

pub mod blocking;
pub mod executor;
pub mod kind;
pub mod model;
pub mod store;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use executor::{Executor, ExecutorSettings, OperationsError, Submission};
pub use kind::{KindSchemas, OperationContext, OperationKind, Registry, RetryPolicy};
pub use model::{Operation, OperationError, Outcome, Progress, Status};
pub use store::{MemoryStore, OperationStore};
