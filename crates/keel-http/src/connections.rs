//! The HTTP connections of one listener, served with hyper-util's auto (HTTP/1 and HTTP/2)
//! connection builder:
//!
//! - **a deadline for the first request**: a client that has not sent a complete request head
//!   within `server.header_read_timeout_ms` of connecting is disconnected, whatever it sent:
//!   nothing, part of an HTTP/1 head, part of the HTTP/2 preface. hyper's own header read timeout
//!   starts only once the protocol is known, so silent sockets would otherwise be held forever;
//! - **timeouts after that**: hyper's header read timeout (with hyper-util's `TokioTimer`) for
//!   each later HTTP/1 request head, keep-alive pings for HTTP/2 (a peer that stops answering is
//!   dropped), and `server.idle_timeout_ms` for a connection that starts no request (closed
//!   gracefully: what is in progress on it finishes first);
//! - **a cap**: at most `server.max_connections` open at once; at the cap keel stops accepting
//!   until one closes, and the kernel's backlog holds the newcomers, rather than keel running out
//!   of file descriptors or memory;
//! - **a drain**: on shutdown idle connections close at once, the others get the grace period.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::App;
use keel_config::ServerSettings;

/// How often an HTTP/2 connection is pinged, and how long an answer may take.
const HTTP2_KEEP_ALIVE: Duration = Duration::from_secs(20);

pub struct Connections {
    builder: auto::Builder<TokioExecutor>,
    /// Cancelled when the drain starts: every connection then closes once idle.
    draining: CancellationToken,
    /// One permit per open connection.
    slots: Arc<Semaphore>,
    max_connections: usize,
    header_read_timeout: Duration,
    idle_timeout: Duration,
    /// Whether requests carry their client's address (`ClientAddr`): only when rate limits,
    /// which key anonymous callers by it, are on.
    client_addresses: bool,
}

impl Connections {
    pub fn new(server: &ServerSettings, client_addresses: bool) -> Self {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder.http1().timer(TokioTimer::new()).header_read_timeout(server.header_read_timeout());
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(Some(HTTP2_KEEP_ALIVE))
            .keep_alive_timeout(HTTP2_KEEP_ALIVE);
        let max_connections = server.max_connections;
        Self {
            builder,
            draining: CancellationToken::new(),
            slots: Arc::new(Semaphore::new(max_connections)),
            max_connections,
            header_read_timeout: server.header_read_timeout(),
            idle_timeout: server.idle_timeout(),
            client_addresses,
        }
    }

    /// Accepts and serves connections until `stop` resolves.
    pub async fn accept(&self, listener: &TcpListener, app: &App, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        // Under a flood the cap is reached again at every close: a warning the first time only.
        let mut warned = false;
        loop {
            let slot = match Arc::clone(&self.slots).try_acquire_owned() {
                Ok(slot) => slot,
                Err(_) => {
                    if !warned {
                        warned = true;
                        tracing::warn!(
                            max_connections = self.max_connections,
                            "connection limit reached: accepting again once one closes"
                        );
                    }
                    tokio::select! {
                        () = &mut stop => return,
                        slot = Arc::clone(&self.slots).acquire_owned() => match slot {
                            Ok(slot) => slot,
                            Err(_) => return,
                        },
                    }
                }
            };
            let (stream, peer) = tokio::select! {
                () = &mut stop => return,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Usually out of file descriptors: back off instead of spinning.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            let app = if self.client_addresses { app.for_peer(peer.ip()) } else { app.clone() };
            let activity = Activity::new();
            let service = TowerToHyperService::new(Counted { app, activity: Arc::clone(&activity) });
            let connection = self.builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
            let (header_read_timeout, idle_timeout) = (self.header_read_timeout, self.idle_timeout);
            let draining = self.draining.clone();
            tokio::spawn(async move {
                tokio::pin!(connection);
                let first_request = activity.first_request(header_read_timeout);
                let idle = activity.idle(idle_timeout);
                tokio::pin!(first_request, idle);
                let mut closing = false;
                loop {
                    tokio::select! {
                        outcome = connection.as_mut() => {
                            if let Err(error) = outcome {
                                tracing::debug!(%error, "connection ended with an error");
                            }
                            break;
                        }
                        () = &mut first_request, if !closing => {
                            // Dropping the connection closes the socket.
                            tracing::debug!("no request head within the header read timeout: disconnected");
                            break;
                        }
                        () = &mut idle, if !closing => {
                            tracing::debug!("idle connection: closing");
                            connection.as_mut().graceful_shutdown();
                            closing = true;
                        }
                        () = draining.cancelled(), if !closing => {
                            connection.as_mut().graceful_shutdown();
                            closing = true;
                        }
                    }
                }
                drop(slot);
            });
        }
    }

    /// Closes idle connections at once and gives the others `grace` to finish their requests.
    pub async fn drain(self, grace: Duration) {
        self.draining.cancel();
        // Every connection gives its slot back when it ends.
        let all = u32::try_from(self.max_connections).unwrap_or(u32::MAX);
        if tokio::time::timeout(grace, self.slots.acquire_many(all)).await.is_err() {
            let open = self.max_connections - self.slots.available_permits();
            tracing::warn!(connections = open, "grace period over: abandoning open connections");
        }
    }
}

/// How many requests a connection has started, for its timeouts: a count, so that a request
/// pays for one atomic increment and no clock reading.
struct Activity {
    connected: Instant,
    requests: AtomicU64,
}

impl Activity {
    fn new() -> Arc<Self> {
        Arc::new(Self { connected: Instant::now(), requests: AtomicU64::new(0) })
    }

    fn started_request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Resolves when `timeout` passes without a first request; never once one came.
    async fn first_request(&self, timeout: Duration) {
        tokio::time::sleep_until(self.connected + timeout).await;
        if self.requests() > 0 {
            std::future::pending::<()>().await;
        }
    }

    /// Resolves once a whole `timeout` has passed with no request started: between one and two
    /// timeouts after the last one.
    async fn idle(&self, timeout: Duration) {
        loop {
            let seen = self.requests();
            tokio::time::sleep(timeout).await;
            if self.requests() == seen {
                return;
            }
        }
    }
}

/// The app, noting each request's start on the connection's [`Activity`].
#[derive(Clone)]
struct Counted {
    app: App,
    activity: Arc<Activity>,
}

impl<B> tower::Service<axum::http::Request<B>> for Counted
where
    App: tower::Service<axum::http::Request<B>>,
{
    type Response = <App as tower::Service<axum::http::Request<B>>>::Response;
    type Error = <App as tower::Service<axum::http::Request<B>>>::Error;
    type Future = <App as tower::Service<axum::http::Request<B>>>::Future;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        self.app.poll_ready(cx)
    }

    fn call(&mut self, request: axum::http::Request<B>) -> Self::Future {
        self.activity.started_request();
        self.app.call(request)
    }
}
