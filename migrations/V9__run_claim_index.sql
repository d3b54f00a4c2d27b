-- Claiming runs (retries, takeovers, runs inserted beyond the room) read the running
-- runs through `app_automation_runs_due_idx` with `next_attempt_at IS NULL OR <= now`.
-- Every first attempt in flight has a NULL `next_attempt_at`, so that condition became a
-- bitmap scan over every run that was running since the last vacuum (90,000 entries and
-- 4 ms per pass after 30 s at 3,000 starts per second), growing with the traffic; a bitmap
-- scan never marks the dead entries it meets, so they stay until autovacuum.
--
-- A run can be claimed from one instant on: when both its retry time and its lease have
-- passed (NULL meaning "no wait"). Indexed by that instant, a claim is one ordered range
-- scan that stops at `now` and skips runs in flight (their lease ends later); a plain
-- index scan marks dead entries as it passes them, so later scans skip them.
CREATE INDEX app_automation_runs_claim_idx ON app_automation_runs
    ((COALESCE(GREATEST(next_attempt_at, lease_until), '-infinity'::timestamptz)), scheduled_for)
    WHERE status = 'running';
