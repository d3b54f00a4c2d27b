//! Background work spawned by the tick-loop actors (scheduler, events), counted so that a
//! stopping actor can wait for it: an attempt that finishes records its outcome and clears
//! its lease instead of leaving it to expire.

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

    /// Waits until nothing is in flight or `deadline` passes; returns what is left.
    pub async fn drain(&self, deadline: Duration) -> usize {
        let started = Instant::now();
        while self.count() > 0 && started.elapsed() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.count()
    }
}
