//! What a client that keeps failing to authenticate may cost (CONTRACT.md §1.5).
//!
//! - **Throttle per client address**: after `AUTH_FAILURE_BURST` failed authentications
//!   (unknown, expired or revoked token; unknown webhook trigger or bad signature), at
//!   most `AUTH_FAILURE_RPS` per second. Once over, the address is refused with 429
//!   *before* its credential is looked at, until its next failure would fit, so a flood
//!   of made-up tokens costs neither a database lookup nor a decryption per request.
//! - **Negative cache**: an unknown account token is remembered as unknown for
//!   `AUTH_NEGATIVE_CACHE`, so presenting it again costs no database round trip. Only
//!   absences are cached: a revoked token still fails at once.
//!
//! The address is the TCP peer: `Forwarded`/`X-Forwarded-For` are not trusted (a client
//! could name any address). IPv6 peers are grouped by their /64, the block a single
//! subscriber usually holds, so rotating addresses within it does not reset the budget.
//! So that a blocked address (a NAT, an ingress, a shared webhook sender) does not lock
//! out the honest clients behind it, credentials that authenticated recently
//! ([`KnownGood`]) pass the block: an attacker cannot forge one, and it costs no more
//! than it did before the block.

use super::rate_limit::RateLimiter;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most entries kept in each map below; past it, expired ones go, and if that frees
/// less than a quarter, all of them (so a full map costs one scan per quarter of its
/// size, not one per insert). Forgetting costs a lookup or a failure more, never a
/// wrong answer about a credential.
const MAX_ENTRIES: usize = 16_384;

/// Makes room in a full map: see [`MAX_ENTRIES`].
fn make_room<K, V>(map: &mut HashMap<K, V>, live: impl FnMut(&K, &mut V) -> bool) {
    if map.len() >= MAX_ENTRIES {
        map.retain(live);
        if map.len() > MAX_ENTRIES * 3 / 4 {
            map.clear();
        }
    }
}

/// The throttle's key for a peer: IPv4 as is (IPv4-mapped IPv6 too), IPv6 by its /64.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(
                u128::from(v6) & !((1u128 << 64) - 1),
            )),
        },
    }
}

pub struct FailureThrottle {
    failures: RateLimiter<IpAddr>,
    /// Addresses over their budget, with when their next failure fits.
    blocked: Mutex<HashMap<IpAddr, Instant>>,
}

impl FailureThrottle {
    pub fn new(rps: u32, burst: u32) -> Self {
        Self {
            // Settings require rps ≥ 1; a zero here still throttles (at 1/s).
            failures: RateLimiter::per_second(
                std::num::NonZeroU32::new(rps).unwrap_or(std::num::NonZeroU32::MIN),
                burst,
            ),
            blocked: Mutex::default(),
        }
    }

    /// `Err(seconds)` while `ip` is over its budget: answer 429 without looking at the
    /// credential.
    pub fn check(&self, ip: Option<IpAddr>) -> Result<(), u64> {
        let Some(ip) = ip.map(client_key) else {
            return Ok(());
        };
        let mut blocked = self.blocked.lock().unwrap_or_else(|e| e.into_inner());
        match blocked.get(&ip) {
            Some(until) if *until > Instant::now() => Err(seconds(*until - Instant::now())),
            Some(_) => {
                blocked.remove(&ip);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Counts a failed authentication from `ip`; `Err(seconds)` when it went over the
    /// budget (answer 429 instead of 401).
    pub fn failed(&self, ip: Option<IpAddr>) -> Result<(), u64> {
        let Some(ip) = ip.map(client_key) else {
            return Ok(());
        };
        let Err(wait) = self.failures.take(ip) else {
            return Ok(());
        };
        let mut blocked = self.blocked.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        make_room(&mut blocked, |_, until| *until > now);
        blocked.insert(ip, now + wait);
        Err(seconds(wait))
    }
}

fn seconds(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

/// Digests of account tokens found unknown, with when they were found so.
pub struct NegativeCache {
    ttl: Duration,
    unknown: Mutex<HashMap<[u8; 32], Instant>>,
}

impl NegativeCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            unknown: Mutex::default(),
        }
    }

    /// Whether `digest` was found unknown within the last `ttl`.
    pub fn is_unknown(&self, digest: &[u8; 32]) -> bool {
        let unknown = self.unknown.lock().unwrap_or_else(|e| e.into_inner());
        unknown
            .get(digest)
            .is_some_and(|at| at.elapsed() < self.ttl)
    }

    pub fn remember(&self, digest: [u8; 32]) {
        let mut unknown = self.unknown.lock().unwrap_or_else(|e| e.into_inner());
        let ttl = self.ttl;
        make_room(&mut unknown, |_, at| at.elapsed() < ttl);
        unknown.insert(digest, Instant::now());
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.unknown.lock().unwrap().len()
    }
}

/// How long a credential that authenticated passes an address's failure block.
const KNOWN_GOOD_FOR: Duration = Duration::from_secs(300);

/// Digests of credentials (account tokens, webhook triggers) that authenticated within
/// [`KNOWN_GOOD_FOR`]. Only lets them past the failure block: they are still verified.
#[derive(Default)]
pub struct KnownGood(Mutex<HashMap<[u8; 32], Instant>>);

impl KnownGood {
    pub fn vouch(&self, digest: [u8; 32]) {
        let mut known = self.0.lock().unwrap_or_else(|e| e.into_inner());
        make_room(&mut known, |_, at| at.elapsed() < KNOWN_GOOD_FOR);
        known.insert(digest, Instant::now());
    }

    pub fn contains(&self, digest: &[u8; 32]) -> bool {
        let known = self.0.lock().unwrap_or_else(|e| e.into_inner());
        known
            .get(digest)
            .is_some_and(|at| at.elapsed() < KNOWN_GOOD_FOR)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_over_its_failure_budget_is_refused_until_it_fits() {
        let throttle = FailureThrottle::new(1, 3);
        let ip = Some(IpAddr::from([10, 0, 0, 1]));
        let other = Some(IpAddr::from([10, 0, 0, 2]));
        for _ in 0..3 {
            assert_eq!(throttle.check(ip), Ok(()));
            assert_eq!(throttle.failed(ip), Ok(()));
        }
        assert!(throttle.failed(ip).is_err(), "the fourth failure is over");
        assert!(throttle.check(ip).is_err(), "refused before any lookup");
        assert_eq!(throttle.check(other), Ok(()), "other addresses are not");
        assert_eq!(throttle.check(None), Ok(()));
        // IPv6 peers share their /64's budget.
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let b: IpAddr = "2001:db8::ffff:1".parse().unwrap();
        let c: IpAddr = "2001:db8:0:1::1".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(throttle.failed(Some(a)), Ok(()));
        }
        assert!(throttle.failed(Some(b)).is_err(), "same /64");
        assert_eq!(throttle.check(Some(c)), Ok(()), "another /64");
    }

    #[test]
    fn unknown_tokens_are_remembered_for_the_ttl_and_the_map_is_bounded() {
        let cache = NegativeCache::new(Duration::from_millis(50));
        cache.remember([1; 32]);
        assert!(cache.is_unknown(&[1; 32]));
        assert!(!cache.is_unknown(&[2; 32]));
        std::thread::sleep(Duration::from_millis(60));
        assert!(!cache.is_unknown(&[1; 32]), "forgotten after the ttl");
        for i in 0..(MAX_ENTRIES as u32 + 10) {
            let mut d = [0u8; 32];
            d[..4].copy_from_slice(&i.to_le_bytes());
            cache.remember(d);
        }
        assert!(cache.len() <= MAX_ENTRIES);
    }
}
