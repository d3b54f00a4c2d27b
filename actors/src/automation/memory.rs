//! In-memory [`JobStore`] and [`SchedulerStore`]: jobs in list order per account with a
//! case-insensitive name index, runs with their lease per job; runs go with their job,
//! jobs with their function or account.

use super::{
    Advanced, AttemptEnd, Claimant, ClaimedRun, Job, JobChange, JobStore, Plan, Run, RunStatus,
    SchedulerStore, Start,
};
use crate::error::StoreError;
use crate::events::Event;
use crate::ids::{AccountId, JobId, RunId};
use crate::page::{Keyed, Page, PageKey, PageRequest};
use crate::quota::Quota;
use crate::store::memory::AccountRows;
use crate::store::{MemoryDb, MemoryTx, Row, Table, Tx};
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

/// A run with the scheduler's bookkeeping (not part of the API shape).
#[derive(Debug, Clone)]
struct RunRow {
    run: Run,
    next_attempt_at: Option<DateTime<Utc>>,
    lease_owner: Option<String>,
    lease_until: Option<DateTime<Utc>>,
}

/// `app_automation_jobs` and `app_automation_runs`.
#[derive(Debug, Default)]
struct JobTable {
    jobs: AccountRows<JobId, Job>,
    /// `(account, lower(name))`: names are unique per account, case-insensitively.
    names: HashMap<(AccountId, String), JobId>,
    runs: HashMap<RunId, RunRow>,
    /// `(job, scheduled_for, id)`: a job's runs in list order.
    by_job: BTreeMap<(JobId, PageKey), RunId>,
    /// Runs that are `running`.
    running: HashSet<RunId>,
    /// How many of them each job has (the overlap rule reads it per due job).
    running_per_job: HashMap<JobId, usize>,
    /// `(completed_at, id)` of finished runs, oldest first: retention.
    finished: BTreeMap<(DateTime<Utc>, RunId), JobId>,
}

impl JobTable {
    fn name_key(job: &Job) -> (AccountId, String) {
        (job.account_id, job.name.to_lowercase())
    }

    fn remove_job(&mut self, id: &JobId) -> Option<Job> {
        let job = self.jobs.remove(id)?;
        self.names.remove(&Self::name_key(&job));
        let runs: Vec<_> = self
            .by_job
            .range((*id, PageKey::MIN)..)
            .take_while(|((job, _), _)| job == id)
            .map(|(key, run)| (*key, *run))
            .collect();
        for (key, run) in runs {
            self.by_job.remove(&key);
            self.stopped(run, *id);
            if let Some(row) = self.runs.remove(&run) {
                if let Some(at) = row.run.completed_at {
                    self.finished.remove(&(at, run));
                }
            }
        }
        Some(job)
    }

    fn insert_run(&mut self, run: Run) {
        self.by_job.insert((run.job_id, run.page_key()), run.id);
        if run.status == RunStatus::Running {
            self.started(run.id, run.job_id);
        }
        if let Some(at) = run.completed_at {
            self.finished.insert((at, run.id), run.job_id);
        }
        self.runs.insert(
            run.id,
            RunRow {
                run,
                next_attempt_at: None,
                lease_owner: None,
                lease_until: None,
            },
        );
    }

    fn has_run(&self, job: JobId, scheduled_for: DateTime<Utc>) -> bool {
        self.by_job
            .range(
                (
                    job,
                    PageKey {
                        at: scheduled_for,
                        id: uuid::Uuid::nil(),
                    },
                )..,
            )
            .next()
            .is_some_and(|((j, key), _)| *j == job && key.at == scheduled_for)
    }

    fn busy(&self, job: JobId) -> bool {
        self.running_per_job.contains_key(&job)
    }

    /// `run` (of `job`) is `running`.
    fn started(&mut self, run: RunId, job: JobId) {
        if self.running.insert(run) {
            *self.running_per_job.entry(job).or_default() += 1;
        }
    }

    /// `run` (of `job`) is no longer `running`.
    fn stopped(&mut self, run: RunId, job: JobId) {
        if self.running.remove(&run) {
            if let Some(n) = self.running_per_job.get_mut(&job) {
                *n -= 1;
                if *n == 0 {
                    self.running_per_job.remove(&job);
                }
            }
        }
    }

    /// The lease of `run`, if `owner` holds it.
    fn owned(&mut self, run: RunId, owner: &str) -> Option<&mut RunRow> {
        self.runs
            .get_mut(&run)
            .filter(|r| r.lease_owner.as_deref() == Some(owner))
    }

    /// Records an attempt's end and clears its lease, if `owner` holds it.
    fn end_attempt(&mut self, run: RunId, owner: &str, now: DateTime<Utc>, end: &AttemptEnd) {
        let Some(row) = self.owned(run, owner) else {
            return;
        };
        let mut finished = false;
        row.next_attempt_at = None;
        match end {
            AttemptEnd::Succeeded { execution_id } => {
                row.run.status = RunStatus::Succeeded;
                row.run.execution_id = Some(*execution_id);
                row.run.error = None;
                row.run.completed_at = Some(now);
                finished = true;
            }
            AttemptEnd::Failed {
                execution_id,
                error,
                retry_at,
            } => {
                row.run.execution_id = execution_id.or(row.run.execution_id);
                row.run.error = Some(error.clone());
                match retry_at {
                    Some(at) => row.next_attempt_at = Some(*at),
                    None => {
                        row.run.status = RunStatus::Failed;
                        row.run.completed_at = Some(now);
                        finished = true;
                    }
                }
            }
        }
        row.lease_owner = None;
        row.lease_until = None;
        if finished {
            let job = row.run.job_id;
            self.stopped(run, job);
            self.finished.insert((now, run), job);
        }
    }

    /// Puts a run back as it was (a rolled-back transaction).
    fn restore_run(&mut self, row: RunRow, was_running: bool) {
        let id = row.run.id;
        if let Some(current) = self.runs.get(&id) {
            if let Some(at) = current.run.completed_at {
                self.finished.remove(&(at, id));
            }
        }
        if was_running {
            self.started(id, row.run.job_id);
        }
        self.runs.insert(id, row);
    }
}

impl Table for JobTable {
    fn cascade(&mut self, parent: Row, removed: &mut Vec<Row>) {
        let gone: Vec<JobId> = match parent {
            Row::Account(account) => self.jobs.ids_of(account).collect(),
            Row::Function(account, function) => self
                .jobs
                .ids_of(account)
                .filter(|id| self.jobs.get(id).is_some_and(|j| j.function_id == function))
                .collect(),
            Row::Job(..) | Row::Trigger(..) => Vec::new(),
        };
        for id in gone {
            if let Some(job) = self.remove_job(&id) {
                removed.push(Row::Job(job.account_id, id));
            }
        }
    }

    fn contains(&self, row: Row) -> bool {
        matches!(row, Row::Job(account, id) if self.jobs.get_in(account, &id).is_some())
    }
}

fn conflict(name: &str) -> StoreError {
    StoreError::Conflict(format!("job \"{name}\" already exists"))
}

/// Inserts a job in a memory transaction, checking what the foreign keys and the unique
/// name index check in PostgreSQL.
pub(super) fn insert_job(tx: &mut MemoryTx<'_>, job: &Job, quota: Quota) -> Result<(), StoreError> {
    if !tx
        .tables()
        .exists(Row::Function(job.account_id, job.function_id))
    {
        return Err(StoreError::NotFound);
    }
    let table = tx.get::<JobTable>();
    let key = JobTable::name_key(job);
    if table.names.contains_key(&key) {
        return Err(conflict(&job.name));
    }
    table.jobs.check_quota(job.account_id, quota, "jobs")?;
    table.names.insert(key, job.id);
    table.jobs.insert(job.account_id, job.id, job.clone());
    let id = job.id;
    tx.on_rollback(move |tables| {
        tables.get::<JobTable>().remove_job(&id);
    });
    Ok(())
}

/// Whether the lease of `lease`'s attempt still holds at `now` (the fence of an attempt).
pub(super) fn holds_run(
    tx: &mut MemoryTx<'_>,
    lease: &super::RunLease,
    now: DateTime<Utc>,
) -> bool {
    tx.get::<JobTable>()
        .owned(lease.run, &lease.owner)
        .is_some_and(|r| {
            r.run.attempt == lease.attempt && r.lease_until.is_some_and(|until| until > now)
        })
}

/// The fence of an attempt, settling it: records its end if its lease still holds, with
/// an undo step (the execution's effects may still be refused after it).
pub(super) fn settle_run(
    tx: &mut MemoryTx<'_>,
    lease: &super::RunLease,
    now: DateTime<Utc>,
    end: &AttemptEnd,
) -> bool {
    if !holds_run(tx, lease, now) {
        return false;
    }
    let table = tx.get::<JobTable>();
    let Some(before) = table.runs.get(&lease.run).cloned() else {
        return false;
    };
    let was_running = table.running.contains(&lease.run);
    table.end_attempt(lease.run, &lease.owner, now, end);
    tx.on_rollback(move |tables| {
        tables.get::<JobTable>().restore_run(before, was_running);
    });
    true
}

pub struct MemoryJobStore {
    db: Arc<MemoryDb>,
}

impl MemoryJobStore {
    pub fn new(db: Arc<MemoryDb>) -> Self {
        Self { db }
    }
}

#[async_trait::async_trait]
impl JobStore for MemoryJobStore {
    async fn create(&self, job: &Job, quota: Quota) -> Result<(), StoreError> {
        let mut tx = Tx::Memory(self.db.begin().await);
        super::insert_job(&mut tx, job, quota).await?;
        tx.commit().await
    }

    async fn get(&self, account: AccountId, id: JobId) -> Result<Job, StoreError> {
        let mut tables = self.db.lock().await;
        tables
            .get::<JobTable>()
            .jobs
            .get_in(account, &id)
            .cloned()
            .ok_or(StoreError::NotFound)
    }

    async fn list(&self, account: AccountId, page: PageRequest) -> Result<Page<Job>, StoreError> {
        let mut tables = self.db.lock().await;
        Ok(tables.get::<JobTable>().jobs.page(account, &page))
    }

    async fn update(
        &self,
        account: AccountId,
        id: JobId,
        change: JobChange<'_>,
    ) -> Result<Job, StoreError> {
        let mut tables = self.db.lock().await;
        let Some(current) = tables.get::<JobTable>().jobs.get_in(account, &id).cloned() else {
            return Err(StoreError::NotFound);
        };
        let job = &change(&current);
        if !tables.exists(Row::Function(job.account_id, job.function_id)) {
            return Err(StoreError::NotFound);
        }
        let table = tables.get::<JobTable>();
        let key = JobTable::name_key(job);
        if table.names.get(&key).is_some_and(|owner| *owner != job.id) {
            return Err(conflict(&job.name));
        }
        table.names.remove(&JobTable::name_key(&current));
        table.names.insert(key, job.id);
        // `last_run` belongs to the scheduler: keep the stored value.
        let saved = Job {
            last_run: current.last_run,
            ..job.clone()
        };
        table.jobs.insert(job.account_id, job.id, saved.clone());
        Ok(saved)
    }

    async fn delete(&self, account: AccountId, id: JobId) -> Result<(), StoreError> {
        let mut tables = self.db.lock().await;
        let table = tables.get::<JobTable>();
        if table.jobs.get_in(account, &id).is_none() {
            return Err(StoreError::NotFound);
        }
        table.remove_job(&id);
        tables.cascade(Row::Job(account, id));
        Ok(())
    }

    async fn list_runs(
        &self,
        account: AccountId,
        job: JobId,
        page: PageRequest,
    ) -> Result<Page<Run>, StoreError> {
        use std::ops::Bound;
        let mut tables = self.db.lock().await;
        let table = tables.get::<JobTable>();
        if table.jobs.get_in(account, &job).is_none() {
            return Err(StoreError::NotFound);
        }
        // Newest first: walk the job's range backwards from the page key.
        let upper = match page.after {
            Some(after) => Bound::Excluded((job, after)),
            None => Bound::Included((job, PageKey::MAX)),
        };
        let rows = table
            .by_job
            .range((Bound::Included((job, PageKey::MIN)), upper))
            .rev()
            .take(page.fetch_limit() as usize)
            .filter_map(|(_, id)| table.runs.get(id).map(|r| r.run.clone()))
            .collect();
        Ok(Page::from_overfetch(rows, &page))
    }
}

#[async_trait::async_trait]
impl SchedulerStore for MemoryJobStore {
    async fn advance_due(
        &self,
        now: DateTime<Utc>,
        limit: i64,
        plan: &Plan,
        claimant: Claimant<'_>,
    ) -> Result<Advanced, StoreError> {
        let mut tables = self.db.lock().await;
        let table = tables.get::<JobTable>();
        let mut due: Vec<(DateTime<Utc>, JobId)> = table
            .jobs
            .values()
            .filter(|j| j.enabled)
            .filter_map(|j| j.next_run.filter(|t| *t <= now).map(|t| (t, j.id)))
            .collect();
        due.sort();
        due.truncate(usize::try_from(limit).unwrap_or(0));
        let mut advanced = Advanced {
            examined: due.len(),
            ..Advanced::default()
        };
        for (scheduled_for, id) in due {
            let Some(job) = table.jobs.get(&id).cloned() else {
                continue;
            };
            let dispatch = plan(&job, table.busy(id));
            let fresh = !table.has_run(id, scheduled_for);
            if fresh {
                let skip = dispatch.start == Start::Skip;
                let claim = !skip && advanced.claimed.len() < claimant.room;
                let run = Run {
                    id: RunId::generate(),
                    job_id: id,
                    scheduled_for,
                    started_at: claim.then_some(now),
                    completed_at: skip.then_some(now),
                    status: if skip {
                        RunStatus::Skipped
                    } else {
                        RunStatus::Running
                    },
                    attempt: i32::from(claim),
                    execution_id: None,
                    error: skip.then(|| "previous run still in progress".to_owned()),
                };
                if claim {
                    advanced.claimed.push(ClaimedRun {
                        run: run.clone(),
                        account_id: job.account_id,
                        function_id: job.function_id,
                        max_attempts: job.max_attempts,
                        job_enabled: true,
                        previous_lease_expired: false,
                    });
                }
                let run_id = run.id;
                table.insert_run(run);
                if claim {
                    if let Some(row) = table.runs.get_mut(&run_id) {
                        row.lease_owner = Some(claimant.owner.to_owned());
                        row.lease_until = Some(claimant.lease_until);
                    }
                }
                if skip {
                    advanced.skipped += 1;
                } else {
                    advanced.started.push((id, scheduled_for));
                }
            }
            if let Some(stored) = table.jobs.get_mut(&id) {
                stored.next_run = dispatch.next_run;
                if fresh {
                    stored.last_run = Some(scheduled_for);
                }
            }
        }
        Ok(advanced)
    }

    async fn next_due(&self) -> Result<super::NextDue, StoreError> {
        let mut tables = self.db.lock().await;
        let table = tables.get::<JobTable>();
        let job = table
            .jobs
            .values()
            .filter(|j| j.enabled)
            .filter_map(|j| j.next_run)
            .min();
        let retry = table
            .running
            .iter()
            .filter_map(|id| table.runs.get(id))
            .filter_map(|r| r.next_attempt_at)
            .min();
        Ok(super::NextDue { job, retry })
    }

    async fn claim_runs(
        &self,
        now: DateTime<Utc>,
        owner: &str,
        lease_until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<ClaimedRun>, StoreError> {
        let mut tables = self.db.lock().await;
        let table = tables.get::<JobTable>();
        // Oldest claimable first: the later of retry time and lease end (none = now), as
        // the PostgreSQL store's claim index orders them.
        let mut ids: Vec<(Option<DateTime<Utc>>, DateTime<Utc>, RunId)> = table
            .running
            .iter()
            .filter_map(|id| table.runs.get(id))
            .filter(|r| {
                r.next_attempt_at.is_none_or(|t| t <= now) && r.lease_until.is_none_or(|t| t < now)
            })
            .map(|r| {
                let claimable = r.next_attempt_at.max(r.lease_until);
                (claimable, r.run.scheduled_for, r.run.id)
            })
            .collect();
        ids.sort();
        ids.truncate(usize::try_from(limit).unwrap_or(0));
        let mut claimed = Vec::new();
        for (_, _, id) in ids {
            let Some(job_id) = table.runs.get(&id).map(|r| r.run.job_id) else {
                continue;
            };
            let Some(job) = table.jobs.get(&job_id).cloned() else {
                continue;
            };
            let Some(row) = table.runs.get_mut(&id) else {
                continue;
            };
            let previous_lease_expired = row.lease_owner.is_some();
            row.lease_owner = Some(owner.to_owned());
            row.lease_until = Some(lease_until);
            // Its retry time has come: an attempt in flight is no retry waiting (else
            // `next_due` would report it due, and every pass would claim again).
            row.next_attempt_at = None;
            row.run.attempt += 1;
            row.run.started_at.get_or_insert(now);
            claimed.push(ClaimedRun {
                run: row.run.clone(),
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
        run: RunId,
        owner: &str,
        lease_until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tables = self.db.lock().await;
        match tables.get::<JobTable>().owned(run, owner) {
            Some(row) => {
                row.lease_until = Some(lease_until);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn finish_attempt(
        &self,
        run: RunId,
        owner: &str,
        now: DateTime<Utc>,
        end: &AttemptEnd,
        event: Option<&Event>,
    ) -> Result<bool, StoreError> {
        let mut tx = Tx::Memory(self.db.begin().await);
        let Tx::Memory(memory) = &mut tx else {
            return Ok(false);
        };
        if memory.get::<JobTable>().owned(run, owner).is_none() {
            return Ok(false);
        }
        // The event first: it is the only step that can fail, and the changes to the run
        // below record no undo step.
        if let Some(event) = event {
            crate::events::insert(&mut tx, event).await?;
        }
        let Tx::Memory(memory) = &mut tx else {
            return Ok(false);
        };
        memory.get::<JobTable>().end_attempt(run, owner, now, end);
        tx.commit().await?;
        Ok(true)
    }

    async fn purge_runs(
        &self,
        finished_before: DateTime<Utc>,
        limit: i64,
    ) -> Result<u64, StoreError> {
        let mut tables = self.db.lock().await;
        let table = tables.get::<JobTable>();
        let mut removed = 0;
        while removed < limit {
            let Some((&(at, run), &job)) = table.finished.first_key_value() else {
                break;
            };
            if at >= finished_before {
                break;
            }
            table.finished.remove(&(at, run));
            if let Some(row) = table.runs.remove(&run) {
                table.by_job.remove(&(job, row.run.page_key()));
            }
            removed += 1;
        }
        Ok(removed as u64)
    }

    async fn release(
        &self,
        run: RunId,
        owner: &str,
        retry_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tables = self.db.lock().await;
        if let Some(row) = tables.get::<JobTable>().owned(run, owner) {
            row.run.attempt -= 1;
            row.lease_owner = None;
            row.lease_until = None;
            row.next_attempt_at = Some(retry_at);
        }
        Ok(())
    }
}
