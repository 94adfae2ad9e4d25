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
//! jsonwebtoken (the most used JWT crate, kept up) parses and validates; ring verifies
//! signatures (`crypto.rs`).

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};

use super::jwks::{CURVE_ALGORITHMS, HMAC_ALGORITHMS, Jwks, JwksError, Lookup, RSA_ALGORITHMS};
use super::{Caller, Refusal};
use crate::config::{JwtSettings, Scope, valid_caller_id};

pub struct TokenVerifier {
    jwks: Arc<Jwks>,
    /// What a token of each algorithm is validated against: that algorithm alone, and the
    /// configured issuer, audience and leeway. Made once, not per request.
    validations: Vec<(Algorithm, Validation)>,
    subject_claim: String,
}

impl TokenVerifier {
    pub fn new(settings: &JwtSettings) -> Self {
        super::crypto::install();
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
        Self { jwks: Arc::new(Jwks::new(settings)), validations, subject_claim: settings.subject_claim.clone() }
    }

    /// Loads the key set: at start, where a failure stops the replica.
    pub async fn load_keys(&self) -> Result<usize, JwksError> {
        self.jwks.load().await
    }

    /// The caller a token authenticates.
    pub async fn caller(&self, token: &[u8]) -> Result<Caller, Refusal> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| Refusal::MalformedToken)?;
        let kid = header.kid.as_deref();
        let keys = self.jwks.keys_for(kid).await;
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
        Ok(Caller::new(subject, &scopes(&claims)))
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
    fn scopes_come_from_scope_or_scp() {
        let claims = |value: Value| value.as_object().cloned().unwrap();
        assert_eq!(scopes(&claims(json!({"scope": "openid operations:read"}))), [Scope::Read]);
        assert_eq!(scopes(&claims(json!({"scp": ["operations:write", "x"]}))), [Scope::Write]);
        assert_eq!(scopes(&claims(json!({"scp": "operations:admin operations:read"}))), [Scope::Read, Scope::Admin]);
        assert!(scopes(&claims(json!({"scope": "operations:reader", "scp": 3}))).is_empty());
    }
}
