//! `auth.mode = "jwt"`: bearer tokens from an identity provider or a gateway.
//!
//! A token is accepted when a key of the provider's set ([`Jwks`]) verifies its signature with
//! the algorithm the token names, and that algorithm is one the key allows (the key's `alg`, or
//! its type's algorithms: see `jwks.rs`); when `exp` has not passed and `nbf` has (give or take
//! `leeway_ms`); when `iss` is the configured issuer and `aud` includes the configured audience.
//! `alg: none` does not even parse. The caller is the subject claim, its scopes those of `scope`
//! (a space-separated string, RFC 8693) or `scp` (a string or an array, as Azure AD and Okta
//! write it) that keel knows.
//!
//! jsonwebtoken (the most used JWT crate, kept up) parses, validates and verifies signatures,
//! with its RustCrypto backend.
//!
//! **Verified tokens are remembered** ([`VerifiedTokens`]), by the SHA-256 of the token, until
//! their `exp` (and its leeway) or the next load of the key set, whichever comes first: a caller
//! sends the same token for its whole life, and an RSA verification costs about ten times a
//! whole request. Only tokens that passed every check are remembered, so refused ones cost the
//! full check each time, and a hostile client cannot fill the memory with junk.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::jwks::{CURVE_ALGORITHMS, HMAC_ALGORITHMS, Jwks, JwksError, Lookup, RSA_ALGORITHMS};
use super::{Caller, Refusal};
use keel_config::{JwtSettings, Scope, valid_caller_id};

pub struct TokenVerifier {
    jwks: Arc<Jwks>,
    /// What a token of each algorithm is validated against: that algorithm alone, and the
    /// configured issuer, audience and leeway. Made once, not per request.
    validations: Vec<(Algorithm, Validation)>,
    subject_claim: String,
    leeway: u64,
    verified: VerifiedTokens,
}

/// Tokens that passed, by their SHA-256: a cryptographic digest, so that no token can be made to
/// collide with another caller's. At most `capacity`; when full, it starts again empty (only
/// valid tokens get in, so filling it takes as many signed tokens).
pub struct VerifiedTokens {
    tokens: Mutex<HashMap<[u8; 32], Verified>>,
    capacity: usize,
}

struct Verified {
    caller: Caller,
    /// `exp`, in seconds since the epoch.
    expires: u64,
    /// The key set's generation it was verified against.
    generation: u64,
}

impl VerifiedTokens {
    pub fn new(capacity: usize) -> Self {
        Self { tokens: Mutex::new(HashMap::new()), capacity }
    }

    /// Whether tokens are remembered at all (`verified_tokens` above 0).
    pub fn remembers(&self) -> bool {
        self.capacity > 0
    }

    /// The caller of a token verified against this `generation` of the key set, if it has not
    /// expired at `now` (give or take `leeway`).
    pub fn get(&self, digest: &[u8; 32], generation: u64, now: u64, leeway: u64) -> Option<Caller> {
        if self.capacity == 0 {
            return None;
        }
        let tokens = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        let verified = tokens.get(digest)?;
        (verified.generation == generation && verified.expires.saturating_add(leeway) >= now)
            .then(|| verified.caller.clone())
    }

    pub fn insert(&self, digest: [u8; 32], caller: Caller, expires: u64, generation: u64) {
        if self.capacity == 0 {
            return;
        }
        let mut tokens = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        if tokens.len() >= self.capacity && !tokens.contains_key(&digest) {
            tokens.clear();
        }
        tokens.insert(digest, Verified { caller, expires, generation });
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.tokens.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

impl TokenVerifier {
    pub fn new(settings: &JwtSettings) -> Self {
        let leeway = Duration::from_millis(settings.leeway_ms).as_secs_f64().ceil() as u64;
        // Every algorithm jsonwebtoken knows.
        let validations = [&HMAC_ALGORITHMS[..], &RSA_ALGORITHMS, &CURVE_ALGORITHMS]
            .concat()
            .into_iter()
            .map(|algorithm| {
                let mut validation = Validation::new(algorithm);
                validation.leeway = leeway;
                validation.validate_nbf = true;
                validation.set_issuer(&[&settings.issuer]);
                validation.set_audience(&[&settings.audience]);
                validation.set_required_spec_claims(&["exp", "iss", "aud"]);
                (algorithm, validation)
            })
            .collect();
        Self {
            jwks: Arc::new(Jwks::new(settings)),
            validations,
            subject_claim: settings.subject_claim.clone(),
            leeway,
            verified: VerifiedTokens::new(settings.verified_tokens),
        }
    }

    /// Loads the key set: at start, where a failure stops the replica.
    pub async fn load_keys(&self) -> Result<usize, JwksError> {
        self.jwks.load().await
    }

    /// The caller a token authenticates.
    pub async fn caller(&self, token: &[u8]) -> Result<Caller, Refusal> {
        let digest = self.verified.remembers().then(|| <[u8; 32]>::from(Sha256::digest(token)));
        if let Some(digest) = &digest {
            let now = jsonwebtoken::get_current_timestamp();
            let generation = self.jwks.current_set().generation;
            if let Some(caller) = self.verified.get(digest, generation, now, self.leeway) {
                return Ok(caller);
            }
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| Refusal::MalformedToken)?;
        let kid = header.kid.as_deref();
        let keys = self.jwks.keys_for(kid).await;
        let generation = keys.generation;
        let key = match keys.find(kid, header.alg) {
            Lookup::Found(key) => key,
            Lookup::NoSuchKey => return Err(Refusal::UnknownSigningKey),
            Lookup::WrongAlgorithm => return Err(Refusal::AlgorithmNotAllowed),
        };
        let validation = self
            .validations
            .iter()
            .find_map(|(algorithm, validation)| (*algorithm == header.alg).then_some(validation))
            .ok_or(Refusal::AlgorithmNotAllowed)?;
        let token = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, validation).map_err(refusal)?;
        let claims = token.claims;
        let subject = match claims.get(&self.subject_claim) {
            Some(Value::String(subject)) if valid_caller_id(subject) => subject.as_str(),
            _ => return Err(Refusal::NoSubject),
        };
        let caller = Caller::new(subject, &scopes(&claims));
        // `exp` passed validation, so it is a number.
        let expires = claims.get("exp").and_then(Value::as_f64).unwrap_or(0.0) as u64;
        if let Some(digest) = digest {
            self.verified.insert(digest, caller.clone(), expires, generation);
        }
        Ok(caller)
    }
}

/// The scopes keel knows among the token's `scope` and `scp` claims.
fn scopes(claims: &Map<String, Value>) -> Vec<Scope> {
    let mut names: Vec<&str> = Vec::new();
    for claim in ["scope", "scp"] {
        match claims.get(claim) {
            Some(Value::String(spaced)) => names.extend(spaced.split(' ')),
            Some(Value::Array(items)) => names.extend(items.iter().filter_map(Value::as_str)),
            _ => {}
        }
    }
    [Scope::Read, Scope::Write, Scope::Admin].into_iter().filter(|scope| names.contains(&scope.name())).collect()
}

fn refusal(error: jsonwebtoken::errors::Error) -> Refusal {
    match error.kind() {
        ErrorKind::ExpiredSignature => Refusal::Expired,
        ErrorKind::ImmatureSignature => Refusal::NotYetValid,
        ErrorKind::InvalidIssuer => Refusal::WrongIssuer,
        ErrorKind::InvalidAudience => Refusal::WrongAudience,
        ErrorKind::InvalidSignature => Refusal::BadSignature,
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidKeyFormat => Refusal::AlgorithmNotAllowed,
        ErrorKind::MissingRequiredClaim(_) | ErrorKind::InvalidClaimFormat(_) => Refusal::MissingClaim,
        _ => Refusal::MalformedToken,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_verified_token_is_remembered_until_it_expires_or_the_keys_reload() {
        let tokens = VerifiedTokens::new(2);
        let caller = Caller::new("alice", &[Scope::Read]);
        tokens.insert([1; 32], caller, 1_000, 7);
        assert_eq!(tokens.get(&[1; 32], 7, 1_000, 0).map(|c| c.id().to_owned()), Some("alice".to_owned()));
        assert!(tokens.get(&[1; 32], 7, 1_030, 30).is_some(), "within the leeway");
        assert!(tokens.get(&[1; 32], 7, 1_031, 30).is_none(), "expired");
        assert!(tokens.get(&[1; 32], 8, 1_000, 0).is_none(), "the key set was loaded again");
        assert!(tokens.get(&[2; 32], 7, 1_000, 0).is_none(), "another token");
        tokens.insert([2; 32], Caller::new("bob", &[]), 1_000, 7);
        tokens.insert([3; 32], Caller::new("carol", &[]), 1_000, 7);
        assert_eq!(tokens.len(), 1, "full: started again empty");
        let off = VerifiedTokens::new(0);
        off.insert([1; 32], Caller::new("alice", &[]), 1_000, 7);
        assert!(off.get(&[1; 32], 7, 1_000, 0).is_none() && off.len() == 0);
    }

    #[test]
    fn scopes_come_from_scope_or_scp() {
        let claims = |value: Value| value.as_object().cloned().unwrap();
        assert_eq!(scopes(&claims(json!({"scope": "openid operations:read"}))), [Scope::Read]);
        assert_eq!(scopes(&claims(json!({"scp": ["operations:write", "x"]}))), [Scope::Write]);
        assert_eq!(scopes(&claims(json!({"scp": "operations:admin operations:read"}))), [Scope::Read, Scope::Admin]);
        assert!(scopes(&claims(json!({"scope": "operations:reader", "scp": 3}))).is_empty());
    }
}
