//! Demonstration kinds, each the tokio answer to a Tornado pattern. docs/guides/
//! remove-the-examples.md drops them: this folder, its two lines in `kinds/mod.rs` and
//! `tests/service/demo_kinds.rs` with its line in `tests/service/main.rs`.

mod digest;
mod fanout;
mod faults;
mod sleep;

pub use digest::Digest;
pub use fanout::Fanout;
pub use faults::{Fail, Flaky, Panic};
pub use sleep::Sleep;

use keel_operations::Registry;

/// Every demonstration kind.
pub fn registry() -> Registry {
    Registry::new().register(Sleep).register(Fanout).register(Digest).register(Fail).register(Panic).register(Flaky)
}
