//! The in-memory store against the operation store conformance suite.

#[macro_use]
mod conformance;

use std::sync::Arc;

use keel::operations::{MemoryStore, OperationStore};

/// One process: every handle is the same store.
struct Local(Arc<MemoryStore>);

#[async_trait::async_trait]
impl conformance::Handles for Local {
    async fn open(&self) -> Arc<dyn OperationStore> {
        self.0.clone()
    }
}

store_conformance!(|| async { Some(Local(Arc::new(MemoryStore::new()))) });
