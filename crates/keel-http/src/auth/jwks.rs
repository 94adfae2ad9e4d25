//! The keys JWTs are checked against: a JSON Web Key Set (RFC 7517), read from a file or fetched
//! from the identity provider's URL.
//!
//! The set is loaded at start (a replica that cannot load it does not start), kept in memory,
//! and loaded again in two cases: a token names a `kid` the set lacks (the provider rotated its
//! keys), at most once per `jwks_refresh_min_interval_ms` (counted from the last reload, not from
//! the start) so that forged `kid`s cannot make keel hammer the provider; and in the background once the set is older than `jwks_max_age_ms`, so
//! that a key the provider withdrew stops being accepted. A failed reload keeps the keys already
//! loaded.
//!
//! The URL is fetched with reqwest over rustls (ring, webpki roots): the TLS stack the Postgres
//! driver uses, so the binary carries one. Redirects are not followed.

use std::path::PathBuf;
use std::sync::{Arc, LazyLock, RwLock};
use std::time::Duration;

use axum::http::{StatusCode, Uri};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use tokio::time::Instant;

use keel_config::JwtSettings;

/// The largest key set keel reads: a provider's has a handful of keys, a few KB.
const MAX_JWKS_BYTES: usize = 256 * 1024;

/// Why a key set could not be loaded. Logged; never shown to a client.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot connect to {uri}: {}", chain(source))]
    Connect { uri: Uri, source: reqwest::Error },
    #[error("HTTP with {uri} failed: {}", chain(source.as_ref()))]
    Http { uri: Uri, source: Box<dyn std::error::Error + Send + Sync> },
    #[error("{uri} answered {status}")]
    Status { uri: Uri, status: StatusCode },
    #[error("fetching {uri} took longer than {timeout:?}")]
    Timeout { uri: Uri, timeout: Duration },
    #[error("the key set is not a JWKS: {0}")]
    NotAKeySet(#[source] serde_json::Error),
    #[error("the key set has no key keel can verify signatures with")]
    NoUsableKey,
}

/// `error` and each of its sources, joined: reqwest's own message ("error sending request")
/// says little without the TCP or TLS failure beneath it.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// One verification key: its `kid`, the algorithms it may verify, and the key.
pub struct VerificationKey {
    pub kid: Option<String>,
    algorithms: Vec<Algorithm>,
    pub key: DecodingKey,
}

/// What a lookup found.
pub enum Lookup<'a> {
    Found(&'a VerificationKey),
    /// No key has this `kid` (or, for a token without one, no key or several keys fit).
    NoSuchKey,
    /// The key the token names does not verify the token's algorithm.
    WrongAlgorithm,
}

/// A loaded key set.
#[derive(Default)]
pub struct KeySet {
    keys: Vec<VerificationKey>,
    loaded_at: Option<Instant>,
    /// Which load this is (1, 2, …; 0 before the first): what a token verified against this set
    /// is remembered with, so that a reload forgets it (a withdrawn key's tokens stop working).
    pub generation: u64,
}

impl KeySet {
    /// Parses a JWKS. A key keel cannot use (an encryption key, an unknown type, P-521, a malformed
    /// one) is skipped with a warning, so that one odd key does not take the others down with it.
    pub fn parse(json: &[u8]) -> Result<Self, JwksError> {
        #[derive(serde::Deserialize)]
        struct RawSet {
            keys: Vec<serde_json::Value>,
        }
        let raw: RawSet = serde_json::from_slice(json).map_err(JwksError::NotAKeySet)?;
        let keys: Vec<VerificationKey> = raw.keys.into_iter().filter_map(usable_key).collect();
        if keys.is_empty() {
            return Err(JwksError::NoUsableKey);
        }
        Ok(Self { keys, loaded_at: Some(Instant::now()), generation: 0 })
    }

    pub(super) fn len(&self) -> usize {
        self.keys.len()
    }

    fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|key| key.kid.as_deref() == Some(kid))
    }

    /// The key that verifies a token with this `kid` and `alg`. Without a `kid`, the one key that
    /// verifies `alg`, if there is exactly one.
    pub fn find(&self, kid: Option<&str>, algorithm: Algorithm) -> Lookup<'_> {
        match kid {
            Some(kid) => match self.keys.iter().find(|key| key.kid.as_deref() == Some(kid)) {
                Some(key) if key.algorithms.contains(&algorithm) => Lookup::Found(key),
                Some(_) => Lookup::WrongAlgorithm,
                None => Lookup::NoSuchKey,
            },
            None => {
                let mut fitting = self.keys.iter().filter(|key| key.algorithms.contains(&algorithm));
                match (fitting.next(), fitting.next()) {
                    (Some(key), None) => Lookup::Found(key),
                    _ => Lookup::NoSuchKey,
                }
            }
        }
    }
}

pub(super) const RSA_ALGORITHMS: [Algorithm; 6] =
    [Algorithm::RS256, Algorithm::RS384, Algorithm::RS512, Algorithm::PS256, Algorithm::PS384, Algorithm::PS512];
pub(super) const HMAC_ALGORITHMS: [Algorithm; 3] = [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];
pub(super) const CURVE_ALGORITHMS: [Algorithm; 3] = [Algorithm::ES256, Algorithm::ES384, Algorithm::EdDSA];

/// A JWK as a verification key, with the algorithms it may verify: the one its `alg` names, or
/// else every algorithm of its type. The type decides, never the token: an RSA public key never
/// verifies an HS256 token.
fn usable_key(raw: serde_json::Value) -> Option<VerificationKey> {
    let skip = |why: &str, kid: Option<&str>| {
        tracing::warn!(kid, "JWKS: a key is skipped: {why}");
    };
    let jwk: Jwk = match serde_json::from_value(raw) {
        Ok(jwk) => jwk,
        Err(error) => {
            skip(&format!("not a valid JWK ({error})"), None);
            return None;
        }
    };
    let kid = jwk.common.key_id.clone();
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        skip("its use is encryption", kid.as_deref());
        return None;
    }
    let by_type: &[Algorithm] = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => &RSA_ALGORITHMS,
        AlgorithmParameters::EllipticCurve(params) if params.curve == EllipticCurve::P256 => &[Algorithm::ES256],
        AlgorithmParameters::EllipticCurve(params) if params.curve == EllipticCurve::P384 => &[Algorithm::ES384],
        AlgorithmParameters::OctetKeyPair(params) if params.curve == EllipticCurve::Ed25519 => &[Algorithm::EdDSA],
        AlgorithmParameters::OctetKey(_) => &HMAC_ALGORITHMS,
        _ => {
            skip("its type or curve is not supported (RSA, EC P-256 and P-384, Ed25519 and oct are)", kid.as_deref());
            return None;
        }
    };
    let algorithms = match jwk.common.key_algorithm {
        None => by_type.to_vec(),
        Some(named) => match named.to_string().parse::<Algorithm>() {
            Ok(algorithm) if by_type.contains(&algorithm) => vec![algorithm],
            _ => {
                skip(&format!("its alg {named} does not fit its type"), kid.as_deref());
                return None;
            }
        },
    };
    match DecodingKey::from_jwk(&jwk) {
        Ok(key) => Some(VerificationKey { kid, algorithms, key }),
        Err(error) => {
            skip(&format!("its parameters are not valid ({error})"), kid.as_deref());
            None
        }
    }
}

/// Where the key set comes from.
#[derive(Debug, Clone)]
enum KeySource {
    File(PathBuf),
    Url(Uri),
}

impl KeySource {
    async fn load(&self, timeout: Duration) -> Result<KeySet, JwksError> {
        let json = match self {
            Self::File(path) => {
                let path = path.clone();
                tokio::task::spawn_blocking(move || {
                    std::fs::read(&path).map_err(|source| JwksError::Read { path: path.clone(), source })
                })
                .await
                .map_err(|join| JwksError::Read { path: PathBuf::new(), source: std::io::Error::other(join) })??
            }
            Self::Url(uri) => tokio::time::timeout(timeout, fetch(uri))
                .await
                .map_err(|_| JwksError::Timeout { uri: uri.clone(), timeout })??,
        };
        KeySet::parse(&json)
    }
}

/// The key set in use, and when and how to load it again.
pub struct Jwks {
    source: KeySource,
    keys: RwLock<Arc<KeySet>>,
    /// When the last load was tried; held through a load, so that one runs at a time.
    last_attempt: tokio::sync::Mutex<Option<Instant>>,
    refresh_min_interval: Duration,
    max_age: Duration,
    fetch_timeout: Duration,
}

impl Jwks {
    /// An empty set, from validated settings; [`Jwks::load`] fills it.
    pub fn new(settings: &JwtSettings) -> Self {
        let source = match (&settings.jwks_file, &settings.jwks_url) {
            (Some(path), _) => KeySource::File(path.clone()),
            (None, url) => KeySource::Url(url.as_deref().unwrap_or_default().parse().unwrap_or_default()),
        };
        Self {
            source,
            keys: RwLock::new(Arc::new(KeySet::default())),
            last_attempt: tokio::sync::Mutex::new(None),
            refresh_min_interval: Duration::from_millis(settings.jwks_refresh_min_interval_ms),
            max_age: Duration::from_millis(settings.jwks_max_age_ms),
            fetch_timeout: Duration::from_millis(settings.jwks_fetch_timeout_ms),
        }
    }

    /// Loads the set now: at start. This load does not count against
    /// `jwks_refresh_min_interval_ms`, so that a key the provider adds just after a replica starts
    /// is picked up by the first token that names it.
    pub async fn load(&self) -> Result<usize, JwksError> {
        let _one_at_a_time = self.last_attempt.lock().await;
        let set = self.source.load(self.fetch_timeout).await?;
        let count = set.len();
        self.replace(set);
        Ok(count)
    }

    fn current(&self) -> Arc<KeySet> {
        Arc::clone(&self.keys.read().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    fn replace(&self, mut set: KeySet) {
        let mut keys = self.keys.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        set.generation = keys.generation + 1;
        *keys = Arc::new(set);
    }

    /// The set in use, reloaded in the background once it is older than `jwks_max_age_ms`.
    pub fn current_set(self: &Arc<Self>) -> Arc<KeySet> {
        let set = self.current();
        if set.loaded_at.is_none_or(|at| at.elapsed() >= self.max_age) && self.reload_is_due() {
            let jwks = Arc::clone(self);
            tokio::spawn(async move { jwks.reload("the key set is older than jwks_max_age_ms").await });
        }
        set
    }

    /// The set to check a token naming `kid` against: [`Jwks::current_set`], loaded again first
    /// if it lacks that `kid` (at most once per `jwks_refresh_min_interval_ms`).
    pub async fn keys_for(self: &Arc<Self>, kid: Option<&str>) -> Arc<KeySet> {
        let set = self.current_set();
        match kid {
            Some(kid) if !set.has_kid(kid) && self.reload("a token names a kid the key set lacks").await => {
                self.current()
            }
            _ => set,
        }
    }

    /// Whether no load runs and none was tried within `jwks_refresh_min_interval_ms`: checked
    /// before a background reload is spawned, so that a provider that stays down costs each
    /// request a lock attempt, not a task.
    fn reload_is_due(&self) -> bool {
        self.last_attempt
            .try_lock()
            .is_ok_and(|last_attempt| last_attempt.is_none_or(|at| at.elapsed() >= self.refresh_min_interval))
    }

    /// Loads the set again unless a load was tried within `jwks_refresh_min_interval_ms`; whether
    /// it did. A failure keeps the keys already loaded.
    async fn reload(&self, why: &'static str) -> bool {
        let mut last_attempt = self.last_attempt.lock().await;
        if last_attempt.is_some_and(|at| at.elapsed() < self.refresh_min_interval) {
            return false;
        }
        *last_attempt = Some(Instant::now());
        match self.source.load(self.fetch_timeout).await {
            Ok(set) => {
                tracing::info!(keys = set.len(), why, "JWKS loaded again");
                self.replace(set);
                true
            }
            Err(error) => {
                tracing::warn!(%error, why, "JWKS: cannot load the key set again; the keys already loaded stay in use");
                false
            }
        }
    }
}

/// One client for every fetch of the process: reqwest with rustls, the TLS stack the Postgres
/// driver uses. Redirects are not followed: a key set must come from the URL configured, not from
/// wherever a compromised or misconfigured server points.
static CLIENT: LazyLock<Result<reqwest::Client, String>> = LazyLock::new(|| {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!(env!("CARGO_PKG_NAME"), "/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|error| error.to_string())
});

/// GET `uri`; the body of a `200`, at most [`MAX_JWKS_BYTES`]. The caller bounds the time.
async fn fetch(uri: &Uri) -> Result<Vec<u8>, JwksError> {
    let http_error = |source: Box<dyn std::error::Error + Send + Sync>| JwksError::Http { uri: uri.clone(), source };
    let client = CLIENT.as_ref().map_err(|error| http_error(error.clone().into()))?;
    let mut response = client
        .get(uri.to_string())
        .header(reqwest::header::ACCEPT, "application/jwk-set+json, application/json")
        .send()
        .await
        .map_err(|error| {
            if error.is_connect() {
                JwksError::Connect { uri: uri.clone(), source: error }
            } else {
                http_error(error.into())
            }
        })?;
    let status = response.status();
    if status != reqwest::StatusCode::OK {
        let status = StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
        return Err(JwksError::Status { uri: uri.clone(), status });
    }
    let too_large = || http_error(format!("the key set is over {MAX_JWKS_BYTES} bytes").into());
    if response.content_length().is_some_and(|length| length > MAX_JWKS_BYTES as u64) {
        return Err(too_large());
    }
    // Read chunk by chunk, so that a server that sends more than it announced (or announces
    // nothing) is cut off at the limit rather than buffered whole.
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|error| http_error(error.into()))? {
        if body.len() + chunk.len() > MAX_JWKS_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
