//! The scheduler: when work is due (or it is woken, at most every `AUTOMATION_TICK`) it
//! advances due jobs, inserting their runs already claimed while it has room, claims the
//! other runs due for an attempt under a lease, then runs each through the functions
//! actor with params `{"automation_job", "scheduled_for"}`. Leases are renewed every
//! lease/3 while an attempt runs; a replica that dies leaves its runs to be taken over
//! after the lease. Failed attempts retry after `AUTOMATION_RETRY_BASE × 2^(attempt−1)`
//! (capped by `AUTOMATION_RETRY_MAX_DELAY`) without moving the schedule.
//!
//! What a due occurrence becomes is decided here ([`SchedulerService::plan`]): the
//! overlap rule and the next `next_run`; the store applies it in its transaction.

use super::{AttemptEnd, ClaimedRun, Dispatch, Job, OverlapPolicy, SchedulerStore, Start};
use crate::clock::Clock;
use crate::error::StoreError;

use crate::functions::{ExecOptions, ExecuteFunction, ExecutionStatus, FunctionsError};
use crate::supervisor::{Ask, ExitGuard, Stop};
use crate::work::{pace, InFlight, Paced, Pacer};
use actix::prelude::*;
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use futures_util::future::LocalBoxFuture;
use prometheus::{Histogram, HistogramOpts, IntCounterVec, Opts, Registry};
use std::sync::Arc;
use std::time::Duration;

/// Due jobs advanced per transaction (four statements, whatever the size).
const ADVANCE_BATCH: i64 = 500;
/// Batches per pass: beyond it the pass claims what it inserted and goes round again.
const MAX_BATCHES: usize = 20;
/// Runs claimed per statement.
const CLAIM_BATCH: usize = 256;

#[derive(Debug, Clone, Copy)]
pub struct SchedulerConfig {
    pub tick: Duration,
    /// How long a stopping scheduler waits for attempts in flight (`SHUTDOWN_TIMEOUT`).
    pub drain: Duration,
    pub lease: Duration,
    pub retry_base: Duration,
    pub retry_max_delay: Duration,
    /// `RUN_RETENTION`: finished runs older than this are deleted; `None` keeps them.
    pub run_retention: Option<Duration>,
}

/// `service_layer_automation_*` metrics (no job ids in labels).
#[derive(Clone, Debug)]
pub struct AutomationMetrics {
    pub runs: IntCounterVec,
    pub duration: Histogram,
    pub lag: Histogram,
}

impl AutomationMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let ns = "service_layer";
        let m = Self {
            runs: IntCounterVec::new(
                Opts::new("automation_job_runs_total", "Finished job runs by status").namespace(ns),
                &["status"],
            )?,
            duration: Histogram::with_opts(
                HistogramOpts::new(
                    "automation_job_run_duration_seconds",
                    "Duration of one job run attempt",
                )
                .namespace(ns),
            )?,
            lag: Histogram::with_opts(
                HistogramOpts::new(
                    "automation_dispatch_lag_seconds",
                    "Delay between a run's scheduled time and its first attempt",
                )
                .namespace(ns),
            )?,
        };
        registry.register(Box::new(m.runs.clone()))?;
        registry.register(Box::new(m.duration.clone()))?;
        registry.register(Box::new(m.lag.clone()))?;
        Ok(m)
    }
}

#[derive(Clone)]
pub struct SchedulerService {
    store: Arc<dyn SchedulerStore>,
    functions: Arc<dyn Ask<ExecuteFunction>>,
    clock: Arc<dyn Clock>,
    /// This replica's lease owner id.
    owner: Arc<str>,
    config: SchedulerConfig,
    metrics: AutomationMetrics,
    /// From when a pass looks for runs to claim (retries, takeovers, runs left waiting):
    /// at once after a pass that left runs waiting, at the earliest retry time, and at
    /// least every `tick` for expired leases and runs another replica left waiting. In
    /// between, the claim statement would find nothing, and passes come every few
    /// milliseconds under load.
    claim_from: Arc<std::sync::Mutex<DateTime<Utc>>>,
}

impl SchedulerService {
    pub fn new(
        store: Arc<dyn SchedulerStore>,
        functions: Arc<dyn Ask<ExecuteFunction>>,
        clock: Arc<dyn Clock>,
        owner: String,
        config: SchedulerConfig,
        metrics: AutomationMetrics,
    ) -> Self {
        Self {
            store,
            functions,
            clock,
            owner: owner.into(),
            config,
            metrics,
            claim_from: Arc::new(std::sync::Mutex::new(DateTime::<Utc>::MIN_UTC)),
        }
    }

    fn claim_from(&self) -> std::sync::MutexGuard<'_, DateTime<Utc>> {
        self.claim_from.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lease_until(&self) -> DateTime<Utc> {
        crate::work::lease_end(self.clock.now(), self.config.lease)
    }

    fn retry_delay(&self, attempt: i32) -> Duration {
        let factor = 2u32.saturating_pow(u32::try_from(attempt.max(1) - 1).unwrap_or(0));
        self.config
            .retry_base
            .saturating_mul(factor)
            .min(self.config.retry_max_delay)
    }

    /// What a due occurrence of `job` becomes, dispatched at `now`: with `skip` overlap a
    /// run in progress makes it `skipped`; `next_run` moves past `max(scheduled_for,
    /// now)` (CONTRACT.md §3.4).
    pub fn plan(job: &Job, busy: bool, now: DateTime<Utc>) -> Dispatch {
        Dispatch {
            start: if busy && job.overlap_policy == OverlapPolicy::Skip {
                Start::Skip
            } else {
                Start::Run
            },
            next_run: job.schedule.next_dispatch(job.next_run, now),
        }
    }

    /// One pass: first claim the runs already waiting for an attempt (retries,
    /// takeovers of expired leases, runs inserted beyond the room or by another replica),
    /// oldest first, as many as `room` allows; then advance every due job (in batches
    /// of `ADVANCE_BATCH`, until none is left or `MAX_BATCHES` ran), inserting the runs
    /// to start already claimed while room is left. Waiting runs go before new ones, so
    /// a steady flow of new occurrences cannot starve a retry or a takeover. The caller
    /// runs each claimed attempt as its own task, so a long run never holds up the next
    /// pass. Returns the claims and whether more were due than `room` allowed.
    ///
    /// Claims are never dropped: if a later statement fails, the pass ends there (the
    /// error is logged) and returns what it claimed, so those runs still start.
    pub async fn tick(&self, room: i64) -> Result<(Vec<ClaimedRun>, bool), StoreError> {
        let now = self.clock.now();
        let plan = move |job: &Job, busy: bool| Self::plan(job, busy, now);
        let room = usize::try_from(room).unwrap_or(0);
        let limit = room.min(CLAIM_BATCH);
        let mut claimed = if limit == 0 {
            // No room: whatever is waiting is claimed by the next pass that has some,
            // even if this one ends in an error.
            *self.claim_from() = now;
            Vec::new()
        } else if now < *self.claim_from() {
            Vec::new()
        } else {
            let claimed = self
                .store
                .claim_runs(now, &self.owner, self.lease_until(), limit as i64)
                .await?;
            *self.claim_from() = now + self.fallback();
            claimed
        };
        let mut saturated = limit == 0 || claimed.len() == limit;
        for _ in 0..MAX_BATCHES {
            // The lease runs from each statement: a long pass does not shorten it.
            let claimant = super::Claimant {
                owner: &self.owner,
                lease_until: self.lease_until(),
                room: room.saturating_sub(claimed.len()),
            };
            let advanced = match self
                .store
                .advance_due(now, ADVANCE_BATCH, &plan, claimant)
                .await
            {
                Ok(advanced) => advanced,
                Err(e) if claimed.is_empty() => return Err(e),
                Err(e) => {
                    tracing::warn!(error = ?e, "scheduler pass cut short; starting what it claimed");
                    break;
                }
            };
            for _ in 0..advanced.skipped {
                self.metrics.runs.with_label_values(&["skipped"]).inc();
            }
            // Runs inserted beyond the room wait for the next pass's claim.
            saturated |= advanced.claimed.len() < advanced.started.len();
            claimed.extend(advanced.claimed);
            if advanced.examined < ADVANCE_BATCH as usize {
                break;
            }
        }
        // Dispatch lag: a run's first attempt starts now, `scheduled_for` was its due
        // time (the same `started_at - scheduled_for` the benchmark reads).
        for run in claimed.iter().filter(|r| r.run.attempt == 1) {
            let lag = (now - run.run.scheduled_for).to_std().unwrap_or_default();
            self.metrics.lag.observe(lag.as_secs_f64());
        }
        if saturated {
            // Runs are left waiting: the next pass claims them first.
            *self.claim_from() = now;
        }
        Ok((claimed, saturated))
    }

    /// When to look again: at the earliest due time, or after `AUTOMATION_TICK` at the
    /// latest (the fallback for changes no wake-up announced, and for lease takeovers).
    pub async fn next_wait(&self) -> Duration {
        let due = self.store.next_due().await;
        if let Ok(super::NextDue {
            retry: Some(at), ..
        }) = due
        {
            let mut claim_from = self.claim_from();
            *claim_from = (*claim_from).min(at);
        }
        let due = due.map(|due| due.earliest());
        crate::work::wait_until(due, self.clock.now(), self.config.tick, "due time")
    }

    fn fallback(&self) -> ChronoDuration {
        ChronoDuration::from_std(self.config.tick).unwrap_or(ChronoDuration::seconds(1))
    }

    /// Retention: deletes finished runs older than `RUN_RETENTION`; how many went.
    pub async fn purge(&self) -> Result<u64, StoreError> {
        crate::work::purge_older(
            self.config.run_retention,
            self.clock.now(),
            |before, limit| self.store.purge_runs(before, limit),
        )
        .await
    }

    async fn finish(&self, claimed: &ClaimedRun, end: AttemptEnd) -> Result<(), StoreError> {
        let final_status = match &end {
            AttemptEnd::Succeeded { .. } => Some("succeeded"),
            AttemptEnd::Failed { retry_at: None, .. } => Some("failed"),
            AttemptEnd::Failed { .. } => None,
        };
        let now = self.clock.now();
        let event = match &end {
            AttemptEnd::Failed {
                error,
                retry_at: None,
                ..
            } => Some(failure_context(claimed).event(claimed.run.id, error, now)),
            _ => None,
        };
        if !self
            .store
            .finish_attempt(claimed.run.id, &self.owner, now, &end, event.as_ref())
            .await?
        {
            tracing::warn!(run_id = %claimed.run.id, "lost the lease before recording the attempt; another replica owns the run");
            return Ok(());
        }
        self.count(claimed, final_status);
        Ok(())
    }

    /// Metrics and the log line of a run's final status.
    fn count(&self, claimed: &ClaimedRun, final_status: Option<&str>) {
        if let Some(status) = final_status {
            self.metrics.runs.with_label_values(&[status]).inc();
            if status == "failed" {
                tracing::warn!(run_id = %claimed.run.id, job_id = %claimed.run.job_id, "job run failed");
            }
        }
    }

    #[tracing::instrument(skip_all, fields(job_id = %claimed.run.job_id, run_id = %claimed.run.id, attempt = claimed.run.attempt))]
    pub async fn attempt(&self, claimed: ClaimedRun) -> Result<(), StoreError> {
        let failed = |error: &str| AttemptEnd::Failed {
            execution_id: None,
            error: error.to_owned(),
            retry_at: None,
        };
        if !claimed.job_enabled {
            return self.finish(&claimed, failed("job disabled")).await;
        }
        if claimed.previous_lease_expired && claimed.run.attempt > claimed.max_attempts {
            return self.finish(&claimed, failed("lease expired")).await;
        }
        let params = serde_json::json!({
            "automation_job": claimed.run.job_id.to_string(),
            "scheduled_for": crate::clock::timestamp(&claimed.run.scheduled_for),
        });
        let started = std::time::Instant::now();
        let retries = claimed.run.attempt < claimed.max_attempts;
        let call = self.functions.ask(ExecuteFunction {
            account: claimed.account_id,
            id: claimed.function_id,
            params,
            // Background work waits its turn in the executor; it never fails as busy.
            options: ExecOptions {
                wait_for_room: true,
                // The fence also settles the attempt in the execution's transaction.
                fence: Some(Arc::new(super::RunLease {
                    run: claimed.run.id,
                    owner: self.owner.clone(),
                    attempt: claimed.run.attempt,
                    clock: self.clock.clone(),
                    retry_after: retries.then(|| self.retry_delay(claimed.run.attempt)),
                    failure: failure_context(&claimed),
                })),
                ..ExecOptions::default()
            },
        });
        // Renew the lease every lease/3 while the function runs.
        let result = crate::work::renewing(call, self.config.lease / 3, || {
            self.store
                .renew(claimed.run.id, &self.owner, self.lease_until())
        })
        .await;
        self.metrics
            .duration
            .observe(started.elapsed().as_secs_f64());
        let retry_or_fail = |error: String, execution_id| {
            let retry_at = (claimed.run.attempt < claimed.max_attempts).then(|| {
                self.clock.now()
                    + ChronoDuration::from_std(self.retry_delay(claimed.run.attempt))
                        .unwrap_or(ChronoDuration::seconds(1))
            });
            AttemptEnd::Failed {
                execution_id,
                error,
                retry_at,
            }
        };
        let end = match result {
            // Recorded with the execution, by its fence ([`super::RunLease`]).
            Ok(execution) => {
                let status = match execution.status {
                    ExecutionStatus::Succeeded => Some("succeeded"),
                    ExecutionStatus::Failed if !retries => Some("failed"),
                    ExecutionStatus::Failed => None,
                };
                self.count(&claimed, status);
                return Ok(());
            }
            Err(FunctionsError::NotFound(_)) => failed("function not found"),
            // No capacity right now: give the claim back without counting the attempt.
            Err(FunctionsError::ExecutorBusy | FunctionsError::Unavailable(_)) => {
                let retry_at = self.clock.now()
                    + ChronoDuration::from_std(self.config.tick).unwrap_or_default();
                return self
                    .store
                    .release(claimed.run.id, &self.owner, retry_at)
                    .await;
            }
            Err(e) => retry_or_fail(format!("could not run the function: {e}"), None),
        };
        self.finish(&claimed, end).await
    }
}

fn failure_context(claimed: &ClaimedRun) -> super::FailureContext {
    super::FailureContext {
        account_id: claimed.account_id,
        job_id: claimed.run.job_id,
        scheduled_for: claimed.run.scheduled_for,
        attempt: claimed.run.attempt,
    }
}

/// The `scheduler` actor: owns the tick loop. A tick never overlaps the previous one.
/// On `Stop` it takes no new work and waits (up to `drain`) for attempts in flight, so
/// their outcome is recorded and their lease cleared rather than left to expire.
///
/// It does not poll on a fixed tick: a pass runs when work is due (it sleeps until the
/// earliest `next_run` or retry, at most `AUTOMATION_TICK`), when woken (a job created
/// or changed on any replica: `LISTEN`/`NOTIFY` in PostgreSQL, an in-process signal in
/// memory mode), and when an attempt ends while runs were waiting for room.
pub struct SchedulerActor {
    service: SchedulerService,
    wake: Arc<tokio::sync::Notify>,
    pacer: Pacer,
    /// The last pass left due runs unclaimed for want of room: each attempt that ends
    /// wakes the next pass.
    backlog: Arc<std::sync::atomic::AtomicBool>,
    /// Attempts spawned and not yet recorded.
    in_flight: InFlight,
    _exit: ExitGuard,
}

impl SchedulerActor {
    pub fn new(service: SchedulerService, wake: Arc<tokio::sync::Notify>, exit: ExitGuard) -> Self {
        Self {
            service,
            wake,
            pacer: Pacer::default(),
            backlog: Arc::default(),
            in_flight: InFlight::default(),
            _exit: exit,
        }
    }
}

impl Paced for SchedulerActor {
    fn pacer(&mut self) -> &mut Pacer {
        &mut self.pacer
    }

    fn pass(&mut self) -> Option<LocalBoxFuture<'static, Duration>> {
        let service = self.service.clone();
        let in_flight = self.in_flight.clone();
        let wake = self.wake.clone();
        let backlog = self.backlog.clone();
        // The pass itself is tracked too: a stop that comes while it is claiming waits
        // for the runs it claims, instead of leaving them to their leases.
        let pass = self.in_flight.track(async move {
            let saturated = match service.tick(in_flight.room()).await {
                Ok((claimed, saturated)) => {
                    backlog.store(saturated, std::sync::atomic::Ordering::Relaxed);
                    for run in claimed {
                        let service = service.clone();
                        let wake = wake.clone();
                        let backlog = backlog.clone();
                        in_flight.spawn(async move {
                            if let Err(e) = service.attempt(run).await {
                                // The lease expires and another pass retries it.
                                tracing::warn!(error = ?e, "job run attempt could not be recorded");
                            }
                            // Room freed: runs left waiting are claimed now.
                            if backlog.load(std::sync::atomic::Ordering::Relaxed) {
                                wake.notify_one();
                            }
                        });
                    }
                    saturated
                }
                // A bad pass (database blip) is logged; the next one tries again.
                Err(e) => {
                    tracing::warn!(error = ?e, "scheduler pass failed");
                    false
                }
            };
            if saturated {
                service.config.tick
            } else {
                service.next_wait().await
            }
        });
        Some(Box::pin(pass))
    }
}

impl Actor for SchedulerActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Retention at start and every `PURGE_EVERY`.
        Self::purge(self, ctx);
        ctx.run_interval(crate::work::PURGE_EVERY, Self::purge);
        // A pass whenever woken, for as long as this actor lives.
        crate::work::on_every_wake(ctx, self.wake.clone(), pace::<Self>);
        pace(self, ctx);
    }
}

impl SchedulerActor {
    fn purge(&mut self, ctx: &mut Context<Self>) {
        if self.pacer.is_stopping() {
            return;
        }
        let service = self.service.clone();
        let purge = self.in_flight.track(async move {
            match service.purge().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(runs = n, "purged finished job runs past RUN_RETENTION"),
                Err(e) => tracing::warn!(error = ?e, "could not purge old job runs"),
            }
        });
        ctx.spawn(purge.into_actor(self));
    }
}

impl Handler<Stop> for SchedulerActor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Stop, _: &mut Self::Context) -> Self::Result {
        self.pacer.stop();
        let in_flight = self.in_flight.clone();
        let drain = self.service.config.drain;
        let wait = async move { in_flight.drain_at_shutdown(drain, "job attempts").await };
        Box::pin(wait.into_actor(self).map(|(), _, ctx| ctx.stop()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{AccountId, FunctionId, JobId};

    fn next_run(job: &Job, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        SchedulerService::plan(job, false, now).next_run
    }

    fn job(schedule: &str, next: &str) -> Job {
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        Job {
            id: JobId::generate(),
            account_id: AccountId::generate(),
            function_id: FunctionId::generate(),
            name: "j".into(),
            description: String::new(),
            schedule: crate::schedule::Schedule::parse(schedule).unwrap(),
            enabled: true,
            overlap_policy: OverlapPolicy::Skip,
            max_attempts: 3,
            last_run: None,
            next_run: Some(t(next)),
            created_at: t(next),
            updated_at: t(next),
        }
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn after_downtime_a_job_runs_once_and_keeps_its_phase() {
        // Due at 10:00:00, dispatched at 10:00:00.2: next is 10:00:10.
        let j = job("@every 10s", "2025-01-01T10:00:00Z");
        assert_eq!(
            next_run(&j, at("2025-01-01T10:00:00.2Z")),
            Some(at("2025-01-01T10:00:10Z"))
        );
        // Dispatched an hour late: one run now, then the next step after now, in phase.
        assert_eq!(
            next_run(&j, at("2025-01-01T11:00:03Z")),
            Some(at("2025-01-01T11:00:10Z"))
        );
        let c = job("*/15 * * * *", "2025-01-01T10:00:00Z");
        assert_eq!(
            next_run(&c, at("2025-01-01T10:00:01Z")),
            Some(at("2025-01-01T10:15:00Z"))
        );
        assert_eq!(
            next_run(&c, at("2025-01-01T13:07:00Z")),
            Some(at("2025-01-01T13:15:00Z"))
        );
    }

    #[test]
    fn overlap_skips_only_with_skip_and_a_run_in_progress() {
        let now = at("2025-01-01T10:00:00Z");
        let mut j = job("@every 10s", "2025-01-01T10:00:00Z");
        assert_eq!(SchedulerService::plan(&j, false, now).start, Start::Run);
        assert_eq!(SchedulerService::plan(&j, true, now).start, Start::Skip);
        j.overlap_policy = OverlapPolicy::Allow;
        assert_eq!(SchedulerService::plan(&j, true, now).start, Start::Run);
    }

    /// A memory scheduler store with one account, one function and `n` jobs `@every 1s`
    /// (overlap allowed) due at `due`.
    async fn store_with_due_jobs(n: usize, due: DateTime<Utc>) -> Arc<dyn SchedulerStore> {
        use crate::accounts::{AccountStore, MemoryAccountStore};
        use crate::functions::{FunctionStore, MemoryFunctionStore};
        use crate::quota::Quota;
        let db = Arc::new(crate::store::MemoryDb::default());
        let account = crate::accounts::Account::new("o", due);
        MemoryAccountStore::new(db.clone())
            .insert(&account)
            .await
            .unwrap();
        let function = crate::functions::Function {
            id: FunctionId::generate(),
            account_id: account.id,
            name: "f".into(),
            description: String::new(),
            source: "() => 1".into(),
            secrets: Vec::new(),
            limits: Default::default(),
            version: 1,
            created_at: due,
            updated_at: due,
        };
        let unlimited = Quota::unlimited("test");
        MemoryFunctionStore::new(db.clone())
            .create(&function, unlimited)
            .await
            .unwrap();
        let jobs = super::super::MemoryJobStore::new(db);
        for i in 0..n {
            let mut j = job("@every 1s", "2025-01-01T00:00:00Z");
            j.account_id = account.id;
            j.function_id = function.id;
            j.name = format!("j{i}");
            j.next_run = Some(due);
            // Overlapping runs allowed: every due occurrence starts a run.
            j.overlap_policy = OverlapPolicy::Allow;
            super::super::JobStore::create(&jobs, &j, unlimited)
                .await
                .unwrap();
        }
        Arc::new(jobs)
    }

    /// A clock stopped at one instant.
    #[derive(Debug)]
    struct At(DateTime<Utc>);

    impl Clock for At {
        fn now(&self) -> DateTime<Utc> {
            self.0
        }
    }

    /// Never called: `tick` only claims, the actor runs the attempts.
    struct NoFunctions;

    impl Ask<ExecuteFunction> for NoFunctions {
        fn ask(
            &self,
            _: ExecuteFunction,
        ) -> futures_util::future::BoxFuture<
            'static,
            Result<crate::functions::Execution, FunctionsError>,
        > {
            unreachable!("tick runs no function")
        }
    }

    /// A clock the test moves.
    #[derive(Debug)]
    struct Manual(std::sync::Mutex<DateTime<Utc>>);

    impl Clock for Manual {
        fn now(&self) -> DateTime<Utc> {
            *self.0.lock().unwrap()
        }
    }

    /// The memory scheduler store, failing `advance_due` from its `fail_from`-th call and
    /// counting the claim statements.
    struct Failing {
        inner: Arc<dyn SchedulerStore>,
        calls: std::sync::atomic::AtomicUsize,
        fail_from: usize,
        claims: std::sync::atomic::AtomicUsize,
    }

    #[async_trait::async_trait]
    impl SchedulerStore for Failing {
        async fn purge_runs(&self, before: DateTime<Utc>, limit: i64) -> Result<u64, StoreError> {
            self.inner.purge_runs(before, limit).await
        }
        async fn advance_due(
            &self,
            now: DateTime<Utc>,
            limit: i64,
            plan: &super::super::Plan,
            claimant: super::super::Claimant<'_>,
        ) -> Result<super::super::Advanced, StoreError> {
            let n = self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if n + 1 >= self.fail_from {
                return Err(StoreError::internal(anyhow::anyhow!("database blip")));
            }
            self.inner.advance_due(now, limit, plan, claimant).await
        }
        async fn next_due(&self) -> Result<super::super::NextDue, StoreError> {
            self.inner.next_due().await
        }
        async fn claim_runs(
            &self,
            now: DateTime<Utc>,
            owner: &str,
            lease_until: DateTime<Utc>,
            limit: i64,
        ) -> Result<Vec<ClaimedRun>, StoreError> {
            self.claims
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.inner.claim_runs(now, owner, lease_until, limit).await
        }
        async fn renew(
            &self,
            run: crate::ids::RunId,
            owner: &str,
            lease_until: DateTime<Utc>,
        ) -> Result<bool, StoreError> {
            self.inner.renew(run, owner, lease_until).await
        }
        async fn finish_attempt(
            &self,
            run: crate::ids::RunId,
            owner: &str,
            now: DateTime<Utc>,
            end: &AttemptEnd,
            event: Option<&crate::events::Event>,
        ) -> Result<bool, StoreError> {
            self.inner.finish_attempt(run, owner, now, end, event).await
        }
        async fn release(
            &self,
            run: crate::ids::RunId,
            owner: &str,
            retry_at: DateTime<Utc>,
        ) -> Result<(), StoreError> {
            self.inner.release(run, owner, retry_at).await
        }
    }

    fn service(
        store: Arc<dyn SchedulerStore>,
        now: DateTime<Utc>,
        owner: &str,
    ) -> SchedulerService {
        service_with_clock(store, Arc::new(At(now)), owner)
    }

    fn service_with_clock(
        store: Arc<dyn SchedulerStore>,
        clock: Arc<dyn Clock>,
        owner: &str,
    ) -> SchedulerService {
        let config = SchedulerConfig {
            tick: Duration::from_secs(1),
            drain: Duration::from_secs(1),
            lease: Duration::from_secs(30),
            retry_base: Duration::from_secs(1),
            retry_max_delay: Duration::from_secs(60),
            run_retention: None,
        };
        SchedulerService::new(
            store,
            Arc::new(NoFunctions),
            clock,
            owner.into(),
            config,
            AutomationMetrics::register(&Registry::new()).unwrap(),
        )
    }

    #[actix_rt::test]
    async fn a_pass_cut_short_still_returns_the_runs_it_claimed() {
        let now = at("2025-01-01T10:00:00Z");
        // More due jobs than one batch: the second batch fails.
        let store = store_with_due_jobs(ADVANCE_BATCH as usize + 10, now).await;
        let failing = Arc::new(Failing {
            inner: store.clone(),
            calls: Default::default(),
            fail_from: 2,
            claims: Default::default(),
        });
        let (claimed, _) = service(failing, now, "r1").tick(100).await.unwrap();
        assert_eq!(claimed.len(), 100, "the first batch's claims are kept");
        assert!(claimed.iter().all(|c| c.run.attempt == 1));
        // And the same failure before anything was claimed is an error.
        let failing = Arc::new(Failing {
            inner: store,
            calls: Default::default(),
            fail_from: 1,
            claims: Default::default(),
        });
        assert!(service(failing, now, "r2").tick(0).await.is_err());
    }

    #[actix_rt::test]
    async fn runs_waiting_for_an_attempt_go_before_new_occurrences() {
        let now = at("2025-01-01T10:00:00Z");
        let store = store_with_due_jobs(3, now).await;
        // With no room, the pass inserts the three runs unclaimed.
        let first = service(store.clone(), now, "r1");
        let (claimed, saturated) = first.tick(0).await.unwrap();
        assert!(claimed.is_empty() && saturated);
        // A second later the same jobs are due again; with room for three, the three
        // waiting runs are taken, not the new occurrences.
        let later = now + ChronoDuration::seconds(1);
        let (claimed, saturated) = service(store, later, "r1").tick(3).await.unwrap();
        assert_eq!(claimed.len(), 3);
        assert!(
            claimed.iter().all(|c| c.run.scheduled_for == now),
            "{claimed:?}"
        );
        assert!(saturated, "the new occurrences wait for the next pass");
    }

    #[actix_rt::test]
    async fn the_claim_statement_runs_only_when_something_may_be_claimable() {
        use std::sync::atomic::Ordering::SeqCst;
        let now = at("2025-01-01T10:00:00Z");
        let store = Arc::new(Failing {
            inner: store_with_due_jobs(3, now).await,
            calls: Default::default(),
            fail_from: usize::MAX,
            claims: Default::default(),
        });
        let clock = Arc::new(Manual(std::sync::Mutex::new(now)));
        let scheduler = service_with_clock(store.clone(), clock.clone(), "r1");
        let claims = || store.claims.load(SeqCst);
        // The first pass looks; the three runs start from their insert.
        let (started, _) = scheduler.tick(10).await.unwrap();
        assert_eq!((started.len(), claims()), (3, 1));
        // Nothing can have become claimable since: no claim statement.
        scheduler.tick(10).await.unwrap();
        assert_eq!(claims(), 1);
        // A pass that left runs waiting (no room) opens the claim for the next pass.
        let set = |t: DateTime<Utc>| *clock.0.lock().unwrap() = t;
        set(now + ChronoDuration::seconds(1));
        let (none, saturated) = scheduler.tick(0).await.unwrap();
        assert!(none.is_empty() && saturated);
        let (waiting, _) = scheduler.tick(10).await.unwrap();
        assert_eq!((waiting.len(), claims()), (3, 2));
        scheduler.tick(10).await.unwrap();
        assert_eq!(claims(), 2);
        // A retry seen by `next_wait` opens it at the retry time.
        let retry_at = now + ChronoDuration::milliseconds(1300);
        let end = AttemptEnd::Failed {
            execution_id: None,
            error: "boom".into(),
            retry_at: Some(retry_at),
        };
        let run = &waiting[0].run;
        assert!(store
            .finish_attempt(run.id, "r1", now + ChronoDuration::seconds(1), &end, None)
            .await
            .unwrap());
        scheduler.next_wait().await;
        set(retry_at);
        let (retried, _) = scheduler.tick(10).await.unwrap();
        assert_eq!(claims(), 3);
        assert!(
            retried
                .iter()
                .any(|c| c.run.id == run.id && c.run.attempt == 2),
            "{retried:?}"
        );
        // A retry in flight is no retry waiting: the claim stays closed while it runs.
        scheduler.next_wait().await;
        scheduler.tick(10).await.unwrap();
        assert_eq!(claims(), 3);
        // And opens at least every tick, for expired leases and other replicas' waiting
        // runs.
        set(retry_at + ChronoDuration::seconds(1));
        scheduler.tick(10).await.unwrap();
        assert_eq!(claims(), 4);
    }
}
