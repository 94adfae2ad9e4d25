//! The Postgres store against the operation store conformance suite: each case on a schema of its
//! own, each handle a store with its own pool and listening connection, as a replica has.

#[macro_use]
mod conformance;
mod common;

use std::sync::Arc;

use common::postgres::TestSchema;
use keel::operations::OperationStore;

#[async_trait::async_trait]
impl conformance::Handles for TestSchema {
    async fn open(&self) -> Arc<dyn OperationStore> {
        Arc::new(self.store().await)
    }
}

store_conformance!(TestSchema::create);
