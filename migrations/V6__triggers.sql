-- Triggers, their firings and the internal event outbox.
--
-- A firing is one stored unit of work (run the trigger's function once). Cron firings are
-- unique per (trigger_id, tick_at), event firings per (trigger_id, event_id), so a second
-- replica inserting the same tick or delivering the same event changes nothing. Firings
-- and events are worked under a lease (lease_owner, lease_until): a dead replica's items
-- come back after the lease. A released firing waits until lease_until with no owner.
CREATE TABLE app_triggers (
    id              UUID PRIMARY KEY,
    account_id      UUID NOT NULL REFERENCES app_accounts (id) ON DELETE CASCADE,
    function_id     UUID NOT NULL REFERENCES app_functions (id) ON DELETE CASCADE,
    type            TEXT NOT NULL CHECK (type IN ('cron', 'event', 'webhook')),
    rule            TEXT NOT NULL DEFAULT '',
    config          JSONB NOT NULL DEFAULT '{}',
    enabled         BOOLEAN NOT NULL,
    next_run        TIMESTAMPTZ,
    last_fired_at   TIMESTAMPTZ,
    -- Webhooks only: the signing secret, encrypted (AAD webhook:v1:<id>).
    webhook_secret  TEXT,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL
);

CREATE INDEX app_triggers_account_created_at_id_idx ON app_triggers (account_id, created_at, id);
-- Due cron scan.
CREATE INDEX app_triggers_next_run_idx ON app_triggers (next_run) WHERE enabled AND type = 'cron';
-- Event delivery: the account's enabled event triggers for one event name.
CREATE INDEX app_triggers_event_rule_idx ON app_triggers (account_id, rule) WHERE enabled AND type = 'event';

CREATE TABLE app_trigger_firings (
    id            UUID PRIMARY KEY,
    trigger_id    UUID NOT NULL REFERENCES app_triggers (id) ON DELETE CASCADE,
    tick_at       TIMESTAMPTZ,
    event_id      UUID,
    params        JSONB NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('pending', 'running', 'succeeded', 'failed', 'skipped')),
    execution_id  UUID,
    error         TEXT,
    lease_owner   TEXT,
    lease_until   TIMESTAMPTZ,
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL,
    UNIQUE (trigger_id, tick_at),
    UNIQUE (trigger_id, event_id)
);

CREATE INDEX app_trigger_firings_due_idx ON app_trigger_firings (created_at) WHERE status IN ('pending', 'running');
-- Retention: finished firings are deleted after a while.
CREATE INDEX app_trigger_firings_finished_idx ON app_trigger_firings (updated_at) WHERE status IN ('succeeded', 'failed', 'skipped');

CREATE TABLE app_events (
    id            UUID PRIMARY KEY,
    account_id    UUID NOT NULL REFERENCES app_accounts (id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    data          JSONB NOT NULL,
    occurred_at   TIMESTAMPTZ NOT NULL,
    delivered_at  TIMESTAMPTZ,
    lease_owner   TEXT,
    lease_until   TIMESTAMPTZ,
    created_at    TIMESTAMPTZ NOT NULL
);

CREATE INDEX app_events_undelivered_idx ON app_events (occurred_at) WHERE delivered_at IS NULL;
CREATE INDEX app_events_delivered_idx ON app_events (delivered_at) WHERE delivered_at IS NOT NULL;
