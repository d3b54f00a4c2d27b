-- The scheduler's hot path: every job start inserts a run and an execution and settles
-- the run. Each index and foreign key below was paid on every one of those writes.

-- An execution's account is its function's account, and deleting an account deletes its
-- functions, which delete their executions: this foreign key only repeated that cascade,
-- while every insert locked the account row (FOR KEY SHARE, shared by every concurrent
-- execution of the account) and updated an index no query reads.
ALTER TABLE app_function_executions DROP CONSTRAINT app_function_executions_account_id_fkey;
DROP INDEX app_function_executions_account_idx;

-- The unique (job_id, scheduled_for) index already serves the run history newest first
-- (one run per job and instant, so `id` never breaks a tie).
DROP INDEX app_automation_runs_job_scheduled_idx;

-- Which jobs of a batch have a run in progress (the overlap rule): only open runs, so the
-- check reads one entry per job instead of every open run of every job.
CREATE INDEX app_automation_runs_open_per_job_idx
    ON app_automation_runs (job_id) WHERE status = 'running';
