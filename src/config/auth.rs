//! `[auth]`: who may call keel (see `http::auth`).

use serde::{Deserialize, Serialize};

use super::ConfigError;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// `none` (anyone is the one anonymous caller) or `api_key`.
    pub mode: AuthMode,
    /// Lets a production replica start with `mode = "none"`: a decision to take on purpose (a
    /// gateway in front that authenticates), never a default.
    #[serde(default)]
    pub allow_anonymous: bool,
    #[serde(default)]
    pub api_keys: Vec<ApiKeySettings>,
    /// With auth on and `/metrics` on the main port: the SHA-256 (hex) of the bearer token a
    /// scraper must send. Unneeded with `metrics.port`, whose port is reachable only from inside.
    #[serde(default)]
    pub metrics_sha256: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    None,
    ApiKey,
}

/// One API key: its id (the caller it authenticates), the SHA-256 of the key, never the key
/// itself (`keel hash-key` prints it), and what it may do.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeySettings {
    pub id: String,
    pub sha256: String,
    pub scopes: Vec<Scope>,
}

/// What a caller may do with operations: `read` (get, list, wait, stream), `write` (submit,
/// cancel, delete), `admin` (see every caller's operations, not only its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Scope {
    #[serde(rename = "operations:read")]
    Read,
    #[serde(rename = "operations:write")]
    Write,
    #[serde(rename = "operations:admin")]
    Admin,
}

impl Scope {
    pub const fn name(self) -> &'static str {
        match self {
            Self::Read => "operations:read",
            Self::Write => "operations:write",
            Self::Admin => "operations:admin",
        }
    }
}

/// A caller id: what operations are owned by, so it is stored and logged. Visible ASCII, 1 to
/// 128 characters.
pub fn valid_caller_id(id: &str) -> bool {
    (1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic())
}

/// 64 hex digits, as `keel hash-key` prints them.
pub fn parse_sha256(hex_digits: &str) -> Option<[u8; 32]> {
    let mut digest = [0u8; 32];
    hex::decode_to_slice(hex_digits, &mut digest).ok()?;
    Some(digest)
}

impl AuthSettings {
    pub(super) fn validate(&self, environment: &str, metrics_on_main_port: bool) -> Result<(), ConfigError> {
        if self.mode == AuthMode::None && environment == "production" && !self.allow_anonymous {
            return Err(ConfigError::invalid(
                "auth.mode",
                "is \"none\" in production: anyone who reaches keel could read and cancel every operation; set \
                 auth.mode = \"api_key\" with auth.api_keys, or auth.allow_anonymous = true if a gateway in front \
                 authenticates",
            ));
        }
        if self.mode == AuthMode::ApiKey && self.api_keys.is_empty() {
            return Err(ConfigError::invalid(
                "auth.api_keys",
                "must list at least one key when auth.mode is \"api_key\"",
            ));
        }
        let mut ids = std::collections::HashSet::new();
        for key in &self.api_keys {
            if !valid_caller_id(&key.id) {
                return Err(ConfigError::invalid(
                    "auth.api_keys.id",
                    format!("is {:?}; an id is 1 to 128 visible ASCII characters", key.id),
                ));
            }
            if !ids.insert(key.id.as_str()) {
                return Err(ConfigError::invalid("auth.api_keys.id", format!("{:?} is listed twice", key.id)));
            }
            if parse_sha256(&key.sha256).is_none() {
                return Err(ConfigError::invalid(
                    "auth.api_keys.sha256",
                    format!("of {:?} is not 64 hex digits (`keel hash-key` prints them)", key.id),
                ));
            }
        }
        if let Some(digest) = &self.metrics_sha256
            && parse_sha256(digest).is_none()
        {
            return Err(ConfigError::invalid(
                "auth.metrics_sha256",
                "is not 64 hex digits (`keel hash-key` prints them)",
            ));
        }
        if self.mode != AuthMode::None && metrics_on_main_port && self.metrics_sha256.is_none() {
            return Err(ConfigError::invalid(
                "auth.metrics_sha256",
                "must be set when auth is on and /metrics is on the main port (or give metrics a port of its own, \
                 metrics.port, or turn them off, metrics.enabled = false)",
            ));
        }
        Ok(())
    }
}
