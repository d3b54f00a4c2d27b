//! Optional per-credential token bucket (`RATE_LIMIT_RPS`, `RATE_LIMIT_BURST`). Buckets are
//! keyed by the SHA-256 of the presented token and created only for credentials that
//! authenticated, so their number is bounded by the number of valid tokens. Limits are
//! per replica (each process refills its own buckets).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

struct Bucket {
    tokens: f64,
    refilled: Instant,
}

pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<[u8; 32], Bucket>>,
}

impl RateLimiter {
    /// `None` when the limit is off (`rps = 0`).
    pub fn new(rps: u32, burst: u32) -> Option<Self> {
        (rps > 0).then(|| Self {
            per_second: f64::from(rps),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::default(),
        })
    }

    /// Takes one token for `credential`, or says how long until one is available.
    pub fn take(&self, credential: [u8; 32]) -> Result<(), Duration> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let bucket = buckets.entry(credential).or_insert(Bucket {
            tokens: self.burst,
            refilled: now,
        });
        let elapsed = now.duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.per_second).min(self.burst);
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - bucket.tokens) / self.per_second,
            ))
        }
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
        assert!(RateLimiter::new(0, 10).is_none());
    }
}
