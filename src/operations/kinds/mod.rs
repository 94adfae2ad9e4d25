//! Every operation kind this service runs, registered in one place.
//!
//! To add a kind: write a type implementing [`OperationKind`](super::OperationKind) in a file
//! of its own here (see `demo/sleep.rs` for the shape), then add one `.register(...)` line below.

pub mod demo;

use super::Registry;

/// The kinds that `POST /v1/operations` accepts.
pub fn registry() -> Registry {
    // Delete this line and the `demo` folder to drop the demonstration kinds.
    demo::register(Registry::new())
}
