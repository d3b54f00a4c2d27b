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
        let mut rows: Vec<Job> = tables
            .jobs
            .values()
            .filter(|j| j.account_id == account)
            .filter(|j| {
                page.after
                    .is_none_or(|k| (j.created_at, *j.id.as_uuid()) > (k.at, k.id))
            })
            .cloned()
            .collect();
        rows.sort_by_key(|j| (j.created_at, j.id));
        rows.truncate(page.fetch_limit() as usize);
        Ok(Page::from_overfetch(rows, &page))
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
