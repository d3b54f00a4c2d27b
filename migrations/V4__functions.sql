-- User functions and their executions. Limits are NULL when the service default applies.
CREATE TABLE app_functions (
    id                  UUID PRIMARY KEY,
    account_id          UUID NOT NULL REFERENCES app_accounts (id) ON DELETE CASCADE,
    name                TEXT NOT NULL,
    description         TEXT NOT NULL DEFAULT '',
    source              TEXT NOT NULL,
    secrets             JSONB NOT NULL DEFAULT '[]'::jsonb,
    timeout_ms          BIGINT,
    memory_mib          BIGINT,
    output_limit_bytes  BIGINT,
    version             BIGINT NOT NULL,
    created_at          TIMESTAMPTZ NOT NULL,
    updated_at          TIMESTAMPTZ NOT NULL
);

CREATE INDEX app_functions_account_created_at_id_idx ON app_functions (account_id, created_at, id);

CREATE TABLE app_function_executions (
    id            UUID PRIMARY KEY,
    account_id    UUID NOT NULL REFERENCES app_accounts (id) ON DELETE CASCADE,
    function_id   UUID NOT NULL REFERENCES app_functions (id) ON DELETE CASCADE,
    status        TEXT NOT NULL CHECK (status IN ('succeeded', 'failed')),
    input         JSONB NOT NULL,
    output        JSONB NOT NULL,
    logs          JSONB NOT NULL DEFAULT '[]'::jsonb,
    error         TEXT,
    error_code    TEXT,
    actions       JSONB NOT NULL DEFAULT '[]'::jsonb,
    started_at    TIMESTAMPTZ NOT NULL,
    completed_at  TIMESTAMPTZ NOT NULL,
    duration_ms   BIGINT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL
);

-- Newest first per function (the executions list).
CREATE INDEX app_function_executions_function_started_idx
    ON app_function_executions (function_id, started_at DESC, id DESC);
CREATE INDEX app_function_executions_account_idx ON app_function_executions (account_id);
