//! Job business logic: the function must belong to the account, `next_run` follows the
//! schedule (recomputed from now on a new schedule, re-enabling, or `next_run: null`; a
//! timestamp sets the next dispatch once), disabled jobs have no `next_run`.

use super::{Job, JobStore, OverlapPolicy, Run};
use crate::clock::Clock;
use crate::error::{StoreError, ValidationError};
use crate::functions::FunctionStore;
use crate::ids::{AccountId, FunctionId, JobId};
use crate::page::{Page, PageRequest};
use crate::patch::Patch;
use crate::schedule::Schedule;
use chrono::{DateTime, Utc};
use std::sync::Arc;

/// A validated job.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub function_id: FunctionId,
    pub name: String,
    pub description: String,
    pub schedule: Schedule,
    pub enabled: bool,
    pub overlap_policy: OverlapPolicy,
    pub max_attempts: i32,
}

/// A validated PATCH; `None`/`Missing` leaves a field unchanged.
#[derive(Debug, Clone, Default)]
pub struct JobChanges {
    pub function_id: Option<FunctionId>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub schedule: Option<Schedule>,
    pub enabled: Option<bool>,
    pub overlap_policy: Option<OverlapPolicy>,
    pub max_attempts: Option<i32>,
    pub next_run: Patch<DateTime<Utc>>,
}

#[derive(Clone)]
pub struct AutomationService {
    jobs: Arc<dyn JobStore>,
    functions: Arc<dyn FunctionStore>,
    clock: Arc<dyn Clock>,
}

fn function_not_found() -> ValidationError {
    ValidationError::new("function_id", "function not found in this account")
}

impl AutomationService {
    pub fn new(
        jobs: Arc<dyn JobStore>,
        functions: Arc<dyn FunctionStore>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            jobs,
            functions,
            clock,
        }
    }

    #[tracing::instrument(skip_all, fields(account_id = %account))]
    pub async fn create(
        &self,
        account: AccountId,
        new: NewJob,
    ) -> Result<Result<Job, ValidationError>, StoreError> {
        if !crate::functions::owns_function(&*self.functions, account, new.function_id).await? {
            return Ok(Err(function_not_found()));
        }
        let now = self.clock.now();
        let job = Job {
            id: JobId::generate(),
            account_id: account,
            function_id: new.function_id,
            name: new.name,
            description: new.description,
            next_run: if new.enabled {
                new.schedule.next_after(now)
            } else {
                None
            },
            schedule: new.schedule.to_string(),
            enabled: new.enabled,
            overlap_policy: new.overlap_policy,
            max_attempts: new.max_attempts,
            last_run: None,
            created_at: now,
            updated_at: now,
        };
        self.jobs.create(&job).await?;
        tracing::info!(job_id = %job.id, schedule = %job.schedule, "job created");
        Ok(Ok(job))
    }

    pub async fn get(&self, account: AccountId, id: JobId) -> Result<Job, StoreError> {
        self.jobs.get(account, id).await
    }

    pub async fn list(
        &self,
        account: AccountId,
        page: PageRequest,
    ) -> Result<Page<Job>, StoreError> {
        self.jobs.list(account, page).await
    }

    #[tracing::instrument(skip_all, fields(account_id = %account, job_id = %id))]
    pub async fn update(
        &self,
        account: AccountId,
        id: JobId,
        changes: JobChanges,
    ) -> Result<Result<Job, ValidationError>, StoreError> {
        let mut job = self.jobs.get(account, id).await?;
        if let Some(function) = changes.function_id {
            if !crate::functions::owns_function(&*self.functions, account, function).await? {
                return Ok(Err(function_not_found()));
            }
            job.function_id = function;
        }
        let was_enabled = job.enabled;
        let now = self.clock.now();
        let mut recompute = matches!(changes.next_run, Patch::Null);
        if let Some(schedule) = &changes.schedule {
            job.schedule = schedule.to_string();
            recompute = true;
        }
        if let Some(enabled) = changes.enabled {
            job.enabled = enabled;
            recompute |= enabled && !was_enabled;
        }
        job.name = changes.name.unwrap_or(job.name);
        job.description = changes.description.unwrap_or(job.description);
        job.overlap_policy = changes.overlap_policy.unwrap_or(job.overlap_policy);
        job.max_attempts = changes.max_attempts.unwrap_or(job.max_attempts);
        if let Patch::Value(at) = changes.next_run {
            job.next_run = Some(crate::clock::truncate_micros(at));
        } else if recompute {
            let schedule = match &changes.schedule {
                Some(s) => s.clone(),
                // The stored text was validated when saved.
                None => Schedule::parse(&job.schedule)
                    .map_err(|e| StoreError::internal(anyhow::anyhow!(e)))?,
            };
            job.next_run = schedule.next_after(now);
        }
        if !job.enabled {
            job.next_run = None;
        }
        job.updated_at = now;
        Ok(Ok(self.jobs.update(&job).await?))
    }

    pub async fn delete(&self, account: AccountId, id: JobId) -> Result<(), StoreError> {
        self.jobs.delete(account, id).await
    }

    pub async fn list_runs(
        &self,
        account: AccountId,
        job: JobId,
        page: PageRequest,
    ) -> Result<Page<Run>, StoreError> {
        self.jobs.list_runs(account, job, page).await
    }
}
