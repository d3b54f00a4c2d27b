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

/// Drops sub-microsecond precision so memory mode stores what PostgreSQL would.
pub fn truncate_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    Utc.timestamp_micros(t.timestamp_micros())
        .single()
        .unwrap_or(t)
}
