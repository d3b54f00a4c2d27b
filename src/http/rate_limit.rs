//! Keyed rate limits on governor's GCRA limiter: the optional per-credential limit
//! (`RATE_LIMIT_RPS`, `RATE_LIMIT_BURST`, keyed by the SHA-256 of a credential that
//! authenticated) and the failed-authentication throttle (keyed by client address, see
//! `auth_failures`). Keys whose state has gone back to "fresh" are evicted as checks come
//! in, so the map holds at most the keys active within one burst period. Limits are per
//! replica (each process keeps its own state).

use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota};
use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// Evict stale keys once per this many checks: amortised O(1) per request.
const EVICT_EVERY: u32 = 1024;

pub struct RateLimiter<K: Hash + Eq + Clone = [u8; 32]> {
    limiter: DefaultKeyedRateLimiter<K>,
    checks: AtomicU32,
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    /// `None` when the limit is off (`rps = 0`).
    pub fn new(rps: u32, burst: u32) -> Option<Self> {
        NonZeroU32::new(rps).map(|rps| Self::per_second(rps, burst))
    }

    /// `rps` per second, bursts of `burst` (at least 1).
    pub fn per_second(rps: NonZeroU32, burst: u32) -> Self {
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        Self {
            limiter: DefaultKeyedRateLimiter::keyed(Quota::per_second(rps).allow_burst(burst)),
            checks: AtomicU32::new(0),
        }
    }

    /// Takes one request for `credential`, or says how long until one is allowed.
    pub fn take(&self, credential: K) -> Result<(), Duration> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % EVICT_EVERY == EVICT_EVERY - 1 {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
        self.limiter
            .check_key(&credential)
            .map_err(|not_until| not_until.wait_time_from(self.limiter.clock().now()))
    }

    /// Credentials with state (tests check the eviction).
    #[cfg(test)]
    fn keys(&self) -> usize {
        self.limiter.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill_per_credential() {
        let limiter = RateLimiter::new(1000, 2).unwrap();
        assert!(limiter.take([1; 32]).is_ok());
        assert!(limiter.take([1; 32]).is_ok());
        let wait = limiter.take([1; 32]).unwrap_err();
        assert!(wait <= Duration::from_millis(1));
        assert!(
            limiter.take([2; 32]).is_ok(),
            "another credential has its own bucket"
        );
        std::thread::sleep(Duration::from_millis(5));
        assert!(limiter.take([1; 32]).is_ok(), "refilled");
        assert!(RateLimiter::<[u8; 32]>::new(0, 10).is_none());
    }

    #[test]
    fn idle_credentials_are_forgotten() {
        let limiter = RateLimiter::new(1000, 1).unwrap();
        for i in 0..(EVICT_EVERY - 1) {
            let mut key = [0u8; 32];
            key[..4].copy_from_slice(&i.to_le_bytes());
            assert!(limiter.take(key).is_ok());
        }
        assert_eq!(limiter.keys(), (EVICT_EVERY - 1) as usize);
        // Every bucket refills within 1 ms; the next check evicts them all.
        std::thread::sleep(Duration::from_millis(5));
        assert!(limiter.take([0xff; 32]).is_ok());
        assert!(
            limiter.keys() <= 1,
            "{} credentials still held after they went idle",
            limiter.keys()
        );
    }
}
