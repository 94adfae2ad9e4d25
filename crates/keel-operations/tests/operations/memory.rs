//! The in-memory store against the operation store conformance suite.

use std::sync::Arc;

use keel_operations::testkit::conformance::Handles;
use keel_operations::{MemoryStore, OperationStore};

/// One process: every handle is the same store.
struct Local(Arc<MemoryStore>);

#[async_trait::async_trait]
impl Handles for Local {
    async fn open(&self) -> Arc<dyn OperationStore> {
        self.0.clone()
    }
}

keel_operations::store_conformance!(|| async { Some(Local(Arc::new(MemoryStore::new()))) });
