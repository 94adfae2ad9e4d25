//! `[rate_limit]`: how often each caller may call (see `http::rate_limit`).

use serde::{Deserialize, Serialize};

use super::{ConfigError, positive};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSettings {
    pub enabled: bool,
    /// Submissions (`POST /v1/operations`) per second, sustained, per caller.
    pub submissions_per_second: u32,
    /// Submissions a caller may make at once before the rate applies.
    pub submissions_burst: u32,
    /// Every other request that needs a caller, per second, sustained, per caller.
    pub reads_per_second: u32,
    pub reads_burst: u32,
    /// The buckets callers are hashed into: the limiter's memory stays within this many,
    /// however many distinct callers (or client addresses) arrive.
    pub max_tracked_callers: u32,
}

impl RateLimitSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        positive("rate_limit.submissions_per_second", u64::from(self.submissions_per_second))?;
        positive("rate_limit.submissions_burst", u64::from(self.submissions_burst))?;
        positive("rate_limit.reads_per_second", u64::from(self.reads_per_second))?;
        positive("rate_limit.reads_burst", u64::from(self.reads_burst))?;
        positive("rate_limit.max_tracked_callers", u64::from(self.max_tracked_callers))
    }
}
