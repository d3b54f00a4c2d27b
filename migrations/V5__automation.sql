-- Automation jobs and their runs. A run is unique per (job_id, scheduled_for): a second
-- replica inserting the same occurrence changes nothing. Runs are worked under a lease
-- (lease_owner, lease_until) so a dead replica's run is taken over after the lease.
CREATE TABLE app_automation_jobs (
    id              UUID PRIMARY KEY,
    account_id      UUID NOT NULL REFERENCES app_accounts (id) ON DELETE CASCADE,
    function_id     UUID NOT NULL REFERENCES app_functions (id) ON DELETE CASCADE,
    name            TEXT NOT NULL,
    description     TEXT NOT NULL DEFAULT '',
    schedule        TEXT NOT NULL,
    enabled         BOOLEAN NOT NULL,
    overlap_policy  TEXT NOT NULL CHECK (overlap_policy IN ('skip', 'allow')),
    max_attempts    INTEGER NOT NULL CHECK (max_attempts BETWEEN 1 AND 20),
    last_run        TIMESTAMPTZ,
    next_run        TIMESTAMPTZ,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL
);

CREATE UNIQUE INDEX app_automation_jobs_account_lower_name_key ON app_automation_jobs (account_id, lower(name));
CREATE INDEX app_automation_jobs_account_created_at_id_idx ON app_automation_jobs (account_id, created_at, id);
-- Due-job scan.
CREATE INDEX app_automation_jobs_next_run_idx ON app_automation_jobs (next_run) WHERE enabled;

CREATE TABLE app_automation_runs (
    id               UUID PRIMARY KEY,
    job_id           UUID NOT NULL REFERENCES app_automation_jobs (id) ON DELETE CASCADE,
    scheduled_for    TIMESTAMPTZ NOT NULL,
    started_at       TIMESTAMPTZ,
    completed_at     TIMESTAMPTZ,
    status           TEXT NOT NULL CHECK (status IN ('running', 'succeeded', 'failed', 'skipped')),
    attempt          INTEGER NOT NULL DEFAULT 0,
    execution_id     UUID,
    error            TEXT,
    next_attempt_at  TIMESTAMPTZ,
    lease_owner      TEXT,
    lease_until      TIMESTAMPTZ,
    created_at       TIMESTAMPTZ NOT NULL,
    UNIQUE (job_id, scheduled_for)
);

CREATE INDEX app_automation_runs_job_scheduled_idx ON app_automation_runs (job_id, scheduled_for DESC, id DESC);
CREATE INDEX app_automation_runs_due_idx ON app_automation_runs (next_attempt_at) WHERE status = 'running';
