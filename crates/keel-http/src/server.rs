//! Building and running the application: the one code path shared by `main` and the tests.
//!
//! `Application::build_with` binds the listener (port 0 gives a free one, which `port()` reports)
//! and starts the operation executor; `run_until_stopped` serves until the shutdown future
//! resolves, then drains.
//!
//! Connections are served by [`crate::connections`] rather than `axum::serve`, for what a
//! production listener needs: timeouts for silent and idle clients, a cap on open connections,
//! and a drain that closes idle connections at once while in-flight requests finish.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use utoipa_axum::router::OpenApiRouter;

use keel_config::{Settings, StoreKind};
use keel_operations::blocking::BlockingPool;
use keel_operations::store::{PostgresStore, StoreError};
use keel_operations::{Executor, ExecutorSettings, MemoryStore, OperationStore, Registry};
use keel_telemetry::metrics;

use crate::auth::{Authenticator, JwksError};
use crate::connections::Connections;
use crate::lifecycle::{Lifecycle, Phase};
use crate::{App, AppState, Shared};

pub struct Application {
    listener: TcpListener,
    state: AppState,
    app: App,
    /// `/metrics` on a port of its own, when `metrics.port` is set.
    metrics: Option<(TcpListener, App)>,
}

/// Why keel could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("{0}")]
    Config(#[from] keel_config::ConfigError),
    #[error("cannot listen: {0}")]
    Listen(#[from] std::io::Error),
    #[error("cannot open the operation store: {0}")]
    Store(#[from] StoreError),
    #[error("cannot load the JWT key set (auth.jwt): {0}")]
    Auth(#[from] JwksError),
}

/// The `serve` command: logging, a multi-threaded runtime, and the application built with
/// `registry` and `routes`, served until SIGTERM or Ctrl-C and then drained. A service passes
/// its own kinds and routes; the tests' child processes pass theirs.
pub fn serve(settings: Settings, registry: Registry, routes: OpenApiRouter<AppState>) -> Result<(), String> {
    let _telemetry =
        keel_telemetry::init(&settings.log).map_err(|error| format!("cannot start the log writer: {error}"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start the tokio runtime: {error}"))?;
    let outcome = runtime.block_on(async {
        let app = Application::build_with(settings, registry, routes).await.map_err(|error| error.to_string())?;
        app.run_until_stopped(crate::lifecycle::shutdown_signal()).await.map_err(|error| error.to_string())
    });
    if let Err(error) = &outcome {
        tracing::error!(%error, "server failed");
    }
    outcome
}

impl Application {
    /// Builds keel with the given kinds and routes, on the store `operations.store` names.
    pub async fn build_with(
        settings: Settings,
        registry: Registry,
        routes: OpenApiRouter<AppState>,
    ) -> Result<Self, StartupError> {
        let store = open_store(&settings).await?;
        Self::build_with_store(settings, registry, routes, store).await
    }

    /// Builds keel around a store of the caller's own, whatever `operations.store` says: for a
    /// store keel does not ship, or a test's.
    pub async fn build_with_store(
        settings: Settings,
        registry: Registry,
        routes: OpenApiRouter<AppState>,
        store: Arc<dyn OperationStore>,
    ) -> Result<Self, StartupError> {
        let listener = TcpListener::bind((settings.server.host.as_str(), settings.server.port)).await?;
        let metrics = match settings.metrics.port.filter(|_| settings.metrics.enabled) {
            Some(port) => Some(TcpListener::bind((settings.server.host.as_str(), port)).await?),
            None => None,
        };
        let state = build_state_with_store(settings, registry, store);
        if let Some(auth) = &state.auth
            && let Some(keys) = auth.prepare().await?
        {
            tracing::info!(keys, "JWT key set loaded");
        }
        let app = crate::app(routes, state.clone());
        let metrics = metrics.map(|listener| (listener, crate::metrics_app(state.clone())));
        Ok(Self { listener, state, app, metrics })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    /// The address of the separate metrics listener, when `metrics.port` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(|(listener, _)| listener.local_addr().ok())
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then: `/readyz` turns 503 at once; after
    /// `shutdown_delay` the listener closes; in-flight requests and running operations get
    /// `shutdown_grace` to finish; whatever is left is abandoned and logged. The metrics
    /// listener stays open through the drain, then closes the same way.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send) -> std::io::Result<()> {
        let Self { listener, state, app, metrics } = self;
        let server = &state.settings.server;
        let grace = server.shutdown_grace();
        let (stop_metrics, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
        let metrics_server = metrics.map(|(listener, app)| {
            tracing::info!(address = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "serving /metrics");
            let connections = Connections::new(server, false);
            tokio::spawn(async move {
                connections.accept(&listener, &app, async { drop(metrics_stopped.await) }).await;
                drop(listener);
                connections.drain(grace).await;
            })
        });

        state.lifecycle.set(Phase::Ready);
        tracing::info!(address = %listener.local_addr()?, environment = %state.settings.environment, "listening");
        let connections = Connections::new(server, state.settings.rate_limit.enabled);
        let accepting = async {
            shutdown.await;
            state.lifecycle.set(Phase::Draining);
            tracing::info!(delay_ms = server.shutdown_delay_ms, "draining: /readyz now answers 503");
            tokio::time::sleep(server.shutdown_delay()).await;
        };
        connections.accept(&listener, &app, accepting).await;
        drop(listener);

        tracing::info!(grace_ms = server.shutdown_grace_ms, "listener closed; finishing in-flight work");
        tokio::join!(connections.drain(grace), state.executor.drain(grace));
        // Metrics stay scrapeable through the drain, then go the same way.
        let _ = stop_metrics.send(());
        if let Some(metrics) = metrics_server {
            let _ = metrics.await;
        }
        tracing::info!("shutdown complete");
        Ok(())
    }
}

/// The store `operations.store` names: this process's memory, or Postgres (migrated first when
/// `database.migrate` is on).
pub async fn open_store(settings: &Settings) -> Result<Arc<dyn OperationStore>, StoreError> {
    match settings.operations.store {
        StoreKind::Memory => {
            if settings.environment == "production" {
                tracing::warn!(
                    "operations.store is \"memory\": operations live in this process only; replicas do not \
                     share them and a restart loses them. Set operations.store = \"postgres\" to share them"
                );
            }
            Ok(Arc::new(MemoryStore::new()))
        }
        StoreKind::Postgres => Ok(Arc::new(PostgresStore::connect(&settings.database).await?)),
    }
}

/// Wires the shared state with the in-memory store; needs a tokio runtime (the executor starts
/// its tasks).
pub fn build_state(settings: Settings, registry: Registry) -> AppState {
    build_state_with_store(settings, registry, Arc::new(MemoryStore::new()))
}

/// Wires the shared state around `store`: where a shared store (Postgres) plugs in.
pub fn build_state_with_store(settings: Settings, registry: Registry, store: Arc<dyn OperationStore>) -> AppState {
    let blocking = BlockingPool::new(settings.blocking.max_parallel);
    let executor = Executor::start(store, registry, blocking.clone(), ExecutorSettings::from(&settings.operations));
    if settings.metrics.enabled {
        // Installed now, before anything is recorded: without a recorder, recordings are dropped.
        let recorder = metrics::recorder();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(metrics::UPKEEP_INTERVAL);
            loop {
                ticks.tick().await;
                recorder.run_upkeep();
            }
        });
    }
    let auth = Authenticator::from_settings(&settings.auth);
    AppState::new(Shared { settings: Arc::new(settings), lifecycle: Lifecycle::default(), executor, blocking, auth })
}
