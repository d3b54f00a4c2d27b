-- Account-scoped API tokens. Only the SHA-256 of a token is stored; the value is shown
-- once at creation. Deleting a row revokes the token.
CREATE TABLE app_api_tokens (
    id            UUID PRIMARY KEY,
    account_id    UUID NOT NULL REFERENCES app_accounts (id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    token_prefix  TEXT NOT NULL,
    token_hash    BYTEA NOT NULL UNIQUE,
    expires_at    TIMESTAMPTZ,
    created_at    TIMESTAMPTZ NOT NULL
);

CREATE INDEX app_api_tokens_account_created_at_id_idx ON app_api_tokens (account_id, created_at, id);
