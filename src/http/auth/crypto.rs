//! jsonwebtoken's signature algorithms, done by ring.
//!
//! jsonwebtoken parses tokens and validates claims; since version 10 it leaves the signatures to
//! a [`CryptoProvider`], and ships two: RustCrypto's crates or aws-lc-rs. keel already links ring
//! (rustls uses it, for the Postgres driver and for fetching a JWKS), which has every algorithm a
//! JWT names but P-521. This provider hands the work to it, so that JWT support adds no second
//! implementation of RSA, ECDSA and Ed25519 to the binary: RustCrypto's provider instead of this
//! one made the release binary 818 KB larger (measured).
//!
//! Only verification runs in the server. Signing is here too, for tests and tools that make
//! tokens (keel's own test suite does), at the cost of a few lines.

use std::sync::Once;

use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{Error, ErrorKind};
use jsonwebtoken::jwk::{EllipticCurve, ThumbprintHash};
use jsonwebtoken::signature::{self, Signer, Verifier};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, DecodingKeyKind, EncodingKey};
use ring::rand::SystemRandom;
use ring::signature::{self as ring_signature, KeyPair as _};
use ring::{digest, hmac};

/// Makes ring jsonwebtoken's cryptography for this process. Idempotent; [`Authenticator`]
/// (super::Authenticator) calls it before it checks a token, and so may a test that signs one.
pub fn install() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        // Fails only if another provider was installed first, and then that one is used.
        let _ = RING.install_default();
    });
}

static RING: CryptoProvider = CryptoProvider {
    signer_factory: new_signer,
    verifier_factory: new_verifier,
    key_utils: KeyUtils {
        rsa_pub_components_from_private_key: rsa_public_components,
        rsa_pub_components_from_public_key: |_| Err(unsupported("RSA public keys in DER")),
        ec_pub_components_from_private_key: ec_public_components,
        ed_pub_components_from_private_key: ed_public_component,
        compute_digest,
    },
};

fn unsupported(what: &str) -> Error {
    ErrorKind::Provider(format!("{what}: not supported by keel's ring provider")).into()
}

/// A key of one family may only serve that family's algorithms: this is what refuses a token
/// that says HS256 and is "signed" with an RSA public key as the HMAC secret.
fn check_family(algorithm: Algorithm, family: AlgorithmFamily) -> Result<(), Error> {
    if algorithm.family() == family { Ok(()) } else { Err(ErrorKind::InvalidAlgorithm.into()) }
}

fn hmac_algorithm(algorithm: Algorithm) -> Option<hmac::Algorithm> {
    match algorithm {
        Algorithm::HS256 => Some(hmac::HMAC_SHA256),
        Algorithm::HS384 => Some(hmac::HMAC_SHA384),
        Algorithm::HS512 => Some(hmac::HMAC_SHA512),
        _ => None,
    }
}

fn rsa_parameters(algorithm: Algorithm) -> Option<&'static ring_signature::RsaParameters> {
    match algorithm {
        Algorithm::RS256 => Some(&ring_signature::RSA_PKCS1_2048_8192_SHA256),
        Algorithm::RS384 => Some(&ring_signature::RSA_PKCS1_2048_8192_SHA384),
        Algorithm::RS512 => Some(&ring_signature::RSA_PKCS1_2048_8192_SHA512),
        Algorithm::PS256 => Some(&ring_signature::RSA_PSS_2048_8192_SHA256),
        Algorithm::PS384 => Some(&ring_signature::RSA_PSS_2048_8192_SHA384),
        Algorithm::PS512 => Some(&ring_signature::RSA_PSS_2048_8192_SHA512),
        _ => None,
    }
}

/// The verification algorithm of a key given as bytes (an EC point, an Ed25519 key, or an RSA
/// public key in PKCS#1 DER).
fn byte_key_algorithm(algorithm: Algorithm) -> Option<&'static dyn ring_signature::VerificationAlgorithm> {
    match algorithm {
        Algorithm::ES256 => Some(&ring_signature::ECDSA_P256_SHA256_FIXED),
        Algorithm::ES384 => Some(&ring_signature::ECDSA_P384_SHA384_FIXED),
        Algorithm::EdDSA => Some(&ring_signature::ED25519),
        _ => rsa_parameters(algorithm).map(|parameters| parameters as &dyn ring_signature::VerificationAlgorithm),
    }
}

enum VerifyingKey {
    Hmac(hmac::Key),
    RsaComponents(ring_signature::RsaPublicKeyComponents<Vec<u8>>, &'static ring_signature::RsaParameters),
    Bytes(ring_signature::UnparsedPublicKey<Vec<u8>>),
}

struct RingVerifier {
    algorithm: Algorithm,
    key: VerifyingKey,
}

fn new_verifier(algorithm: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>, Error> {
    let algorithm = *algorithm;
    check_family(algorithm, key.family())?;
    let verifying = match (key.kind(), hmac_algorithm(algorithm), rsa_parameters(algorithm)) {
        (DecodingKeyKind::SecretOrDer(secret), Some(hmac), _) => VerifyingKey::Hmac(hmac::Key::new(hmac, secret)),
        (DecodingKeyKind::RsaModulusExponent { n, e }, _, Some(parameters)) => VerifyingKey::RsaComponents(
            ring_signature::RsaPublicKeyComponents { n: n.clone(), e: e.clone() },
            parameters,
        ),
        (DecodingKeyKind::SecretOrDer(bytes), None, _) => {
            let verification = byte_key_algorithm(algorithm).ok_or(ErrorKind::UnsupportedAlgorithm)?;
            VerifyingKey::Bytes(ring_signature::UnparsedPublicKey::new(verification, bytes.clone()))
        }
        _ => return Err(ErrorKind::InvalidKeyFormat.into()),
    };
    Ok(Box::new(RingVerifier { algorithm, key: verifying }))
}

impl Verifier<Vec<u8>> for RingVerifier {
    fn verify(&self, message: &[u8], signature: &Vec<u8>) -> Result<(), signature::Error> {
        let verified = match &self.key {
            // ring compares the tags in constant time.
            VerifyingKey::Hmac(key) => hmac::verify(key, message, signature),
            VerifyingKey::RsaComponents(key, parameters) => key.verify(parameters, message, signature),
            VerifyingKey::Bytes(key) => key.verify(message, signature),
        };
        verified.map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for RingVerifier {
    fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}

/// Signing keys as jsonwebtoken's `EncodingKey` holds them: an HMAC secret, an RSA private key
/// in PKCS#1 DER, or an EC or Ed25519 private key in PKCS#8 DER.
struct RingSigner {
    algorithm: Algorithm,
    key: SigningKey,
}

enum SigningKey {
    Hmac(hmac::Key),
    Rsa(ring_signature::RsaKeyPair, &'static dyn ring_signature::RsaEncoding),
    Ecdsa(ring_signature::EcdsaKeyPair),
    Ed25519(ring_signature::Ed25519KeyPair),
}

fn rejected(error: ring::error::KeyRejected) -> Error {
    ErrorKind::Provider(format!("key rejected: {error}")).into()
}

fn new_signer(algorithm: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>, Error> {
    let algorithm = *algorithm;
    check_family(algorithm, key.family())?;
    let der = key.as_bytes();
    let signing = match algorithm {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
            SigningKey::Hmac(hmac::Key::new(hmac_algorithm(algorithm).ok_or(ErrorKind::UnsupportedAlgorithm)?, der))
        }
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512 => {
            let padding: &'static dyn ring_signature::RsaEncoding = match algorithm {
                Algorithm::RS256 => &ring_signature::RSA_PKCS1_SHA256,
                Algorithm::RS384 => &ring_signature::RSA_PKCS1_SHA384,
                Algorithm::RS512 => &ring_signature::RSA_PKCS1_SHA512,
                Algorithm::PS256 => &ring_signature::RSA_PSS_SHA256,
                Algorithm::PS384 => &ring_signature::RSA_PSS_SHA384,
                _ => &ring_signature::RSA_PSS_SHA512,
            };
            SigningKey::Rsa(ring_signature::RsaKeyPair::from_der(der).map_err(rejected)?, padding)
        }
        Algorithm::ES256 | Algorithm::ES384 => {
            let signing = if algorithm == Algorithm::ES256 {
                &ring_signature::ECDSA_P256_SHA256_FIXED_SIGNING
            } else {
                &ring_signature::ECDSA_P384_SHA384_FIXED_SIGNING
            };
            SigningKey::Ecdsa(
                ring_signature::EcdsaKeyPair::from_pkcs8(signing, der, &SystemRandom::new()).map_err(rejected)?,
            )
        }
        Algorithm::EdDSA => {
            SigningKey::Ed25519(ring_signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(rejected)?)
        }
        _ => return Err(ErrorKind::UnsupportedAlgorithm.into()),
    };
    Ok(Box::new(RingSigner { algorithm, key: signing }))
}

impl Signer<Vec<u8>> for RingSigner {
    fn try_sign(&self, message: &[u8]) -> Result<Vec<u8>, signature::Error> {
        let random = SystemRandom::new();
        match &self.key {
            SigningKey::Hmac(key) => Ok(hmac::sign(key, message).as_ref().to_vec()),
            SigningKey::Rsa(key, padding) => {
                let mut signature = vec![0; key.public().modulus_len()];
                key.sign(*padding, &random, message, &mut signature).map_err(|_| signature::Error::new())?;
                Ok(signature)
            }
            SigningKey::Ecdsa(key) => key
                .sign(&random, message)
                .map(|signature| signature.as_ref().to_vec())
                .map_err(|_| signature::Error::new()),
            SigningKey::Ed25519(key) => Ok(key.sign(message).as_ref().to_vec()),
        }
    }
}

impl JwtSigner for RingSigner {
    fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}

/// For `Jwk::from_encoding_key`: the public half of a signing key, as a JWK spells it.
fn rsa_public_components(private_der: &[u8]) -> Result<(Vec<u8>, Vec<u8>), Error> {
    let key = ring_signature::RsaKeyPair::from_der(private_der).map_err(rejected)?;
    let public = ring_signature::RsaPublicKeyComponents::<Vec<u8>>::from(key.public());
    Ok((public.n, public.e))
}

fn ec_public_components(private_der: &[u8], algorithm: Algorithm) -> Result<(EllipticCurve, Vec<u8>, Vec<u8>), Error> {
    let (curve, signing, coordinate_len) = match algorithm {
        Algorithm::ES256 => (EllipticCurve::P256, &ring_signature::ECDSA_P256_SHA256_FIXED_SIGNING, 32),
        Algorithm::ES384 => (EllipticCurve::P384, &ring_signature::ECDSA_P384_SHA384_FIXED_SIGNING, 48),
        _ => return Err(ErrorKind::InvalidEcdsaKey.into()),
    };
    let key = ring_signature::EcdsaKeyPair::from_pkcs8(signing, private_der, &SystemRandom::new()).map_err(rejected)?;
    // Uncompressed: 0x04, then x, then y.
    let point = key.public_key().as_ref();
    let (x, y) = point.get(1..).ok_or(ErrorKind::InvalidEcdsaKey)?.split_at(coordinate_len);
    Ok((curve, x.to_vec(), y.to_vec()))
}

fn ed_public_component(private_der: &[u8], curve: &EllipticCurve) -> Result<Vec<u8>, Error> {
    if *curve != EllipticCurve::Ed25519 {
        return Err(ErrorKind::InvalidEddsaKey.into());
    }
    let key = ring_signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(private_der).map_err(rejected)?;
    Ok(key.public_key().as_ref().to_vec())
}

fn compute_digest(data: &[u8], hash: ThumbprintHash) -> Result<Vec<u8>, Error> {
    let algorithm = match hash {
        ThumbprintHash::SHA256 => &digest::SHA256,
        ThumbprintHash::SHA384 => &digest::SHA384,
        ThumbprintHash::SHA512 => &digest::SHA512,
        _ => return Err(unsupported("this thumbprint hash")),
    };
    Ok(digest::digest(algorithm, data).as_ref().to_vec())
}
