//! `auth.mode = "api_key"`: keys configured by id, as SHA-256 digests.
//!
//! **Keys are stored as digests.** The configuration holds the SHA-256 of each key (`keel
//! hash-key`), never the key. A presented key is hashed and compared with every configured
//! digest in constant time (`subtle`), all of them, without stopping at a match: how long a
//! refusal takes says nothing about how close a guess was, or which key it was close to. A
//! digest of a random key is as good as the key for this, and unlike a password it needs no
//! slow hash: a key has 256 bits of entropy, so no dictionary finds it.

use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};

use super::{Caller, Refusal};
use keel_config::{ApiKeySettings, parse_sha256};

/// The shortest key `keel hash-key` accepts. Keys should be random: `openssl rand -hex 32`.
pub const MIN_KEY_LEN: usize = 16;

/// The SHA-256 of `key`, in hex, as `auth.api_keys.sha256` holds it.
pub fn key_digest(key: &[u8]) -> String {
    hex::encode(digest(key))
}

pub(super) fn digest(credential: &[u8]) -> [u8; 32] {
    Sha256::digest(credential).into()
}

pub(super) fn digests_match(expected: &[u8; 32], presented: &[u8; 32]) -> bool {
    expected.ct_eq(presented).into()
}

/// The configured keys: who each one authenticates, and its digest.
pub(super) struct ApiKeys {
    keys: Vec<(Caller, [u8; 32])>,
}

impl ApiKeys {
    /// From validated settings, where every digest parses.
    pub(super) fn new(settings: &[ApiKeySettings]) -> Self {
        let keys = settings
            .iter()
            .filter_map(|key| Some((Caller::new(key.id.as_str(), &key.scopes), parse_sha256(&key.sha256)?)))
            .collect();
        Self { keys }
    }

    pub(super) fn caller(&self, credential: &[u8]) -> Result<Caller, Refusal> {
        let digest = digest(credential);
        // Every key is compared, and the match is selected with subtle's constant-time
        // operations: no branch depends on a comparison until all are done. Index 0 is "none".
        let mut found = 0u32;
        for (index, (_, expected)) in (1u32..).zip(&self.keys) {
            found.conditional_assign(&index, expected.ct_eq(&digest));
        }
        let found = found.checked_sub(1).and_then(|index| self.keys.get(index as usize));
        found.map(|(caller, _)| caller.clone()).ok_or(Refusal::UnknownKey)
    }
}
