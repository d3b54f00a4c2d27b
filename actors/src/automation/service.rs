//! Job business logic: the function must belong to the account, `next_run` follows the
//! schedule (recomputed from now on a new schedule, re-enabling, or `next_run: null`; a
//! timestamp sets the next dispatch once), disabled jobs have no `next_run`.

use super::{AutomationError, Job, JobPatch, JobStore, NewJob, Run};
use crate::clock::Clock;
use crate::error::{OrNotFound, StoreError, ValidationError};
use crate::functions::FunctionStore;
use crate::ids::{AccountId, FunctionId, JobId};
use crate::page::{Page, PageRequest};
use crate::quota::Quota;
use std::sync::Arc;

#[derive(Clone)]
pub struct AutomationService {
    jobs: Arc<dyn JobStore>,
    functions: Arc<dyn FunctionStore>,
    clock: Arc<dyn Clock>,
    /// `MAX_JOBS_PER_ACCOUNT`.
    quota: Quota,
    /// Wakes this replica's scheduler when a job is created or changed (other replicas
    /// hear of it through `LISTEN`/`NOTIFY` in PostgreSQL).
    wake: Arc<tokio::sync::Notify>,
}

fn function_not_found() -> AutomationError {
    ValidationError::new("function_id", "function not found in this account").into()
}

impl AutomationService {
    pub fn new(
        jobs: Arc<dyn JobStore>,
        functions: Arc<dyn FunctionStore>,
        clock: Arc<dyn Clock>,
        quota: Quota,
    ) -> Self {
        Self {
            jobs,
            functions,
            clock,
            quota,
            wake: Arc::default(),
        }
    }

    /// Wakes `wake` (the scheduler's) whenever a job is created or changed.
    pub fn waking(mut self, wake: Arc<tokio::sync::Notify>) -> Self {
        self.wake = wake;
        self
    }

    async fn check_function(
        &self,
        account: AccountId,
        function: FunctionId,
    ) -> Result<(), AutomationError> {
        if crate::functions::owns_function(&*self.functions, account, function).await? {
            Ok(())
        } else {
            Err(function_not_found())
        }
    }

    #[tracing::instrument(skip_all, fields(account_id = %account))]
    pub async fn create(&self, account: AccountId, new: NewJob) -> Result<Job, AutomationError> {
        self.check_function(account, new.function_id).await?;
        let job = new.into_job(account, self.clock.now());
        match self.jobs.create(&job, self.quota).await {
            Ok(()) => {}
            // The function went away between the check and the insert.
            Err(StoreError::NotFound) => return Err(function_not_found()),
            Err(StoreError::Conflict(message)) => return Err(AutomationError::Conflict(message)),
            Err(e) => return Err(e.into()),
        }
        self.wake.notify_one();
        tracing::info!(job_id = %job.id, schedule = %job.schedule, "job created");
        Ok(job)
    }

    pub async fn get(&self, account: AccountId, id: JobId) -> Result<Job, AutomationError> {
        Ok(self.jobs.get(account, id).await.or_not_found("job")?)
    }

    pub async fn list(
        &self,
        account: AccountId,
        page: PageRequest,
    ) -> Result<Page<Job>, AutomationError> {
        Ok(self.jobs.list(account, page).await?)
    }

    #[tracing::instrument(skip_all, fields(account_id = %account, job_id = %id))]
    pub async fn update(
        &self,
        account: AccountId,
        id: JobId,
        patch: JobPatch,
    ) -> Result<Job, AutomationError> {
        if let Some(function) = patch.function_id {
            self.check_function(account, function).await?;
        }
        let now = self.clock.now();
        // Applied to the job as it is when locked: a concurrent PATCH, or the
        // scheduler's advance of `next_run`, is never undone by a stale read.
        let change = |current: &Job| patch.apply(current, now);
        let updated = match self.jobs.update(account, id, &change).await {
            Err(StoreError::NotFound) if patch.function_id.is_some() => Err(function_not_found()),
            Err(StoreError::Conflict(message)) => Err(AutomationError::Conflict(message)),
            other => Ok(other.or_not_found("job")?),
        }?;
        self.wake.notify_one();
        Ok(updated)
    }

    pub async fn delete(&self, account: AccountId, id: JobId) -> Result<(), AutomationError> {
        Ok(self.jobs.delete(account, id).await.or_not_found("job")?)
    }

    pub async fn list_runs(
        &self,
        account: AccountId,
        job: JobId,
        page: PageRequest,
    ) -> Result<Page<Run>, AutomationError> {
        Ok(self
            .jobs
            .list_runs(account, job, page)
            .await
            .or_not_found("job")?)
    }
}
