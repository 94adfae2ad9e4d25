//! How often each caller may call: a token bucket per caller for submissions
//! (`POST /v1/operations`) and one for every other request that needs a caller, from
//! `[rate_limit]`. Public routes (probes, docs) are never limited.
//!
//! The caller is the authenticated one ([`Caller`]); with auth off every request is
//! `anonymous`, so the client's address (its TCP peer, never a header) stands in for it.
//!
//! **governor** holds the buckets (GCRA: one timestamp per bucket, no timer). Callers are
//! hashed, with a key chosen at random at start-up, into `max_tracked_callers` buckets, so the
//! limiter's memory is bounded however many distinct callers or addresses arrive; two callers
//! that land in one bucket share its limit, which with the default 65,536 buckets and a few
//! hundred callers is rare, and no caller can choose to collide with another.
//!
//! Every limited response carries the IETF httpapi draft's `RateLimit-Policy` (the bucket:
//! `q` requests per `w` seconds) and `RateLimit` (`r` left, `t` seconds until the bucket is
//! full again); over the limit, `429 rate-limited` with `Retry-After`.

use std::hash::{BuildHasher, Hash, RandomState};
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use crate::auth::{Caller, PublicRoutes};
use crate::error::ApiError;
use crate::request::{ClientAddr, route_of};
use keel_config::RateLimitSettings;

pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

type Buckets = RateLimiter<u64, DefaultKeyedStateStore<u64>, DefaultClock, StateInformationMiddleware>;

/// One kind of request's buckets, and how its policy reads in a header.
struct Limit {
    name: &'static str,
    buckets: Buckets,
    /// Seconds for an empty bucket to fill: the policy's window.
    window_secs: u64,
    policy: HeaderValue,
}

/// The limiter: both kinds of buckets, and the keyed hash that places callers in them.
pub struct RateLimits {
    submissions: Limit,
    reads: Limit,
    hasher: RandomState,
    slots: u64,
}

/// Which bucket a request draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Submission,
    Read,
}

/// A decision: allowed, with what is left, or refused until `retry_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed { remaining: u32, full_in_secs: u64 },
    Limited { retry_after_secs: u64 },
}

impl Limit {
    fn new(name: &'static str, per_second: u32, burst: u32) -> Self {
        // Validated positive at start-up.
        let per_second = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::per_second(per_second).allow_burst(burst);
        let window_secs = quota.burst_size_replenished_in().as_secs_f64().ceil() as u64;
        let policy = HeaderValue::from_str(&format!("\"{name}\";q={burst};w={}", window_secs.max(1)))
            .unwrap_or(HeaderValue::from_static(""));
        Self { name, buckets: RateLimiter::keyed(quota).with_middleware(), window_secs, policy }
    }
}

impl RateLimits {
    /// `None` when rate limits are off.
    pub fn from_settings(settings: &RateLimitSettings) -> Option<Arc<Self>> {
        settings.enabled.then(|| {
            Arc::new(Self {
                submissions: Limit::new("submissions", settings.submissions_per_second, settings.submissions_burst),
                reads: Limit::new("reads", settings.reads_per_second, settings.reads_burst),
                hasher: RandomState::new(),
                slots: u64::from(settings.max_tracked_callers.max(1)),
            })
        })
    }

    fn limit(&self, class: Class) -> &Limit {
        match class {
            Class::Submission => &self.submissions,
            Class::Read => &self.reads,
        }
    }

    /// Takes one request of `class` from `caller`'s bucket.
    pub fn check<K: Hash + ?Sized>(&self, class: Class, caller: &K) -> Verdict {
        let slot = self.hasher.hash_one(caller) % self.slots;
        let limit = self.limit(class);
        match limit.buckets.check_key(&slot) {
            Ok(state) => {
                let remaining = state.remaining_burst_capacity();
                let missing = state.quota().burst_size().get().saturating_sub(remaining);
                let per_token = state.quota().replenish_interval();
                let full_in = (per_token * missing).as_secs_f64().ceil() as u64;
                Verdict::Allowed { remaining, full_in_secs: full_in.min(limit.window_secs) }
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                Verdict::Limited { retry_after_secs: ceil_secs(wait) }
            }
        }
    }

    /// How many buckets are held now, across both kinds: at most twice `max_tracked_callers`.
    pub fn tracked(&self) -> usize {
        self.submissions.buckets.len() + self.reads.buckets.len()
    }
}

/// Whole seconds, rounded up, at least one: `Retry-After` has no fractions.
fn ceil_secs(wait: Duration) -> u64 {
    (wait.as_secs_f64().ceil() as u64).max(1)
}

/// The middleware: after authentication, so that the caller is known.
pub async fn limit(
    State((limits, public)): State<(Arc<RateLimits>, PublicRoutes)>,
    request: Request,
    next: Next,
) -> Response {
    let route = route_of(&request);
    if !public.need_caller(route) {
        return next.run(request).await;
    }
    let class =
        if request.method() == Method::POST && route == "/v1/operations" { Class::Submission } else { Class::Read };
    let caller = match (request.extensions().get::<Caller>(), request.extensions().get::<ClientAddr>()) {
        (Some(caller), _) => Who::Caller(caller.shared_id()),
        (None, Some(ClientAddr(address))) => Who::Address(client(*address)),
        (None, None) => Who::Caller(Caller::anonymous().shared_id()),
    };
    let limit = limits.limit(class);
    let (mut response, remaining, reset_secs) = match limits.check(class, &caller) {
        Verdict::Allowed { remaining, full_in_secs } => (next.run(request).await, remaining, full_in_secs),
        Verdict::Limited { retry_after_secs } => {
            tracing::info!(caller = %caller, bucket = limit.name, retry_after_secs, "refused: rate limited");
            (ApiError::RateLimited { retry_after_secs }.into_response(), 0, retry_after_secs)
        }
    };
    let headers = response.headers_mut();
    headers.insert(RATELIMIT_POLICY, limit.policy.clone());
    if let Ok(state) = HeaderValue::from_str(&format!("\"{}\";r={remaining};t={reset_secs}", limit.name)) {
        headers.insert(RATELIMIT, state);
    }
    response
}

/// Whose buckets a request draws from: hashed as it is, with nothing formatted or copied.
#[derive(Debug, Hash)]
enum Who {
    Caller(Arc<str>),
    Address(IpAddr),
}

impl std::fmt::Display for Who {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Caller(id) => f.write_str(id),
            Self::Address(address) => write!(f, "{address}"),
        }
    }
}

/// An anonymous client: its address, with an IPv6 one cut to its /64, which one client usually
/// holds whole.
fn client(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(v6.to_bits() & !u128::from(u64::MAX))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv6_client_is_its_64_bit_prefix() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client(a), client(b));
        assert_eq!(client(a), "2001:db8:1:2::".parse::<IpAddr>().unwrap());
        assert_ne!(client(a), client(other));
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(client(v4), v4);
    }
}
