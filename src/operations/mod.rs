//! The operation layer: work that outlives a request. Clients submit an operation, then poll,
//! wait on, stream or cancel it (Google AIP-151's long-running operations).
//!
//! Nothing here knows about HTTP: the same operations can be driven by handlers, a queue
//! consumer, a CLI or a test.
//!
//! - [`model`]: the operation as clients see it;
//! - [`store`]: where operations live, behind [`OperationStore`];
//! - [`kind`]: what a user writes to add a kind, and the [`Registry`];
//! - [`executor`]: runs them, with a concurrency limit, deadlines, cancellation and draining;
//! - [`kinds`]: the kinds this service registers.

pub mod executor;
pub mod kind;
pub mod kinds;
pub mod model;
pub mod store;

pub use executor::{Executor, ExecutorSettings, OperationsError, Submission};
pub use kind::{KindSchemas, OperationContext, OperationKind, Registry, RetryPolicy};
pub use model::{Operation, OperationError, Outcome, Progress, Status};
pub use store::{MemoryStore, OperationStore};
