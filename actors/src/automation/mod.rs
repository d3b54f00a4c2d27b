//! Automation: jobs that run a function on a schedule, and the record of their runs.

mod actor;
mod domain;
mod memory;
mod postgres;
mod service;

pub use actor::{AutomationActor, CreateJob, DeleteJob, GetJob, ListJobs, ListRuns, UpdateJob};
pub use domain::{Job, OverlapPolicy, Run, RunStatus};
pub use memory::MemoryJobStore;
pub use postgres::PgJobStore;
pub use service::{AutomationService, JobChanges, NewJob};

use crate::error::StoreError;
use crate::ids::{AccountId, JobId};
use crate::page::{Page, PageRequest};

#[async_trait::async_trait]
pub trait JobStore: Send + Sync + 'static {
    /// `Conflict` on a duplicate name (case-insensitive) in the account; `NotFound` if the
    /// account or the function is gone.
    async fn create(&self, job: &Job) -> Result<(), StoreError>;
    async fn get(&self, account: AccountId, id: JobId) -> Result<Job, StoreError>;
    async fn list(&self, account: AccountId, page: PageRequest) -> Result<Page<Job>, StoreError>;
    /// Saves every field; `Conflict` on a duplicate name.
    async fn update(&self, job: &Job) -> Result<Job, StoreError>;
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
