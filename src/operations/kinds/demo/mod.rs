//! Demonstration kinds, each the tokio answer to a Tornado pattern. Delete this folder (and its
//! line in `kinds/mod.rs`) when you no longer want them.

mod digest;
mod fanout;
mod faults;
mod sleep;

pub use digest::Digest;
pub use fanout::Fanout;
pub use faults::{Fail, Flaky, Panic};
pub use sleep::Sleep;

use crate::operations::Registry;

pub fn register(registry: Registry) -> Registry {
    registry.register(Sleep).register(Fanout).register(Digest).register(Fail).register(Panic).register(Flaky)
}
