//! `[auth]`: who may call keel (see `http::auth`).

use serde::{Deserialize, Serialize};

use super::ConfigError;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// `none` (anyone is the one anonymous caller), `api_key` or `jwt`.
    pub mode: AuthMode,
    /// Lets a production replica start with `mode = "none"`: a decision to take on purpose (a
    /// gateway in front that authenticates), never a default.
    #[serde(default)]
    pub allow_anonymous: bool,
    #[serde(default)]
    pub api_keys: Vec<ApiKeySettings>,
    /// `[auth.jwt]`: how tokens are checked when `mode = "jwt"`.
    #[serde(default)]
    pub jwt: Option<JwtSettings>,
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
    Jwt,
}

/// `[auth.jwt]`: tokens from an identity provider or a gateway, checked against its keys.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtSettings {
    /// The `iss` a token must carry.
    pub issuer: String,
    /// An `aud` a token must carry (its `aud` may list others too).
    pub audience: String,
    /// The keys, as a JWKS file (RFC 7517)...
    #[serde(default)]
    pub jwks_file: Option<std::path::PathBuf>,
    /// ...or at a URL (https, or http on a network you trust), fetched at start and refreshed.
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// The claim that names the caller (the owner of what it submits).
    #[serde(default = "default_subject_claim")]
    pub subject_claim: String,
    /// How far `exp` and `nbf` may be off, for clocks that disagree a little. JWT times are in
    /// whole seconds: this is rounded up to one.
    #[serde(default = "default_leeway_ms")]
    pub leeway_ms: u64,
    /// A token naming a `kid` the key set lacks makes keel fetch the set again (the provider
    /// rotated its keys), at most this often: forged `kid`s cannot make keel hammer the provider.
    #[serde(default = "default_jwks_refresh_min_interval_ms")]
    pub jwks_refresh_min_interval_ms: u64,
    /// The key set is fetched again in the background after this, so that keys the provider
    /// withdrew stop being accepted.
    #[serde(default = "default_jwks_max_age_ms")]
    pub jwks_max_age_ms: u64,
    /// How long one fetch of `jwks_url` may take.
    #[serde(default = "default_jwks_fetch_timeout_ms")]
    pub jwks_fetch_timeout_ms: u64,
    /// How many verified tokens are remembered (by their SHA-256) until they expire, so that a
    /// caller reusing its token is not verified afresh each request; 0 verifies every time.
    #[serde(default = "default_verified_tokens")]
    pub verified_tokens: usize,
}

fn default_subject_claim() -> String {
    "sub".to_owned()
}
const fn default_leeway_ms() -> u64 {
    30_000
}
const fn default_jwks_refresh_min_interval_ms() -> u64 {
    60_000
}
const fn default_jwks_max_age_ms() -> u64 {
    3_600_000
}
const fn default_jwks_fetch_timeout_ms() -> u64 {
    5_000
}
const fn default_verified_tokens() -> usize {
    10_000
}

impl JwtSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.issuer.is_empty() || self.audience.is_empty() {
            return Err(ConfigError::invalid(
                "auth.jwt",
                "needs issuer and audience: a token is accepted only if it was issued by your provider for \
                 this service",
            ));
        }
        match (&self.jwks_file, &self.jwks_url) {
            (Some(_), None) => {}
            (None, Some(url)) => {
                let valid = url
                    .parse::<http::Uri>()
                    .ok()
                    .filter(|uri| matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some());
                if valid.is_none() {
                    return Err(ConfigError::invalid(
                        "auth.jwt.jwks_url",
                        format!("is {url:?}, not an http or https URL with a host"),
                    ));
                }
            }
            _ => {
                return Err(ConfigError::invalid("auth.jwt", "needs exactly one of jwks_file and jwks_url"));
            }
        }
        if self.subject_claim.is_empty() {
            return Err(ConfigError::invalid("auth.jwt.subject_claim", "is empty"));
        }
        if self.jwks_fetch_timeout_ms == 0 || self.jwks_max_age_ms < self.jwks_refresh_min_interval_ms {
            return Err(ConfigError::invalid(
                "auth.jwt",
                "needs jwks_fetch_timeout_ms above 0 and jwks_max_age_ms at least jwks_refresh_min_interval_ms",
            ));
        }
        Ok(())
    }
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
                 auth.mode = \"api_key\" with auth.api_keys or \"jwt\" with [auth.jwt], or \
                 auth.allow_anonymous = true if a gateway in front authenticates",
            ));
        }
        if self.mode == AuthMode::ApiKey && self.api_keys.is_empty() {
            return Err(ConfigError::invalid(
                "auth.api_keys",
                "must list at least one key when auth.mode is \"api_key\"",
            ));
        }
        match (self.mode, &self.jwt) {
            (AuthMode::Jwt, Some(jwt)) => jwt.validate()?,
            (AuthMode::Jwt, None) => {
                return Err(ConfigError::invalid(
                    "auth.jwt",
                    "is missing: auth.mode = \"jwt\" needs [auth.jwt] with issuer, audience and jwks_file or jwks_url",
                ));
            }
            _ => {}
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
