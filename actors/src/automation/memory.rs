//! In-memory [`JobStore`], inside the shared [`MemoryDb`] so deletes cascade.

use super::{Job, JobStore, Run};
use crate::error::StoreError;
use crate::ids::{AccountId, JobId};
use crate::page::{Page, PageRequest};
use crate::store::MemoryDb;
use std::sync::Arc;

pub struct MemoryJobStore {
    db: Arc<MemoryDb>,
}

impl MemoryJobStore {
    pub fn new(db: Arc<MemoryDb>) -> Self {
        Self { db }
    }
}

fn conflict(name: &str) -> StoreError {
    StoreError::Conflict(format!("job \"{name}\" already exists"))
}

#[async_trait::async_trait]
impl JobStore for MemoryJobStore {
    async fn create(&self, job: &Job) -> Result<(), StoreError> {
        let mut tables = self.db.lock();
        if tables.accounts.get(&job.account_id).is_none()
            || !tables.functions.contains_key(&job.function_id)
        {
            return Err(StoreError::NotFound);
        }
        let clash = tables
            .jobs
            .values()
            .any(|j| j.account_id == job.account_id && j.name.eq_ignore_ascii_case(&job.name));
        if clash {
            return Err(conflict(&job.name));
        }
        tables.jobs.insert(job.id, job.clone());
        Ok(())
    }

    async fn get(&self, account: AccountId, id: JobId) -> Result<Job, StoreError> {
        self.db
            .lock()
            .jobs
            .get(&id)
            .filter(|j| j.account_id == account)
            .cloned()
            .ok_or(StoreError::NotFound)
    }

    async fn list(&self, account: AccountId, page: PageRequest) -> Result<Page<Job>, StoreError> {
        let tables = self.db.lock();
        let rows = tables.jobs.values().filter(|j| j.account_id == account);
        Ok(Page::in_list_order(rows, &page))
    }

    async fn update(&self, job: &Job) -> Result<Job, StoreError> {
        let mut tables = self.db.lock();
        if !tables.functions.contains_key(&job.function_id) {
            return Err(StoreError::NotFound);
        }
        let clash = tables.jobs.values().any(|j| {
            j.id != job.id
                && j.account_id == job.account_id
                && j.name.eq_ignore_ascii_case(&job.name)
        });
        if clash {
            return Err(conflict(&job.name));
        }
        match tables.jobs.get_mut(&job.id) {
            Some(current) if current.account_id == job.account_id => {
                *current = job.clone();
                Ok(job.clone())
            }
            _ => Err(StoreError::NotFound),
        }
    }

    async fn delete(&self, account: AccountId, id: JobId) -> Result<(), StoreError> {
        let mut tables = self.db.lock();
        match tables.jobs.get(&id) {
            Some(j) if j.account_id == account => {
                tables.delete_job(&id);
                Ok(())
            }
            _ => Err(StoreError::NotFound),
        }
    }

    async fn list_runs(
        &self,
        account: AccountId,
        job: JobId,
        page: PageRequest,
    ) -> Result<Page<Run>, StoreError> {
        let tables = self.db.lock();
        if tables
            .jobs
            .get(&job)
            .is_none_or(|j| j.account_id != account)
        {
            return Err(StoreError::NotFound);
        }
        let mut rows: Vec<Run> = tables
            .runs
            .values()
            .filter(|r| r.job_id == job)
            .filter(|r| {
                page.after
                    .is_none_or(|k| (r.scheduled_for, *r.id.as_uuid()) < (k.at, k.id))
            })
            .cloned()
            .collect();
        rows.sort_by_key(|r| std::cmp::Reverse((r.scheduled_for, r.id)));
        rows.truncate(page.fetch_limit() as usize);
        Ok(Page::from_overfetch(rows, &page))
    }
}

#[async_trait::async_trait]
impl super::SchedulerStore for MemoryJobStore {
    async fn advance_due(
        &self,
        now: chrono::DateTime<chrono::Utc>,
        limit: i64,
        next: &super::NextRun,
    ) -> Result<super::Advanced, StoreError> {
        use super::{OverlapPolicy, RunStatus};
        let mut tables = self.db.lock();
        let mut due: Vec<(JobId, chrono::DateTime<chrono::Utc>)> = tables
            .jobs
            .values()
            .filter(|j| j.enabled)
            .filter_map(|j| j.next_run.filter(|t| *t <= now).map(|t| (j.id, t)))
            .collect();
        due.sort_by_key(|(_, t)| *t);
        due.truncate(usize::try_from(limit).unwrap_or(0));
        let mut advanced = super::Advanced::default();
        for (id, scheduled_for) in due {
            let Some(job) = tables.jobs.get(&id).cloned() else {
                continue;
            };
            let duplicate = tables
                .runs
                .values()
                .any(|r| r.job_id == id && r.scheduled_for == scheduled_for);
            let busy = tables
                .runs
                .values()
                .any(|r| r.job_id == id && r.status == RunStatus::Running);
            if !duplicate {
                let skip = busy && job.overlap_policy == OverlapPolicy::Skip;
                let run = Run {
                    id: crate::ids::RunId::generate(),
                    job_id: id,
                    scheduled_for,
                    started_at: None,
                    completed_at: skip.then_some(now),
                    status: if skip {
                        RunStatus::Skipped
                    } else {
                        RunStatus::Running
                    },
                    attempt: 0,
                    execution_id: None,
                    error: skip.then(|| "previous run still in progress".to_owned()),
                };
                tables.run_state.insert(run.id, Default::default());
                tables.runs.insert(run.id, run);
                if skip {
                    advanced.skipped += 1;
                } else {
                    advanced.started.push((id, scheduled_for));
                }
            }
            if let Some(j) = tables.jobs.get_mut(&id) {
                j.next_run = next(&job, now);
                if !duplicate {
                    j.last_run = Some(scheduled_for);
                }
            }
        }
        Ok(advanced)
    }

    async fn claim_runs(
        &self,
        now: chrono::DateTime<chrono::Utc>,
        owner: &str,
        lease_until: chrono::DateTime<chrono::Utc>,
        limit: i64,
    ) -> Result<Vec<super::ClaimedRun>, StoreError> {
        use super::RunStatus;
        let mut tables = self.db.lock();
        let mut ids: Vec<(chrono::DateTime<chrono::Utc>, crate::ids::RunId)> = tables
            .runs
            .values()
            .filter(|r| r.status == RunStatus::Running)
            .filter(|r| {
                let state = tables.run_state.get(&r.id).cloned().unwrap_or_default();
                state.next_attempt_at.is_none_or(|t| t <= now)
                    && state.lease_until.is_none_or(|t| t < now)
            })
            .map(|r| {
                (
                    tables
                        .run_state
                        .get(&r.id)
                        .and_then(|s| s.next_attempt_at)
                        .unwrap_or(r.scheduled_for),
                    r.id,
                )
            })
            .collect();
        ids.sort();
        ids.truncate(usize::try_from(limit).unwrap_or(0));
        let mut claimed = Vec::new();
        for (_, id) in ids {
            let Some(run) = tables.runs.get(&id).cloned() else {
                continue;
            };
            let Some(job) = tables.jobs.get(&run.job_id).cloned() else {
                continue;
            };
            let state = tables.run_state.entry(id).or_default();
            let previous_lease_expired = state.lease_owner.is_some();
            state.lease_owner = Some(owner.to_owned());
            state.lease_until = Some(lease_until);
            let Some(run_mut) = tables.runs.get_mut(&id) else {
                continue;
            };
            run_mut.attempt += 1;
            run_mut.started_at.get_or_insert(now);
            claimed.push(super::ClaimedRun {
                run: run_mut.clone(),
                account_id: job.account_id,
                function_id: job.function_id,
                max_attempts: job.max_attempts,
                job_enabled: job.enabled,
                previous_lease_expired,
            });
        }
        Ok(claimed)
    }

    async fn renew(
        &self,
        run: crate::ids::RunId,
        owner: &str,
        lease_until: chrono::DateTime<chrono::Utc>,
    ) -> Result<bool, StoreError> {
        let mut tables = self.db.lock();
        match tables.run_state.get_mut(&run) {
            Some(state) if state.lease_owner.as_deref() == Some(owner) => {
                state.lease_until = Some(lease_until);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn finish_attempt(
        &self,
        run: crate::ids::RunId,
        owner: &str,
        now: chrono::DateTime<chrono::Utc>,
        end: &super::AttemptEnd,
        event: Option<&crate::events::Event>,
    ) -> Result<bool, StoreError> {
        use super::{AttemptEnd, RunStatus};
        let mut tables = self.db.lock();
        let ours = tables
            .run_state
            .get(&run)
            .is_some_and(|s| s.lease_owner.as_deref() == Some(owner));
        if !ours {
            return Ok(false);
        }
        let Some(r) = tables.runs.get_mut(&run) else {
            return Ok(false);
        };
        let mut next_attempt_at = None;
        match end {
            AttemptEnd::Succeeded { execution_id } => {
                r.status = RunStatus::Succeeded;
                r.execution_id = Some(*execution_id);
                r.error = None;
                r.completed_at = Some(now);
            }
            AttemptEnd::Failed {
                execution_id,
                error,
                retry_at,
            } => {
                r.execution_id = execution_id.or(r.execution_id);
                r.error = Some(error.clone());
                match retry_at {
                    Some(at) => next_attempt_at = Some(*at),
                    None => {
                        r.status = RunStatus::Failed;
                        r.completed_at = Some(now);
                    }
                }
            }
        }
        let state = tables.run_state.entry(run).or_default();
        state.lease_owner = None;
        state.lease_until = None;
        state.next_attempt_at = next_attempt_at;
        if let Some(event) = event {
            tables.insert_event(event);
        }
        Ok(true)
    }

    async fn release(
        &self,
        run: crate::ids::RunId,
        owner: &str,
        retry_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), StoreError> {
        let mut tables = self.db.lock();
        let ours = tables
            .run_state
            .get(&run)
            .is_some_and(|s| s.lease_owner.as_deref() == Some(owner));
        if ours {
            if let Some(r) = tables.runs.get_mut(&run) {
                r.attempt -= 1;
            }
            let state = tables.run_state.entry(run).or_default();
            state.lease_owner = None;
            state.lease_until = None;
            state.next_attempt_at = Some(retry_at);
        }
        Ok(())
    }
}
