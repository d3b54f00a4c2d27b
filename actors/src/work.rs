//! Background work spawned by the tick-loop actors (scheduler, events), counted so that a
//! stopping actor can wait for it: an attempt that finishes records its outcome and clears
//! its lease instead of leaving it to expire.

use crate::error::StoreError;
use chrono::{DateTime, Utc};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone, Default, Debug)]
pub struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    /// Runs `work` on the current arbiter, counted until it completes.
    pub fn spawn(&self, work: impl Future<Output = ()> + 'static) {
        let count = self.0.clone();
        count.fetch_add(1, Ordering::AcqRel);
        actix_rt::spawn(async move {
            work.await;
            count.fetch_sub(1, Ordering::AcqRel);
        });
    }

    pub fn count(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }

    /// [`InFlight::drain`], warning about what is left: it keeps its lease until
    /// `WORK_LEASE` runs out, then another replica takes it over.
    pub async fn drain_at_shutdown(&self, deadline: Duration, what: &'static str) {
        let left = self.drain(deadline).await;
        if left > 0 {
            tracing::warn!(
                left,
                "shutdown deadline reached with {what} in flight; their leases will expire"
            );
        }
    }

    /// Waits until nothing is in flight or `deadline` passes; returns what is left.
    pub async fn drain(&self, deadline: Duration) -> usize {
        let started = Instant::now();
        while self.count() > 0 && started.elapsed() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.count()
    }
}

/// When a lease taken `now` for `lease` ends.
pub fn lease_end(now: DateTime<Utc>, lease: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::seconds(30))
}

/// Runs `work` while calling `renew` every `every` to extend its lease. A failed renewal
/// never abandons the work: it is running either way, and its outcome should still be
/// recorded (if the lease was lost, recording it is refused by the store).
pub async fn renewing<T, R>(
    work: impl Future<Output = T>,
    every: Duration,
    mut renew: impl FnMut() -> R,
) -> T
where
    R: Future<Output = Result<bool, StoreError>>,
{
    let mut ticks = tokio::time::interval(every);
    ticks.tick().await;
    tokio::pin!(work);
    loop {
        tokio::select! {
            out = &mut work => return out,
            _ = ticks.tick() => match renew().await {
                Ok(true) => {}
                Ok(false) => tracing::warn!("lease lost while the work was running"),
                Err(e) => tracing::warn!(error = ?e, "could not renew the lease; will retry"),
            }
        }
    }
}
