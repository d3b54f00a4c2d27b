//! Injectable time source. Every timestamp the service stores goes through a [`Clock`] so
//! that tests of background loops can control time, and so that both stores keep exactly
//! microsecond precision (PostgreSQL `TIMESTAMPTZ` resolution).

use chrono::{DateTime, TimeZone, Utc};
use std::fmt::Debug;

/// A source of "now", truncated to whole microseconds.
pub trait Clock: Send + Sync + Debug + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        truncate_micros(Utc::now())
    }
}

/// The contract's timestamp form: RFC 3339 UTC with exactly six fractional digits and
/// `Z` (`2025-01-31T09:30:00.000000Z`), for responses and for params and event data.
pub fn timestamp(t: &DateTime<Utc>) -> String {
    truncate_micros(*t)
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

/// Drops sub-microsecond precision so memory mode stores what PostgreSQL would.
pub fn truncate_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    Utc.timestamp_micros(t.timestamp_micros())
        .single()
        .unwrap_or(t)
}
