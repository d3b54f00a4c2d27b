-- Oracle data sources and requests (CONTRACT.md §2.8, §3.7, §6).
CREATE TABLE app_oracle_sources (
    id          UUID PRIMARY KEY,
    account_id  UUID NOT NULL REFERENCES app_accounts (id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    description TEXT NOT NULL,
    url         TEXT NOT NULL,
    method      TEXT NOT NULL,
    headers     JSONB NOT NULL,
    body        TEXT NOT NULL,
    enabled     BOOLEAN NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);

CREATE UNIQUE INDEX app_oracle_sources_account_name_idx
    ON app_oracle_sources (account_id, lower(name));
-- Keyset pagination per account: ORDER BY created_at, id.
CREATE INDEX app_oracle_sources_account_created_at_id_idx
    ON app_oracle_sources (account_id, created_at, id);

CREATE TABLE app_oracle_requests (
    id              UUID PRIMARY KEY,
    account_id      UUID NOT NULL REFERENCES app_accounts (id) ON DELETE CASCADE,
    data_source_id  UUID NOT NULL REFERENCES app_oracle_sources (id) ON DELETE CASCADE,
    status          TEXT NOT NULL
                    CHECK (status IN ('pending', 'running', 'succeeded', 'failed')),
    payload         TEXT NOT NULL,
    result          TEXT,
    error           TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    -- When the dispatcher may call the resolver next: the creation time at first, the
    -- lease's end while a call is under way, the retry time after one; NULL once the
    -- request is finished.
    next_attempt_at TIMESTAMPTZ,
    lease_owner     TEXT,
    lease_until     TIMESTAMPTZ,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL,
    completed_at    TIMESTAMPTZ,
    CHECK ((status IN ('succeeded', 'failed')) = (completed_at IS NOT NULL))
);

-- Keyset pagination per account: ORDER BY created_at, id.
CREATE INDEX app_oracle_requests_account_created_at_id_idx
    ON app_oracle_requests (account_id, created_at, id);
-- The dispatcher's due requests.
CREATE INDEX app_oracle_requests_due_idx
    ON app_oracle_requests (next_attempt_at) WHERE status IN ('pending', 'running');
-- The per-account quota of open requests, and the cascade from a source.
CREATE INDEX app_oracle_requests_open_idx
    ON app_oracle_requests (account_id) WHERE status IN ('pending', 'running');
CREATE INDEX app_oracle_requests_source_idx ON app_oracle_requests (data_source_id);
-- Retention: finished requests by age.
CREATE INDEX app_oracle_requests_completed_idx
    ON app_oracle_requests (completed_at) WHERE completed_at IS NOT NULL;
