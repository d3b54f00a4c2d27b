-- Tenants. Every other table references app_accounts(id) ON DELETE CASCADE, so deleting
-- an account removes everything under it in one statement.
CREATE TABLE app_accounts (
    id          UUID PRIMARY KEY,
    owner       TEXT NOT NULL,
    metadata    JSONB NOT NULL DEFAULT '{}'::jsonb,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);

-- Keyset pagination: ORDER BY created_at, id.
CREATE INDEX app_accounts_created_at_id_idx ON app_accounts (created_at, id);
