-- Bounded work (quotas, retention): the indexes their queries need.

-- Open firings per trigger: the pending-firings quota counts these (at most the quota).
CREATE INDEX app_trigger_firings_open_per_trigger_idx
    ON app_trigger_firings (trigger_id) WHERE status IN ('pending', 'running');

-- Retention: the oldest executions and finished runs, in deletion order.
CREATE INDEX app_function_executions_started_at_idx ON app_function_executions (started_at);
CREATE INDEX app_automation_runs_completed_at_idx
    ON app_automation_runs (completed_at) WHERE completed_at IS NOT NULL;
