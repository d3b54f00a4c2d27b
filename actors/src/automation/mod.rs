//! Automation: jobs that run a function on a schedule, and the record of their runs
//! (`app_automation_jobs`, `app_automation_runs`, owned here).

mod actor;
mod domain;
mod memory;
mod postgres;
mod scheduler;
mod service;

pub use actor::{AutomationActor, CreateJob, DeleteJob, GetJob, ListJobs, ListRuns, UpdateJob};
pub use domain::{
    Job, JobInput, JobPatch, JobPatchInput, NewJob, OverlapPolicy, Run, RunStatus, MAX_ATTEMPTS,
};
pub use memory::MemoryJobStore;
pub use postgres::{PgJobStore, JOBS_CHANNEL};
pub use scheduler::{AutomationMetrics, SchedulerActor, SchedulerConfig, SchedulerService};
pub use service::AutomationService;

use crate::error::StoreError;
use crate::ids::{AccountId, ExecutionId, FunctionId, JobId, RunId};
use crate::page::{Page, PageRequest};
use crate::quota::Quota;
use crate::store::Tx;
use chrono::{DateTime, Utc};

crate::subsystem_error!(
    /// Why an automation request failed.
    AutomationError {}
);

crate::handle_trait!(
    /// What the HTTP edge may ask of the automation subsystem.
    AutomationHandle: CreateJob,
    GetJob,
    ListJobs,
    UpdateJob,
    DeleteJob,
    ListRuns,
);

/// Inserts a job inside the caller's transaction (a Devpack `automation.schedule`):
/// `Conflict` on a duplicate name in the account, `NotFound` if the account or function
/// is gone.
pub async fn insert_job(tx: &mut Tx<'_>, job: &Job, quota: Quota) -> Result<(), StoreError> {
    match tx {
        Tx::Memory(tx) => memory::insert_job(tx, job, quota),
        Tx::Postgres(tx) => postgres::insert_job(tx, job, quota).await,
    }
}

/// The lease of a job attempt, as the fence of its execution: the record and the
/// Devpack effects of an attempt commit only while this replica holds the run.
#[derive(Debug)]
pub struct RunLease {
    pub run: RunId,
    pub owner: std::sync::Arc<str>,
    /// The attempt this lease was taken for: a replica that lost its lease and claimed
    /// the run again holds it for a later attempt, not for this one.
    pub attempt: i32,
    pub clock: std::sync::Arc<dyn crate::clock::Clock>,
    /// What a failed execution makes of the run: a retry this long after it ended, or
    /// (`None`) the run's final failure, with its `automation.job.failed` event.
    pub retry_after: Option<std::time::Duration>,
    pub failure: FailureContext,
}

/// What the `automation.job.failed` event of a run says about it.
#[derive(Debug, Clone)]
pub struct FailureContext {
    pub account_id: AccountId,
    pub job_id: JobId,
    pub scheduled_for: DateTime<Utc>,
    pub attempt: i32,
}

impl FailureContext {
    pub fn event(&self, run: RunId, error: &str, now: DateTime<Utc>) -> crate::events::Event {
        crate::events::Event::new(
            self.account_id,
            crate::events::AUTOMATION_JOB_FAILED,
            serde_json::json!({
                "job_id": self.job_id.to_string(),
                "run_id": run.to_string(),
                "scheduled_for": crate::clock::timestamp(&self.scheduled_for),
                "attempt": self.attempt,
                "error": error,
            }),
            now,
        )
    }
}

impl RunLease {
    /// The attempt's end for `execution`, and the event a final failure emits.
    pub fn end_of(
        &self,
        execution: &crate::functions::Execution,
        now: DateTime<Utc>,
    ) -> (AttemptEnd, Option<crate::events::Event>) {
        if execution.status == crate::functions::ExecutionStatus::Succeeded {
            return (
                AttemptEnd::Succeeded {
                    execution_id: execution.id,
                },
                None,
            );
        }
        let error = execution
            .error
            .clone()
            .unwrap_or_else(|| "execution failed".to_owned());
        let retry_at = self.retry_after.map(|delay| {
            now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::seconds(1))
        });
        let event = retry_at
            .is_none()
            .then(|| self.failure.event(self.run, &error, now));
        (
            AttemptEnd::Failed {
                execution_id: Some(execution.id),
                error,
                retry_at,
            },
            event,
        )
    }
}

#[async_trait::async_trait]
impl crate::functions::Fence for RunLease {
    async fn holds(&self, tx: &mut Tx<'_>) -> Result<bool, StoreError> {
        let now = self.clock.now();
        match tx {
            Tx::Memory(tx) => Ok(memory::holds_run(tx, self, now)),
            Tx::Postgres(tx) => postgres::holds_run(tx, self, now).await,
        }
    }

    /// Records the attempt's end with the execution: one transaction per attempt.
    async fn settle(
        &self,
        tx: &mut Tx<'_>,
        execution: &crate::functions::Execution,
    ) -> Result<bool, StoreError> {
        let now = self.clock.now();
        let (end, event) = self.end_of(execution, now);
        let settled = match tx {
            Tx::Memory(memory) => memory::settle_run(memory, self, now, &end),
            Tx::Postgres(pg) => postgres::settle_run(pg, self, now, &end).await?,
        };
        if settled {
            if let Some(event) = &event {
                crate::events::insert(tx, event).await?;
            }
        }
        Ok(settled)
    }
}

/// How a due occurrence starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// A `running` run, to be attempted.
    Run,
    /// A `skipped` run: a previous run is still in progress.
    Skip,
}

/// What to do with a job's due occurrence: decided by the scheduler service from the job
/// and whether a run of it is in progress; applied by the store in its transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dispatch {
    pub start: Start,
    /// The job's `next_run` after this occurrence.
    pub next_run: Option<DateTime<Utc>>,
}

/// The scheduler's decision for one due job: `(job, a run is in progress)`.
pub type Plan = dyn Fn(&Job, bool) -> Dispatch + Send + Sync;

/// A run claimed under this replica's lease, with what dispatching it needs.
#[derive(Debug, Clone)]
pub struct ClaimedRun {
    pub run: Run,
    pub account_id: AccountId,
    pub function_id: FunctionId,
    pub max_attempts: i32,
    pub job_enabled: bool,
    /// The previous holder's lease ran out mid-attempt: that attempt failed.
    pub previous_lease_expired: bool,
}

/// How one attempt ended.
#[derive(Debug, Clone)]
pub enum AttemptEnd {
    Succeeded {
        execution_id: ExecutionId,
    },
    /// Failed; retried at `retry_at` when set, else the run is finally `failed`.
    Failed {
        execution_id: Option<ExecutionId>,
        error: String,
        retry_at: Option<DateTime<Utc>>,
    },
}

/// Who takes the runs an advance inserts: this replica, under a lease until
/// `lease_until`, at most `room` of them (the rest wait for a claim). A run inserted
/// already claimed saves the claim's statement and its wait for the next pass.
#[derive(Debug, Clone, Copy)]
pub struct Claimant<'a> {
    pub owner: &'a str,
    pub lease_until: DateTime<Utc>,
    pub room: usize,
}

/// What advancing due jobs did, for metrics and tests.
#[derive(Debug, Clone, Default)]
pub struct Advanced {
    /// `(job, scheduled_for)` of each run inserted as `running`.
    pub started: Vec<(JobId, DateTime<Utc>)>,
    /// The runs of `started` inserted claimed by the claimant, in its first attempt.
    pub claimed: Vec<ClaimedRun>,
    pub skipped: usize,
    /// Due jobs taken in this batch: fewer than the limit means none is left due.
    pub examined: usize,
}

/// When the scheduler has work next ([`SchedulerStore::next_due`]); `None` where nothing
/// is scheduled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NextDue {
    /// The earliest `next_run` of an enabled job.
    pub job: Option<DateTime<Utc>>,
    /// The earliest `next_attempt_at` of a run waiting to be retried.
    pub retry: Option<DateTime<Utc>>,
}

impl NextDue {
    pub fn earliest(&self) -> Option<DateTime<Utc>> {
        self.job.into_iter().chain(self.retry).min()
    }
}

/// The scheduler's side of the job store. Both implementations give the same guarantees:
/// one run per `(job, scheduled_for)`, `next_run` moved in the same transaction, runs
/// worked by one lease holder at a time.
#[async_trait::async_trait]
pub trait SchedulerStore: Send + Sync + 'static {
    /// Retention: deletes up to `limit` runs finished before `finished_before`, oldest
    /// first; how many went.
    async fn purge_runs(
        &self,
        finished_before: DateTime<Utc>,
        limit: i64,
    ) -> Result<u64, StoreError>;
    /// For up to `limit` enabled jobs with `next_run ≤ now`, in one transaction: insert
    /// the run of the occurrence as `plan` says (unique per `(job, scheduled_for)`: a
    /// second replica's insert does nothing), the first `claimant.room` runs to start
    /// already claimed (first attempt, `started_at = now`), and move `next_run` to
    /// `plan`'s.
    async fn advance_due(
        &self,
        now: DateTime<Utc>,
        limit: i64,
        plan: &Plan,
        claimant: Claimant<'_>,
    ) -> Result<Advanced, StoreError>;
    /// When the scheduler has work next: the earliest `next_run` of an enabled job and
    /// the earliest retry time of a run waiting for its next attempt.
    async fn next_due(&self) -> Result<NextDue, StoreError>;
    /// Claims up to `limit` running runs due for an attempt whose lease is free or
    /// expired, counting the new attempt; oldest claimable first (the later of retry
    /// time and lease end, none meaning at once), then by `scheduled_for`.
    async fn claim_runs(
        &self,
        now: DateTime<Utc>,
        owner: &str,
        lease_until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<ClaimedRun>, StoreError>;
    /// Extends the lease while an attempt runs; `false` if the run is no longer ours.
    async fn renew(
        &self,
        run: RunId,
        owner: &str,
        lease_until: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Records an attempt's end and clears the lease, if still ours; with the event it
    /// causes (`automation.job.failed`) in the same transaction.
    async fn finish_attempt(
        &self,
        run: RunId,
        owner: &str,
        now: DateTime<Utc>,
        end: &AttemptEnd,
        event: Option<&crate::events::Event>,
    ) -> Result<bool, StoreError>;
    /// Gives a claim back without counting the attempt (the executor was busy).
    async fn release(
        &self,
        run: RunId,
        owner: &str,
        retry_at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
}

/// A PATCH of a job, applied to the job as it is now (under its row lock).
pub type JobChange<'c> = &'c (dyn for<'j> Fn(&'j Job) -> Job + Sync);

#[async_trait::async_trait]
pub trait JobStore: Send + Sync + 'static {
    /// `Conflict` on a duplicate name (case-insensitive) in the account; `NotFound` if the
    /// account or the function is gone.
    /// `LimitExceeded` when the account already holds `quota` jobs.
    async fn create(&self, job: &Job, quota: Quota) -> Result<(), StoreError>;
    async fn get(&self, account: AccountId, id: JobId) -> Result<Job, StoreError>;
    async fn list(&self, account: AccountId, page: PageRequest) -> Result<Page<Job>, StoreError>;
    /// Applies `change` to the job as it is now, under its row lock, and saves what it
    /// returns (every field but `last_run`, which is the scheduler's); `Conflict` on a
    /// duplicate name, `NotFound` if the job, or the function it now names, is gone.
    async fn update(
        &self,
        account: AccountId,
        id: JobId,
        change: JobChange<'_>,
    ) -> Result<Job, StoreError>;
    /// Deletes the job and its runs.
    async fn delete(&self, account: AccountId, id: JobId) -> Result<(), StoreError>;
    /// Newest first by `scheduled_for` (then id); the next page starts strictly before
    /// the page key.
    async fn list_runs(
        &self,
        account: AccountId,
        job: JobId,
        page: PageRequest,
    ) -> Result<Page<Run>, StoreError>;
}
