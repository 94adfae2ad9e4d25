use std::sync::Arc;

use crate::blocking::BlockingPool;
use crate::config::Settings;
use crate::lifecycle::Lifecycle;
use crate::operations::Executor;

/// What handlers share. Cloned per request, so everything in it is a handle.
#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub lifecycle: Lifecycle,
    pub executor: Executor,
    pub blocking: BlockingPool,
}
