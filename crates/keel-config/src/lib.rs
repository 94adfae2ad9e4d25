//! keel's settings: typed, layered the twelve-factor way, validated before anything starts.
//!
//! The service embeds its files and hands them to [`Settings::load`] as [`Files`]; this crate
//! knows no service's files. Later layers win:
//! 1. the service's `config/default.toml`, embedded in its binary, so it runs with no file on disk;
//! 2. its `config/{APP_ENV}.toml` (`development` unless `APP_ENV` says otherwise), also embedded;
//! 3. the file named by `APP_CONFIG_FILE`, when set (it must exist);
//! 4. `PORT` and `DATABASE_URL`, as platforms such as Heroku or Cloud Run set them;
//! 5. `APP_*` variables, `__` between nested keys: `APP_SERVER__PORT=9000`.
//!
//! Everything is validated before anything starts, so a bad value stops the process with one
//! line naming the key, instead of surfacing as a strange failure under load.
//!
//! The sections are keel's own (`server`, `operations`, `auth`, ...), each read by the crate that
//! owns the part; the `[service]` table is the service's, left to it: [`Settings::service`]
//! extracts it into the service's own type. This crate depends on no other crate of keel's.
//!
//! ```ignore
//! const FILES: Files = Files {
//!     default: include_str!("../config/default.toml"),
//!     environments: &[("development", include_str!("../config/development.toml"))],
//! };
//! let settings = Settings::load(&FILES)?; // or exit with the error's one line
//! let mine: MySettings = settings.service()?; // the [service] table
//! ```

#![forbid(unsafe_code)]

mod auth;
mod loader;
pub mod public_url;
mod rate_limit;
mod secret;

use std::time::Duration;

use figment::value::Dict;
use serde::{Deserialize, Serialize};

pub use auth::{ApiKeySettings, AuthMode, AuthSettings, JwtSettings, Scope, parse_sha256, valid_caller_id};
pub use loader::Files;
pub use rate_limit::RateLimitSettings;
pub use secret::Secret;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The environment these settings were loaded for; set by the loader, not by files.
    #[serde(default)]
    pub environment: String,
    pub server: ServerSettings,
    pub log: LogSettings,
    pub blocking: BlockingSettings,
    pub operations: OperationSettings,
    pub database: DatabaseSettings,
    pub metrics: MetricsSettings,
    pub auth: AuthSettings,
    pub rate_limit: RateLimitSettings,
    /// The service's own keys, as the files and variables gave them; [`Settings::service`]
    /// reads them into the service's type.
    #[serde(default, skip_serializing_if = "Dict::is_empty")]
    pub service: Dict,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub host: String,
    pub port: u16,
    pub request_timeout_ms: u64,
    pub header_read_timeout_ms: u64,
    /// A connection that has started no request for this long is closed, within twice this
    /// (gracefully: a request still being answered on it finishes first).
    pub idle_timeout_ms: u64,
    pub body_limit_bytes: usize,
    pub shutdown_grace_ms: u64,
    pub shutdown_delay_ms: u64,
    /// Connections open at once, per listener; at the cap, keel accepts again once one closes.
    pub max_connections: usize,
    pub cors_allowed_origins: Vec<String>,
    pub compression: bool,
    /// The URL clients reach this service at (`https://api.example.com/billing`): the base of the
    /// absolute `Location` and `Operation-Location` keel hands out. Unset: `http://` and the
    /// request's checked `Host` (see `http::location`).
    #[serde(default)]
    pub public_url: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub filter: String,
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockingSettings {
    pub max_parallel: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperationSettings {
    pub max_running: usize,
    pub queue_capacity: usize,
    pub max_timeout_ms: u64,
    pub retention_ms: u64,
    pub idempotency_key_ttl_ms: u64,
    pub max_wait_ms: u64,
    pub cancel_grace_ms: u64,
    /// Where operations live: this process's memory, or Postgres shared by every replica.
    pub store: StoreKind,
    /// How long a claim holds without a heartbeat before another replica may take it over.
    pub lease_ttl_ms: u64,
    /// How often a running operation's lease is renewed; well under `lease_ttl_ms`.
    pub heartbeat_interval_ms: u64,
    /// How often expired leases, overdue operations and old results are swept.
    pub sweep_interval_ms: u64,
    /// How often an idle replica looks for work anyway, in case a notification was lost.
    pub poll_interval_ms: u64,
    /// A running operation's progress is recorded at most this often (the latest report wins,
    /// and the last one is recorded with the operation's end); 0 records every report.
    pub progress_interval_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    Memory,
    Postgres,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `postgres://user:password@host:port/database`; also read from `DATABASE_URL`.
    #[serde(default)]
    pub url: Option<Secret<String>>,
    pub max_connections: u32,
    pub connect_timeout_ms: u64,
    /// Apply the embedded migrations at start-up (under an advisory lock, so replicas starting
    /// together apply them once).
    pub migrate: bool,
}

impl DatabaseSettings {
    /// The fewest connections the Postgres store works with: its listener, one for the statements
    /// that commit without a flush, one for submissions and results.
    pub const MIN_CONNECTIONS: u32 = 3;

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSettings {
    pub enabled: bool,
    /// Serve `/metrics` on this port instead of the main one (on the same host).
    #[serde(default)]
    pub port: Option<u16>,
}

/// Why settings could not be loaded: always names the key and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {0}")]
pub struct ConfigError(String);

impl ConfigError {
    /// `key` is wrong: `problem` says how (for example "must be greater than 0").
    pub fn invalid(key: &str, problem: impl std::fmt::Display) -> Self {
        Self(format!("`{key}` {problem}"))
    }
}

impl Settings {
    fn validate(&self) -> Result<(), ConfigError> {
        let s = &self.server;
        let o = &self.operations;
        positive("server.request_timeout_ms", s.request_timeout_ms)?;
        positive("server.header_read_timeout_ms", s.header_read_timeout_ms)?;
        positive("server.idle_timeout_ms", s.idle_timeout_ms)?;
        positive("server.body_limit_bytes", s.body_limit_bytes as u64)?;
        positive("server.shutdown_grace_ms", s.shutdown_grace_ms)?;
        positive("server.max_connections", s.max_connections as u64)?;
        positive("blocking.max_parallel", self.blocking.max_parallel as u64)?;
        positive("operations.max_running", o.max_running as u64)?;
        positive("operations.max_timeout_ms", o.max_timeout_ms)?;
        positive("operations.retention_ms", o.retention_ms)?;
        positive("operations.idempotency_key_ttl_ms", o.idempotency_key_ttl_ms)?;
        positive("operations.lease_ttl_ms", o.lease_ttl_ms)?;
        positive("operations.heartbeat_interval_ms", o.heartbeat_interval_ms)?;
        positive("operations.sweep_interval_ms", o.sweep_interval_ms)?;
        positive("operations.poll_interval_ms", o.poll_interval_ms)?;
        if self.database.max_connections < DatabaseSettings::MIN_CONNECTIONS {
            return Err(ConfigError::invalid(
                "database.max_connections",
                format!(
                    "is {} but must be at least {}: one connection listens for notifications, one serves claims \
                     and heartbeats, and one submissions and results",
                    self.database.max_connections,
                    DatabaseSettings::MIN_CONNECTIONS
                ),
            ));
        }
        positive("database.connect_timeout_ms", self.database.connect_timeout_ms)?;
        if o.heartbeat_interval_ms.saturating_mul(3) > o.lease_ttl_ms {
            return Err(ConfigError::invalid(
                "operations.heartbeat_interval_ms",
                format!(
                    "is {} but must be at most a third of operations.lease_ttl_ms ({}), so that one late heartbeat \
                     does not lose a lease",
                    o.heartbeat_interval_ms, o.lease_ttl_ms
                ),
            ));
        }
        if o.store == StoreKind::Postgres && self.database.url.is_none() {
            return Err(ConfigError::invalid(
                "database.url",
                "must be set (or DATABASE_URL) when operations.store is \"postgres\"",
            ));
        }
        if s.host.parse::<std::net::IpAddr>().is_err() && s.host != "localhost" {
            return Err(ConfigError::invalid("server.host", format!("is {:?}, not an IP address", s.host)));
        }
        if let Err(error) = tracing_subscriber::EnvFilter::try_new(&self.log.filter) {
            return Err(ConfigError::invalid("log.filter", format!("is not a valid filter: {error}")));
        }
        if o.max_wait_ms >= s.request_timeout_ms {
            return Err(ConfigError::invalid(
                "operations.max_wait_ms",
                format!(
                    "is {} but must be below server.request_timeout_ms ({}), or long polls would time out",
                    o.max_wait_ms, s.request_timeout_ms
                ),
            ));
        }
        if let Some(url) = &s.public_url
            && let Err(reason) = public_url::check_public_url(url)
        {
            return Err(ConfigError::invalid("server.public_url", format!("is {url:?}, which {reason}")));
        }
        let metrics_on_main_port = self.metrics.enabled && self.metrics.port.is_none();
        self.auth.validate(&self.environment, metrics_on_main_port)?;
        self.rate_limit.validate()?;
        if let Some(bad) = s.cors_allowed_origins.iter().find(|o| http::HeaderValue::from_str(o).is_err()) {
            return Err(ConfigError::invalid(
                "server.cors_allowed_origins",
                format!("holds {bad:?}, not a valid origin"),
            ));
        }
        Ok(())
    }
}

impl ServerSettings {
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.header_read_timeout_ms)
    }
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }
    pub fn shutdown_delay(&self) -> Duration {
        Duration::from_millis(self.shutdown_delay_ms)
    }
}

pub(crate) fn positive(key: &str, value: u64) -> Result<(), ConfigError> {
    if value == 0 {
        return Err(ConfigError::invalid(key, "must be greater than 0"));
    }
    Ok(())
}
