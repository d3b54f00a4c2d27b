//! The trigger worker and the `events` actor that drives it. Every `WORK_POLL_INTERVAL`
//! the actor delivers claimed outbox events to event triggers (storing a firing per
//! trigger and event), then claims open firings under a lease and runs each through the
//! functions actor, renewing the lease every lease/3. Every `AUTOMATION_TICK` it stores
//! the firings of due cron ticks ([`TriggerWorker::advance_cron`]).
//!
//! Firings are not retried: a failed run is recorded as `failed`. A firing left `running`
//! by a replica that died fails with `lease expired` rather than running twice. Only a
//! busy executor gives the claim back (nothing ran).

use super::{ClaimedFiring, FiringStatus, FiringStore, TickDispatch, Trigger, TriggerType};
use crate::clock::Clock;
use crate::error::StoreError;
use crate::events::EventStore;
use crate::functions::{ExecOptions, ExecuteFunction, ExecutionStatus, FunctionsError};
use crate::supervisor::{Ask, ExitGuard, Stop};
use crate::work::InFlight;
use actix::prelude::*;
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use prometheus::{IntCounterVec, Opts, Registry};
use std::sync::Arc;
use std::time::Duration;

/// Items claimed per poll and store round trip.
const BATCH: i64 = 64;
/// Due cron triggers advanced per transaction (three statements, whatever the size).
const CRON_BATCH: i64 = 500;
/// Delivered events are kept this long (for operators), then deleted.
const EVENT_RETENTION: ChronoDuration = ChronoDuration::hours(24);
/// Finished firings are kept this long (their outcome is also in the executions).
const FIRING_RETENTION: ChronoDuration = ChronoDuration::days(7);
/// How often delivered events and finished firings are purged.
const PURGE_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy)]
pub struct WorkerConfig {
    pub poll: Duration,
    /// How often due cron ticks are stored (`AUTOMATION_TICK`).
    pub tick: Duration,
    pub lease: Duration,
    /// How long a stopping actor waits for firings in flight (`SHUTDOWN_TIMEOUT`).
    pub drain: Duration,
    /// `MAX_PENDING_FIRINGS_PER_TRIGGER`, for event deliveries.
    pub pending_firings: crate::quota::Quota,
}

/// `service_layer_triggers_fired_total{type,status}`.
#[derive(Clone, Debug)]
pub struct TriggerMetrics {
    pub fired: IntCounterVec,
}

impl TriggerMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let fired = IntCounterVec::new(
            Opts::new(
                "triggers_fired_total",
                "Finished trigger firings by type and status",
            )
            .namespace("service_layer"),
            &["type", "status"],
        )?;
        registry.register(Box::new(fired.clone()))?;
        Ok(Self { fired })
    }
}

/// What a due cron tick becomes: `skipped` while an earlier firing is open (overlap
/// `skip`, CONTRACT.md §3.5); the next tick by the job rule (once after downtime,
/// `@every` keeps its phase).
pub fn plan_tick(trigger: &Trigger, busy: bool, now: DateTime<Utc>) -> TickDispatch {
    TickDispatch {
        skip: busy,
        next_run: trigger
            .rule
            .schedule()
            .and_then(|s| s.next_dispatch(trigger.next_run, now)),
    }
}

#[derive(Clone)]
pub struct TriggerWorker {
    store: Arc<dyn FiringStore>,
    /// The outbox, owned by `events`.
    events: Arc<dyn EventStore>,
    functions: Arc<dyn Ask<ExecuteFunction>>,
    clock: Arc<dyn Clock>,
    owner: Arc<str>,
    config: WorkerConfig,
    metrics: TriggerMetrics,
    /// Wakes the `events` actor for work stored on this replica (webhook firings).
    wake: Arc<tokio::sync::Notify>,
}

impl TriggerWorker {
    pub fn new(
        store: Arc<dyn FiringStore>,
        events: Arc<dyn EventStore>,
        functions: Arc<dyn Ask<ExecuteFunction>>,
        clock: Arc<dyn Clock>,
        owner: String,
        config: WorkerConfig,
        metrics: TriggerMetrics,
    ) -> Self {
        Self {
            store,
            events,
            functions,
            clock,
            owner: owner.into(),
            config,
            metrics,
            wake: Arc::default(),
        }
    }

    /// What to notify when work for the `events` actor was just stored.
    pub fn waker(&self) -> Arc<tokio::sync::Notify> {
        self.wake.clone()
    }

    fn lease_until(&self) -> DateTime<Utc> {
        crate::work::lease_end(self.clock.now(), self.config.lease)
    }

    /// Stores the firings of due cron ticks; returns how many are waiting to run.
    pub async fn advance_cron(&self) -> Result<usize, StoreError> {
        let now = self.clock.now();
        let plan = move |trigger: &Trigger, busy: bool| plan_tick(trigger, busy, now);
        let advanced = self.store.advance_cron(now, CRON_BATCH, &plan).await?;
        if advanced.skipped > 0 {
            self.metrics
                .fired
                .with_label_values(&["cron", "skipped"])
                .inc_by(advanced.skipped as u64);
        }
        Ok(advanced.pending)
    }

    /// How long until the earliest cron tick is due, at most `AUTOMATION_TICK`.
    pub async fn next_cron_wait(&self) -> Duration {
        let due = self.store.next_cron_due().await;
        crate::work::wait_until(due, self.clock.now(), self.config.tick, "cron tick")
    }

    /// Delivers claimed events to their triggers.
    pub async fn deliver_events(&self) -> Result<usize, StoreError> {
        let now = self.clock.now();
        let events = self
            .events
            .claim(now, &self.owner, self.lease_until(), BATCH)
            .await?;
        let mut stored = 0;
        for event in &events {
            stored += self
                .store
                .deliver(
                    event,
                    &self.owner,
                    self.clock.now(),
                    self.config.pending_firings,
                )
                .await?;
        }
        Ok(stored)
    }

    /// Deletes delivered events and finished firings past their retention; how many.
    pub async fn purge(&self) -> Result<(u64, u64), StoreError> {
        let now = self.clock.now();
        let events = self.events.purge(now - EVENT_RETENTION).await?;
        let firings = self.store.purge(now - FIRING_RETENTION).await?;
        Ok((events, firings))
    }

    /// Claims open firings; the caller runs each with [`TriggerWorker::fire`].
    /// Claims up to `room` open firings (at most `BATCH`), under a lease owner of their
    /// own (`<replica>:<claim>`): a firing this replica loses and claims again is held by
    /// a different owner, so the first claim's fence, renewals and outcome no longer
    /// count. Returns the worker to run them with (it renews and records as that owner).
    pub async fn claim(&self, room: i64) -> Result<(Self, Vec<ClaimedFiring>), StoreError> {
        let claimer = Self {
            owner: format!(
                "{}:{}",
                self.owner,
                &uuid::Uuid::new_v4().simple().to_string()[..8]
            )
            .into(),
            ..self.clone()
        };
        let limit = room.min(BATCH);
        if limit <= 0 {
            return Ok((claimer, Vec::new()));
        }
        let claimed = self
            .store
            .claim_firings(self.clock.now(), &claimer.owner, self.lease_until(), limit)
            .await?;
        Ok((claimer, claimed))
    }

    async fn finish(
        &self,
        claimed: &ClaimedFiring,
        status: FiringStatus,
        execution: Option<crate::ids::ExecutionId>,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        let recorded = self
            .store
            .finish_firing(
                claimed.firing.id,
                &self.owner,
                self.clock.now(),
                status,
                execution,
                error,
            )
            .await?;
        if recorded {
            self.metrics
                .fired
                .with_label_values(&[claimed.kind.as_str(), status.as_str()])
                .inc();
        } else {
            tracing::warn!("lost the lease before recording the firing; another replica owns it");
        }
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(trigger_id = %claimed.firing.trigger_id, firing_id = %claimed.firing.id, kind = claimed.kind.as_str()))]
    pub async fn fire(&self, claimed: ClaimedFiring) -> Result<(), StoreError> {
        let failed = FiringStatus::Failed;
        if claimed.previous_lease_expired {
            return self
                .finish(&claimed, failed, None, Some("lease expired"))
                .await;
        }
        // Disabled triggers never fire; a webhook accepted before disabling still runs.
        if !claimed.trigger_enabled && claimed.kind != TriggerType::Webhook {
            return self
                .finish(&claimed, failed, None, Some("trigger disabled"))
                .await;
        }
        let call = self.functions.ask(ExecuteFunction {
            account: claimed.account_id,
            id: claimed.function_id,
            params: claimed.firing.params.clone(),
            options: ExecOptions {
                execution_id: claimed.firing.execution_id,
                // An event-triggered run that fails emits no event: no loops.
                failure_event: claimed.kind != TriggerType::Event,
                // Background work waits its turn in the executor; it never fails as busy.
                wait_for_room: true,
                fence: Some(Arc::new(super::FiringLease {
                    firing: claimed.firing.id,
                    owner: self.owner.clone(),
                    clock: self.clock.clone(),
                })),
            },
        });
        let result = crate::work::renewing(call, self.config.lease / 3, || {
            self.store
                .renew_firing(claimed.firing.id, &self.owner, self.lease_until())
        })
        .await;
        match result {
            // Recorded with the execution, by its fence ([`super::FiringLease`]).
            Ok(execution) => {
                let status = match execution.status {
                    ExecutionStatus::Succeeded => FiringStatus::Succeeded,
                    ExecutionStatus::Failed => FiringStatus::Failed,
                };
                self.metrics
                    .fired
                    .with_label_values(&[claimed.kind.as_str(), status.as_str()])
                    .inc();
                Ok(())
            }
            Err(FunctionsError::NotFound(_)) => {
                self.finish(&claimed, failed, None, Some("function not found"))
                    .await
            }
            // No capacity right now: nothing ran, so give the claim back.
            Err(FunctionsError::ExecutorBusy | FunctionsError::Unavailable(_)) => {
                let retry_at = self.clock.now()
                    + ChronoDuration::from_std(self.config.poll).unwrap_or_default();
                self.store
                    .release_firing(claimed.firing.id, &self.owner, retry_at)
                    .await
            }
            Err(e) => {
                let error = format!("could not run the function: {e}");
                self.finish(&claimed, failed, None, Some(&error)).await
            }
        }
    }
}

/// The `events` actor: owns the poll loop of event delivery and firings. It polls every
/// `WORK_POLL_INTERVAL`, and at once when woken (a webhook firing was stored on this
/// replica). A poll never overlaps the previous one: a wake during a poll runs another
/// right after it. On `Stop` it takes no new work and waits (up to `drain`) for firings
/// in flight.
pub struct EventsActor {
    worker: TriggerWorker,
    polling: bool,
    /// A cron pass is running; `advance_again` asks for another right after it.
    advancing: bool,
    advance_again: bool,
    /// The cron pass planned for the earliest due tick, cancelled by an earlier one.
    planned: Option<SpawnHandle>,
    /// Woken while a poll was running: poll again when it ends.
    again: bool,
    stopping: bool,
    last_purge: Option<std::time::Instant>,
    in_flight: InFlight,
    _exit: ExitGuard,
}

impl EventsActor {
    pub fn new(worker: TriggerWorker, exit: ExitGuard) -> Self {
        Self {
            worker,
            polling: false,
            advancing: false,
            advance_again: false,
            planned: None,
            again: false,
            stopping: false,
            last_purge: None,
            in_flight: InFlight::default(),
            _exit: exit,
        }
    }

    fn poll(&mut self, ctx: &mut Context<Self>) {
        if self.stopping {
            return;
        }
        if self.polling {
            self.again = true;
            return;
        }
        self.polling = true;
        let purge = self.last_purge.is_none_or(|t| t.elapsed() >= PURGE_EVERY);
        if purge {
            self.last_purge = Some(std::time::Instant::now());
        }
        let worker = self.worker.clone();
        let in_flight = self.in_flight.clone();
        // The poll itself is tracked too: a stop that comes while it is claiming waits
        // for the firings it claims, instead of leaving them to their leases.
        let poll = self.in_flight.track(async move {
            if purge {
                match worker.purge().await {
                    Ok((0, 0)) => {}
                    Ok((events, firings)) => tracing::debug!(
                        events,
                        firings,
                        "purged delivered events and finished firings"
                    ),
                    Err(e) => tracing::warn!(error = ?e, "could not purge old events and firings"),
                }
            }
            // A bad poll (database blip) is logged; the next one tries again, and
            // anything claimed meanwhile returns when its lease runs out.
            if let Err(e) = worker.deliver_events().await {
                tracing::warn!(error = ?e, "event delivery failed");
            }
            match worker.claim(in_flight.room()).await {
                Ok((claimer, claimed)) => {
                    // A full batch: more may be waiting, so poll again at once.
                    let full = claimed.len() as i64 == BATCH;
                    for firing in claimed {
                        let worker = claimer.clone();
                        in_flight.spawn(async move {
                            if let Err(e) = worker.fire(firing).await {
                                tracing::warn!(error = ?e, "trigger firing could not be recorded");
                            }
                        });
                    }
                    full
                }
                Err(e) => {
                    tracing::warn!(error = ?e, "claiming trigger firings failed");
                    false
                }
            }
        });
        ctx.spawn(poll.into_actor(self).map(|full, act, ctx| {
            act.polling = false;
            if std::mem::take(&mut act.again) || full {
                act.poll(ctx);
            }
        }));
    }

    /// Stores due cron firings (a pass never overlaps the previous one), then plans the next pass at the earliest due tick (at
    /// most `AUTOMATION_TICK` away): cron triggers fire on time, not on the next poll.
    fn advance_cron(&mut self, ctx: &mut Context<Self>) {
        if self.stopping {
            return;
        }
        if self.advancing {
            self.advance_again = true;
            return;
        }
        if let Some(planned) = self.planned.take() {
            ctx.cancel_future(planned);
        }
        self.advancing = true;
        let worker = self.worker.clone();
        // Tracked like a poll, so a stop mid-pass waits for it to commit.
        let advance = self.in_flight.track(async move {
            let pending = match worker.advance_cron().await {
                Ok(pending) => pending,
                Err(e) => {
                    tracing::warn!(error = ?e, "advancing cron triggers failed");
                    0
                }
            };
            (pending, worker.next_cron_wait().await)
        });
        ctx.spawn(advance.into_actor(self).map(|(pending, wait), act, ctx| {
            act.advancing = false;
            // Firings were stored: run them now rather than at the next poll.
            if pending > 0 {
                act.poll(ctx);
            }
            if std::mem::take(&mut act.advance_again) {
                act.advance_cron(ctx);
            } else {
                act.planned = Some(ctx.run_later(wait, |act, ctx| {
                    act.planned = None;
                    act.advance_cron(ctx);
                }));
            }
        }));
    }

    /// A firing or event stored, or a trigger changed, on any replica.
    fn woken(&mut self, ctx: &mut Context<Self>) {
        self.advance_cron(ctx);
        self.poll(ctx);
    }
}

impl Actor for EventsActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // The poll interval is the fallback; wake-ups and due times drive the work.
        ctx.run_interval(self.worker.config.poll, |act, ctx| act.poll(ctx));
        self.advance_cron(ctx);
        // Polls whenever the worker is woken, for as long as this actor lives.
        crate::work::on_every_wake(ctx, self.worker.wake.clone(), Self::woken);
    }
}

impl Handler<Stop> for EventsActor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Stop, _: &mut Self::Context) -> Self::Result {
        self.stopping = true;
        let in_flight = self.in_flight.clone();
        let drain = self.worker.config.drain;
        let wait = async move { in_flight.drain_at_shutdown(drain, "trigger firings").await };
        Box::pin(wait.into_actor(self).map(|(), _, ctx| ctx.stop()))
    }
}
