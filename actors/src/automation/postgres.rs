//! PostgreSQL [`JobStore`] and scheduler store: `app_automation_jobs` and
//! `app_automation_runs`, cascading from the account and the function.

use super::{Job, JobChange, JobStore, OverlapPolicy, Run, RunStatus, Start};
use crate::error::StoreError;
use crate::ids::{AccountId, ExecutionId, FunctionId, JobId, RunId};
use crate::page::{Page, PageRequest};
use crate::quota::Quota;
use deadpool_postgres::Pool;
use tokio_postgres::error::SqlState;
use tokio_postgres::Row;
use uuid::Uuid;

const JOB: &str =
    "id, account_id, function_id, name, description, schedule, enabled, overlap_policy, \
                   max_attempts, last_run, next_run, created_at, updated_at";
const RUN: &str =
    "id, job_id, scheduled_for, started_at, completed_at, status, attempt, execution_id, error";

pub struct PgJobStore {
    pool: Pool,
}

impl PgJobStore {
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }
}

fn job_from(row: &Row) -> Result<Job, StoreError> {
    Ok(Job {
        id: JobId::from(row.try_get::<_, Uuid>("id")?),
        account_id: AccountId::from(row.try_get::<_, Uuid>("account_id")?),
        function_id: FunctionId::from(row.try_get::<_, Uuid>("function_id")?),
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        schedule: {
            let text: &str = row.try_get("schedule")?;
            crate::schedule::Schedule::parse(text).map_err(|e| {
                StoreError::internal(anyhow::anyhow!("stored schedule {text:?}: {e}"))
            })?
        },
        enabled: row.try_get("enabled")?,
        overlap_policy: OverlapPolicy::parse(row.try_get("overlap_policy")?)
            .unwrap_or(OverlapPolicy::Skip),
        max_attempts: row.try_get("max_attempts")?,
        last_run: row.try_get("last_run")?,
        next_run: row.try_get("next_run")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn run_from(row: &Row) -> Result<Run, StoreError> {
    Ok(Run {
        id: RunId::from(row.try_get::<_, Uuid>("id")?),
        job_id: JobId::from(row.try_get::<_, Uuid>("job_id")?),
        scheduled_for: row.try_get("scheduled_for")?,
        started_at: row.try_get("started_at")?,
        completed_at: row.try_get("completed_at")?,
        status: RunStatus::parse(row.try_get("status")?),
        attempt: row.try_get("attempt")?,
        execution_id: row
            .try_get::<_, Option<Uuid>>("execution_id")?
            .map(ExecutionId::from),
        error: row.try_get("error")?,
    })
}

/// Maps the job table's constraint errors.
fn write_error(e: tokio_postgres::Error, name: &str) -> StoreError {
    match e.code() {
        Some(c) if *c == SqlState::UNIQUE_VIOLATION => {
            StoreError::Conflict(format!("job \"{name}\" already exists"))
        }
        Some(c) if *c == SqlState::FOREIGN_KEY_VIOLATION => StoreError::NotFound,
        _ => e.into(),
    }
}

/// Records an attempt's end and clears its lease, if `owner` holds it (for `attempt`,
/// with an unexpired lease, when fencing); whether it did.
async fn end_attempt(
    db: &impl deadpool_postgres::GenericClient,
    run: RunId,
    owner: &str,
    fence: Option<i32>,
    now: chrono::DateTime<chrono::Utc>,
    end: &super::AttemptEnd,
) -> Result<bool, StoreError> {
    let (status, execution_id, error, retry_at) = match end {
        super::AttemptEnd::Succeeded { execution_id } => {
            ("succeeded", Some(*execution_id.as_uuid()), None, None)
        }
        super::AttemptEnd::Failed {
            execution_id,
            error,
            retry_at,
        } => (
            if retry_at.is_some() {
                "running"
            } else {
                "failed"
            },
            execution_id.map(|e| *e.as_uuid()),
            Some(error.as_str()),
            *retry_at,
        ),
    };
    let stmt = db
        .prepare_cached(
            "UPDATE app_automation_runs
             SET status = $3, execution_id = COALESCE($4, execution_id), error = $5, next_attempt_at = $6,
                 completed_at = CASE WHEN $3 = 'running' THEN NULL ELSE $7::timestamptz END,
                 lease_owner = NULL, lease_until = NULL
             WHERE id = $1 AND lease_owner = $2
               AND ($8::int IS NULL OR (attempt = $8 AND lease_until > $7))",
        )
        .await?;
    let n = db
        .execute(
            &stmt,
            &[
                run.as_uuid(),
                &owner,
                &status,
                &execution_id,
                &error,
                &retry_at,
                &now,
                &fence,
            ],
        )
        .await?;
    Ok(n == 1)
}

/// The fence of an attempt, settling it: records its end if its lease still holds.
pub(super) async fn settle_run(
    db: &impl deadpool_postgres::GenericClient,
    lease: &super::RunLease,
    now: chrono::DateTime<chrono::Utc>,
    end: &super::AttemptEnd,
) -> Result<bool, StoreError> {
    end_attempt(db, lease.run, &lease.owner, Some(lease.attempt), now, end).await
}

/// The channel every replica's scheduler listens on (`store::notify`).
pub const JOBS_CHANNEL: &str = "app_automation_jobs";

/// Tells every replica's scheduler that jobs changed; sent when the caller's transaction
/// commits (at once outside one).
async fn notify_jobs(db: &impl deadpool_postgres::GenericClient) -> Result<(), StoreError> {
    crate::store::notify::send(db, JOBS_CHANNEL).await
}

/// Inserts a job, in the caller's transaction when it has one (Devpack actions):
/// `Conflict` on a duplicate name, `NotFound` if the account or function is gone.
pub(super) async fn insert_job(
    db: &impl deadpool_postgres::GenericClient,
    j: &Job,
    quota: Quota,
) -> Result<(), StoreError> {
    crate::quota::check_pg(
        db,
        quota,
        j.account_id.as_uuid(),
        "SELECT count(*) FROM (SELECT 1 FROM app_automation_jobs WHERE account_id = $1 LIMIT $2) held",
        "jobs",
    )
    .await?;
    db.execute(
        &format!("INSERT INTO app_automation_jobs ({JOB}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13)"),
        &[
            j.id.as_uuid(),
            j.account_id.as_uuid(),
            j.function_id.as_uuid(),
            &j.name,
            &j.description,
            &j.schedule.to_string(),
            &j.enabled,
            &j.overlap_policy.as_str(),
            &j.max_attempts,
            &j.last_run,
            &j.next_run,
            &j.created_at,
            &j.updated_at,
        ],
    )
    .await
    .map_err(|e| write_error(e, &j.name))?;
    notify_jobs(db).await
}

/// Whether the lease of `lease`'s attempt still holds at `now`; the row stays locked until the
/// caller's transaction ends, so no renewal or takeover slips in before it commits.
pub(super) async fn holds_run(
    db: &impl deadpool_postgres::GenericClient,
    lease: &super::RunLease,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<bool, StoreError> {
    let owner: &str = &lease.owner;
    Ok(db
        .query_opt(
            "SELECT 1 FROM app_automation_runs
             WHERE id = $1 AND lease_owner = $2 AND attempt = $3 AND lease_until > $4
             FOR UPDATE",
            &[lease.run.as_uuid(), &owner, &lease.attempt, &now],
        )
        .await?
        .is_some())
}

#[async_trait::async_trait]
impl JobStore for PgJobStore {
    async fn create(&self, j: &Job, quota: Quota) -> Result<(), StoreError> {
        let mut client = self.pool.get().await?;
        // A transaction: the quota's lock is held until the insert commits.
        let tx = client.transaction().await?;
        insert_job(&tx, j, quota).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn get(&self, account: AccountId, id: JobId) -> Result<Job, StoreError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                &format!("SELECT {JOB} FROM app_automation_jobs WHERE id = $1 AND account_id = $2"),
                &[id.as_uuid(), account.as_uuid()],
            )
            .await?;
        row.as_ref().map(job_from).ok_or(StoreError::NotFound)?
    }

    async fn list(&self, account: AccountId, page: PageRequest) -> Result<Page<Job>, StoreError> {
        crate::store::postgres::account_page(
            &self.pool,
            JOB,
            "app_automation_jobs",
            account,
            &page,
            job_from,
        )
        .await
    }

    async fn update(
        &self,
        account: AccountId,
        id: JobId,
        change: JobChange<'_>,
    ) -> Result<Job, StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let current = crate::store::postgres::locked_account_row(
            &tx,
            JOB,
            "app_automation_jobs",
            account,
            id.as_uuid(),
        )
        .await?;
        let j = &change(&job_from(&current)?);
        let row = tx
            .query_opt(
                &format!(
                    "UPDATE app_automation_jobs SET function_id = $3, name = $4, description = $5, schedule = $6,
                         enabled = $7, overlap_policy = $8, max_attempts = $9, next_run = $10, updated_at = $11
                     WHERE id = $1 AND account_id = $2
                     RETURNING {JOB}"
                ),
                &[
                    j.id.as_uuid(),
                    j.account_id.as_uuid(),
                    j.function_id.as_uuid(),
                    &j.name,
                    &j.description,
                    &j.schedule.to_string(),
                    &j.enabled,
                    &j.overlap_policy.as_str(),
                    &j.max_attempts,
                    &j.next_run,
                    &j.updated_at,
                ],
            )
            .await
            .map_err(|e| write_error(e, &j.name))?;
        let job = row.as_ref().map(job_from).ok_or(StoreError::NotFound)??;
        notify_jobs(&tx).await?;
        tx.commit().await?;
        Ok(job)
    }

    async fn delete(&self, account: AccountId, id: JobId) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        let n = client
            .execute(
                "DELETE FROM app_automation_jobs WHERE id = $1 AND account_id = $2",
                &[id.as_uuid(), account.as_uuid()],
            )
            .await?;
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn list_runs(
        &self,
        account: AccountId,
        job: JobId,
        page: PageRequest,
    ) -> Result<Page<Run>, StoreError> {
        let client = self.pool.get().await?;
        let owned = client
            .query_opt(
                "SELECT 1 FROM app_automation_jobs WHERE id = $1 AND account_id = $2",
                &[job.as_uuid(), account.as_uuid()],
            )
            .await?;
        if owned.is_none() {
            return Err(StoreError::NotFound);
        }
        let rows = client
            .query(
                &format!(
                    "SELECT {RUN} FROM app_automation_runs
                     WHERE job_id = $1 AND ($2::timestamptz IS NULL OR (scheduled_for, id) < ($2, $3::uuid))
                     ORDER BY scheduled_for DESC, id DESC LIMIT $4"
                ),
                &[job.as_uuid(), &page.after.map(|k| k.at), &page.after.map(|k| k.id), &page.fetch_limit()],
            )
            .await?;
        let items = rows.iter().map(run_from).collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_overfetch(items, &page))
    }
}

#[async_trait::async_trait]
impl super::SchedulerStore for PgJobStore {
    async fn purge_runs(
        &self,
        finished_before: chrono::DateTime<chrono::Utc>,
        limit: i64,
    ) -> Result<u64, StoreError> {
        let client = self.pool.get().await?;
        Ok(client
            .execute(
                "DELETE FROM app_automation_runs WHERE id IN (
                     SELECT id FROM app_automation_runs
                     WHERE completed_at IS NOT NULL AND completed_at < $1
                     ORDER BY completed_at LIMIT $2)",
                &[&finished_before, &limit],
            )
            .await?)
    }

    /// One batch in four statements, whatever its size: the due jobs (locked, skipping
    /// rows another replica holds), which of them have a run in progress, the runs
    /// inserted from arrays (the first `claimant.room` to start under its lease), and
    /// every `next_run` moved from arrays. The plans (cron and overlap rules) are
    /// computed in between, in Rust, from the parsed schedules.
    async fn advance_due(
        &self,
        now: chrono::DateTime<chrono::Utc>,
        limit: i64,
        plan: &super::Plan,
        claimant: super::Claimant<'_>,
    ) -> Result<super::Advanced, StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let select = tx
            .prepare_cached(&format!(
                "SELECT {JOB} FROM app_automation_jobs
                 WHERE enabled AND next_run <= $1
                 ORDER BY next_run LIMIT $2
                 FOR UPDATE SKIP LOCKED"
            ))
            .await?;
        let due = tx.query(&select, &[&now, &limit]).await?;
        let mut advanced = super::Advanced {
            examined: due.len(),
            ..super::Advanced::default()
        };
        if due.is_empty() {
            return Ok(advanced);
        }
        let mut jobs = Vec::with_capacity(due.len());
        for row in &due {
            match job_from(row) {
                Ok(job) => jobs.push(job),
                // A row this build cannot read (edited by hand, or a stricter parser) must
                // not stop every other job: it is parked, and said so.
                Err(e) => {
                    let id: Uuid = row.try_get("id")?;
                    tracing::error!(job_id = %id, error = ?e, "unreadable job parked (next_run cleared)");
                    tx.execute(
                        "UPDATE app_automation_jobs SET next_run = NULL WHERE id = $1",
                        &[&id],
                    )
                    .await?;
                }
            }
        }
        let ids: Vec<Uuid> = jobs.iter().map(|j| *j.id.as_uuid()).collect();
        let busy_stmt = tx
            .prepare_cached(
                "SELECT DISTINCT job_id FROM app_automation_runs
                 WHERE job_id = ANY($1) AND status = 'running'",
            )
            .await?;
        let busy: std::collections::HashSet<Uuid> = tx
            .query(&busy_stmt, &[&ids])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        // The runs to insert and the `next_run` of every job, as parallel arrays.
        let (mut run_ids, mut run_jobs, mut run_at, mut run_status) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut run_done, mut run_error, mut run_claimed) = (Vec::new(), Vec::new(), Vec::new());
        let mut next_runs: Vec<Option<chrono::DateTime<chrono::Utc>>> = Vec::new();
        let mut skipped_jobs = std::collections::HashSet::new();
        let mut room = claimant.room;
        for job in &jobs {
            let Some(scheduled_for) = job.next_run else {
                next_runs.push(None);
                continue;
            };
            let dispatch = plan(job, busy.contains(job.id.as_uuid()));
            let skip = dispatch.start == Start::Skip;
            if skip {
                skipped_jobs.insert(*job.id.as_uuid());
            }
            run_ids.push(Uuid::new_v4());
            run_jobs.push(*job.id.as_uuid());
            run_at.push(scheduled_for);
            run_status.push(if skip { "skipped" } else { "running" });
            run_done.push(skip.then_some(now));
            run_error.push(skip.then_some("previous run still in progress"));
            let claim = !skip && room > 0;
            room -= usize::from(claim);
            run_claimed.push(claim);
            next_runs.push(dispatch.next_run);
        }
        let insert = tx
            .prepare_cached(
                "INSERT INTO app_automation_runs
                     (id, job_id, scheduled_for, status, attempt, completed_at, error, created_at,
                      started_at, lease_owner, lease_until)
                 SELECT id, job_id, at, status, claimed::int, done, error, $7::timestamptz,
                        CASE WHEN claimed THEN $7::timestamptz END, CASE WHEN claimed THEN $9::text END,
                        CASE WHEN claimed THEN $10::timestamptz END
                 FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[], $4::text[],
                             $5::timestamptz[], $6::text[], $8::bool[])
                      AS r(id, job_id, at, status, done, error, claimed)
                 ON CONFLICT (job_id, scheduled_for) DO NOTHING
                 RETURNING id, job_id, scheduled_for, attempt",
            )
            .await?;
        let inserted = tx
            .query(
                &insert,
                &[
                    &run_ids,
                    &run_jobs,
                    &run_at,
                    &run_status,
                    &run_done,
                    &run_error,
                    &now,
                    &run_claimed,
                    &claimant.owner,
                    &claimant.lease_until,
                ],
            )
            .await?;
        let by_id: std::collections::HashMap<Uuid, &Job> =
            jobs.iter().map(|j| (*j.id.as_uuid(), j)).collect();
        let mut fresh = std::collections::HashSet::new();
        for row in &inserted {
            let job: Uuid = row.get("job_id");
            let scheduled_for: chrono::DateTime<chrono::Utc> = row.get("scheduled_for");
            fresh.insert(job);
            if let (1, Some(j)) = (row.get::<_, i32>("attempt"), by_id.get(&job)) {
                advanced.claimed.push(super::ClaimedRun {
                    run: Run {
                        id: RunId::from(row.get::<_, Uuid>("id")),
                        job_id: j.id,
                        scheduled_for,
                        started_at: Some(now),
                        completed_at: None,
                        status: RunStatus::Running,
                        attempt: 1,
                        execution_id: None,
                        error: None,
                    },
                    account_id: j.account_id,
                    function_id: j.function_id,
                    max_attempts: j.max_attempts,
                    job_enabled: true,
                    previous_lease_expired: false,
                });
            }
            if skipped_jobs.contains(&job) {
                advanced.skipped += 1;
            } else {
                advanced.started.push((JobId::from(job), scheduled_for));
            }
        }
        let inserted_flags: Vec<bool> = jobs
            .iter()
            .map(|j| fresh.contains(j.id.as_uuid()))
            .collect();
        let scheduled: Vec<Option<chrono::DateTime<chrono::Utc>>> =
            jobs.iter().map(|j| j.next_run).collect();
        let update = tx
            .prepare_cached(
                "UPDATE app_automation_jobs j
                 SET next_run = u.next_run,
                     last_run = CASE WHEN u.inserted THEN u.scheduled_for ELSE j.last_run END
                 FROM unnest($1::uuid[], $2::timestamptz[], $3::timestamptz[], $4::bool[])
                      AS u(id, next_run, scheduled_for, inserted)
                 WHERE j.id = u.id",
            )
            .await?;
        tx.execute(&update, &[&ids, &next_runs, &scheduled, &inserted_flags])
            .await?;
        tx.commit().await?;
        Ok(advanced)
    }

    async fn next_due(&self) -> Result<super::NextDue, StoreError> {
        let client = self.pool.get().await?;
        // Both through partial indexes: jobs by `next_run` where enabled, runs by
        // `next_attempt_at` where running.
        let stmt = client
            .prepare_cached(
                "SELECT (SELECT min(next_run) FROM app_automation_jobs WHERE enabled),
                        (SELECT min(next_attempt_at) FROM app_automation_runs WHERE status = 'running')",
            )
            .await?;
        let row = client.query_one(&stmt, &[]).await?;
        Ok(super::NextDue {
            job: row.try_get(0)?,
            retry: row.try_get(1)?,
        })
    }

    async fn claim_runs(
        &self,
        now: chrono::DateTime<chrono::Utc>,
        owner: &str,
        lease_until: chrono::DateTime<chrono::Utc>,
        limit: i64,
    ) -> Result<Vec<super::ClaimedRun>, StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        // The claim index's range `<= now` also holds the entries of runs finished or
        // claimed since the last vacuum (their old lease end or retry time). A plain
        // index scan marks those it finds dead, so the next claim skips them; the bitmap
        // scan the planner prefers for the few live rows it expects would read them all
        // again every time (measured: 80,000 entries and 15 ms per claim after 80 s at
        // 3,000 starts per second, against 2 ms).
        tx.batch_execute("SET LOCAL enable_bitmapscan = off")
            .await?;
        // One statement: pick free due runs (skipping rows another replica is claiming),
        // take the lease and count the attempt. `old.lease_owner` tells whether a previous
        // holder's lease ran out mid-attempt. Oldest claimable first (the later of retry
        // time and lease end), read through `app_automation_runs_claim_idx` (V9). The retry
        // time is cleared: an attempt in flight is no retry waiting (else `next_due` would
        // report it due, and every pass would claim again until it ends).
        let stmt = tx
            .prepare_cached(
                "WITH picked AS (
                     SELECT r.id, r.lease_owner AS previous_owner
                     FROM app_automation_runs r
                     WHERE r.status = 'running'
                       AND COALESCE(GREATEST(r.next_attempt_at, r.lease_until), '-infinity'::timestamptz) <= $1
                       AND (r.next_attempt_at IS NULL OR r.next_attempt_at <= $1)
                       AND (r.lease_until IS NULL OR r.lease_until < $1)
                     ORDER BY COALESCE(GREATEST(r.next_attempt_at, r.lease_until), '-infinity'::timestamptz),
                              r.scheduled_for
                     LIMIT $4
                     FOR UPDATE SKIP LOCKED
                 )
                 UPDATE app_automation_runs r
                 SET lease_owner = $2, lease_until = $3, attempt = r.attempt + 1, next_attempt_at = NULL,
                     started_at = COALESCE(r.started_at, $1)
                 FROM picked, app_automation_jobs j
                 WHERE r.id = picked.id AND j.id = r.job_id
                 RETURNING r.id, r.job_id, r.scheduled_for, r.started_at, r.completed_at, r.status, r.attempt,
                           r.execution_id, r.error, picked.previous_owner, j.account_id, j.function_id,
                           j.max_attempts, j.enabled",
            )
            .await?;
        let rows = tx
            .query(&stmt, &[&now, &owner, &lease_until, &limit])
            .await?;
        tx.commit().await?;
        rows.iter()
            .map(|row| {
                Ok(super::ClaimedRun {
                    run: run_from(row)?,
                    account_id: AccountId::from(row.try_get::<_, Uuid>("account_id")?),
                    function_id: FunctionId::from(row.try_get::<_, Uuid>("function_id")?),
                    max_attempts: row.try_get("max_attempts")?,
                    job_enabled: row.try_get("enabled")?,
                    previous_lease_expired: row
                        .try_get::<_, Option<String>>("previous_owner")?
                        .is_some(),
                })
            })
            .collect()
    }

    async fn renew(
        &self,
        run: RunId,
        owner: &str,
        lease_until: chrono::DateTime<chrono::Utc>,
    ) -> Result<bool, StoreError> {
        let client = self.pool.get().await?;
        let n = client
            .execute(
                "UPDATE app_automation_runs SET lease_until = $3 WHERE id = $1 AND lease_owner = $2",
                &[run.as_uuid(), &owner, &lease_until],
            )
            .await?;
        Ok(n == 1)
    }

    async fn finish_attempt(
        &self,
        run: RunId,
        owner: &str,
        now: chrono::DateTime<chrono::Utc>,
        end: &super::AttemptEnd,
        event: Option<&crate::events::Event>,
    ) -> Result<bool, StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let n = end_attempt(&tx, run, owner, None, now, end).await?;
        let mut tx = crate::store::Tx::Postgres(tx);
        if n {
            if let Some(event) = event {
                crate::events::insert(&mut tx, event).await?;
            }
        }
        tx.commit().await?;
        Ok(n)
    }

    async fn release(
        &self,
        run: RunId,
        owner: &str,
        retry_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        client
            .execute(
                "UPDATE app_automation_runs
                 SET attempt = attempt - 1, next_attempt_at = $3, lease_owner = NULL, lease_until = NULL
                 WHERE id = $1 AND lease_owner = $2",
                &[run.as_uuid(), &owner, &retry_at],
            )
            .await?;
        Ok(())
    }
}
