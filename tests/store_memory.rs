//! The in-memory store against the operation store conformance suite.

#[macro_use]
mod conformance;

store_conformance!(|| async { keel::operations::MemoryStore::new() });
