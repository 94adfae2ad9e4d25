//! Every operation kind this service runs, registered in one place.
//!
//! To add a kind: write a type implementing [`OperationKind`](keel_operations::OperationKind) in a file
//! of its own here (docs/guides/add-an-operation-kind.md shows one), then register it in
//! `registry()`.

pub mod demo;

use keel_operations::Registry;

/// The kinds that `POST /v1/operations` accepts.
pub fn registry() -> Registry {
    Registry::new()
        // The demonstration kinds: delete this line and `pub mod demo;` to drop them (docs/guides/remove-the-examples.md
        // says what else goes with them).
        .merge(demo::registry())
}
