use std::ops::Deref;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use keel_config::AuthMode;

use crate::auth::{ANONYMOUS, Authenticator, Caller};
use crate::lifecycle::Lifecycle;
use keel_config::Settings;
use keel_operations::Executor;
use keel_operations::blocking::BlockingPool;

/// What handlers share: a handle to [`Shared`].
///
/// axum clones the state for every request it routes, so the state is one `Arc`: a clone is a
/// single reference-count increment, where a struct of handles costs one per field.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// The application's shared parts; reached through [`AppState`]'s `Deref`.
pub struct Shared {
    pub settings: Arc<Settings>,
    pub lifecycle: Lifecycle,
    pub executor: Executor,
    pub blocking: BlockingPool,
    /// How callers are authenticated; `None` with `auth.mode = "none"`.
    pub auth: Option<Arc<Authenticator>>,
}

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The authenticated caller; with auth off, `anonymous`. On a public route with auth on, nobody
/// authenticated: `anonymous` without any scope, so that [`Caller::require`] refuses.
impl FromRequestParts<AppState> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(match parts.extensions.get::<Caller>() {
            Some(caller) => caller.clone(),
            None if state.settings.auth.mode == AuthMode::None => Caller::anonymous(),
            None => Caller::new(ANONYMOUS, &[]),
        })
    }
}
