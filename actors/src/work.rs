//! Background work spawned by the tick-loop actors (scheduler, events), counted so that a
//! stopping actor can wait for it: an attempt that finishes records its outcome and clears
//! its lease instead of leaving it to expire.

use crate::error::StoreError;
use chrono::{DateTime, Utc};
use std::future::Future;
use std::time::Duration;
use tokio_util::task::TaskTracker;

#[derive(Clone, Default, Debug)]
pub struct InFlight(TaskTracker);

impl InFlight {
    /// Runs `work` on the current arbiter, counted until it completes.
    pub fn spawn(&self, work: impl Future<Output = ()> + 'static) {
        actix_rt::spawn(self.0.track_future(work));
    }

    /// `work`, counted until it completes, for the caller to run (in an actor's context).
    pub fn track<F: Future>(&self, work: F) -> impl Future<Output = F::Output> {
        self.0.track_future(work)
    }

    pub fn count(&self) -> usize {
        self.0.len()
    }

    /// How many more attempts may be claimed (see [`MAX_IN_FLIGHT`]); the task asking
    /// counts itself, as it is tracked too.
    pub fn room(&self) -> i64 {
        MAX_IN_FLIGHT.saturating_sub(self.count().saturating_sub(1)) as i64
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
        self.0.close();
        // Woken by the last task's exit, not by polling.
        // Left closed: a second drain (a repeated stop) then returns as soon as the work
        // is done instead of waiting for a close that already happened.
        let _ = tokio::time::timeout(deadline, self.0.wait()).await;
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

/// Most attempts (job runs, trigger firings) one actor keeps in flight: claims take only
/// the room left, so a backlog stays in the database, under its leases' control, rather
/// than in this process waiting for the executor.
pub const MAX_IN_FLIGHT: usize = 256;

/// How often retention runs (executions, runs, firings, events).
pub const PURGE_EVERY: Duration = Duration::from_secs(60);
/// Rows deleted per statement, so a purge never holds long locks or a long transaction.
pub const PURGE_BATCH: i64 = 1000;

/// Runs `delete(PURGE_BATCH)` until a batch comes back short (or 100 batches ran: the
/// rest waits for the next pass); returns how many rows went.
pub async fn purge_in_batches<F, Fut>(mut delete: F) -> Result<u64, StoreError>
where
    F: FnMut(i64) -> Fut,
    Fut: Future<Output = Result<u64, StoreError>>,
{
    let mut total = 0;
    for _ in 0..100 {
        let deleted = delete(PURGE_BATCH).await?;
        total += deleted;
        if deleted < PURGE_BATCH as u64 {
            break;
        }
    }
    Ok(total)
}

/// Retention: deletes, in batches, what `delete(before, limit)` finds older than `keep`
/// before `now`; how many went. `None` keeps everything, and so does a retention
/// reaching before the calendar's start.
pub async fn purge_older<F, Fut>(
    keep: Option<Duration>,
    now: DateTime<Utc>,
    mut delete: F,
) -> Result<u64, StoreError>
where
    F: FnMut(DateTime<Utc>, i64) -> Fut,
    Fut: Future<Output = Result<u64, StoreError>>,
{
    let Some(before) = keep
        .and_then(|keep| chrono::Duration::from_std(keep).ok())
        .and_then(|keep| now.checked_sub_signed(keep))
    else {
        return Ok(0);
    };
    purge_in_batches(|limit| delete(before, limit)).await
}

/// How long a loop sleeps before its next pass: until `due` (the earliest work, as read
/// from its store), at most `fallback`; an unreadable due time falls back (and says so).
pub fn wait_until(
    due: Result<Option<DateTime<Utc>>, StoreError>,
    now: DateTime<Utc>,
    fallback: Duration,
    what: &'static str,
) -> Duration {
    match due {
        Ok(Some(at)) => (at - now).to_std().unwrap_or(Duration::ZERO).min(fallback),
        Ok(None) => fallback,
        Err(e) => {
            tracing::warn!(error = ?e, "could not read the next {what}");
            fallback
        }
    }
}

/// Calls `on_wake` on the actor each time `wake` is notified, for as long as the actor
/// lives: how the tick-loop actors (scheduler, events, refresher) hear of changes without
/// waiting for their next planned pass.
pub fn on_every_wake<A>(
    ctx: &mut actix::Context<A>,
    wake: std::sync::Arc<tokio::sync::Notify>,
    on_wake: fn(&mut A, &mut actix::Context<A>),
) where
    A: actix::Actor<Context = actix::Context<A>>,
{
    use actix::{ActorFutureExt, AsyncContext};
    let notified = {
        let wake = wake.clone();
        async move { wake.notified().await }
    };
    ctx.spawn(
        actix::fut::wrap_future::<_, A>(notified).map(move |(), act, ctx| {
            on_wake(act, ctx);
            on_every_wake(ctx, wake, on_wake);
        }),
    );
}

/// The pass loop every tick-loop actor (scheduler, refresher, oracle dispatcher) runs:
/// one pass at a time; a wake during a pass asks for another right after it; otherwise
/// the next pass is planned for when the last one said work is due, and an earlier wake
/// replaces that plan. A stopping actor starts no more passes.
#[derive(Default)]
pub struct Pacer {
    ticking: bool,
    again: bool,
    planned: Option<actix::SpawnHandle>,
    stopping: bool,
}

impl Pacer {
    /// No pass starts after this.
    pub fn stop(&mut self) {
        self.stopping = true;
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping
    }
}

/// An actor driven by a [`Pacer`]: [`pace`] runs its passes.
pub trait Paced: actix::Actor<Context = actix::Context<Self>> {
    fn pacer(&mut self) -> &mut Pacer;

    /// One pass, resolving to how long to wait before the next; `None` if there is
    /// nothing to run with (yet).
    fn pass(&mut self) -> Option<futures_util::future::LocalBoxFuture<'static, Duration>>;
}

/// Runs a pass of `act` now, or right after the one under way (see [`Pacer`]).
pub fn pace<A: Paced>(act: &mut A, ctx: &mut actix::Context<A>) {
    use actix::{ActorFutureExt, AsyncContext};
    let pacer = act.pacer();
    if pacer.stopping {
        return;
    }
    if pacer.ticking {
        pacer.again = true;
        return;
    }
    // Nothing to run with (yet): the planned pass, if any, stays planned.
    let Some(pass) = act.pass() else {
        return;
    };
    let pacer = act.pacer();
    if let Some(planned) = pacer.planned.take() {
        ctx.cancel_future(planned);
    }
    pacer.ticking = true;
    ctx.spawn(actix::fut::wrap_future::<_, A>(pass).map(|wait, act, ctx| {
        let pacer = act.pacer();
        pacer.ticking = false;
        if std::mem::take(&mut pacer.again) {
            pace(act, ctx);
        } else {
            let planned = ctx.run_later(wait, |act, ctx| {
                act.pacer().planned = None;
                pace(act, ctx);
            });
            act.pacer().planned = Some(planned);
        }
    }));
}
