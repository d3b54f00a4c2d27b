-- Secrets: metadata (version = the current version) and every sealed version. Values are
-- stored only as ciphertext in the v1 format of actors/src/crypto.rs, bound by associated
-- data to (account, lower-case name, version).
CREATE TABLE app_secrets (
    id          UUID PRIMARY KEY,
    account_id  UUID NOT NULL REFERENCES app_accounts (id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    version     BIGINT NOT NULL CHECK (version >= 1),
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);

-- Names are unique per account case-insensitively and looked up the same way.
CREATE UNIQUE INDEX app_secrets_account_lower_name_key ON app_secrets (account_id, lower(name));
CREATE INDEX app_secrets_account_created_at_id_idx ON app_secrets (account_id, created_at, id);

CREATE TABLE app_secret_versions (
    id          UUID PRIMARY KEY,
    secret_id   UUID NOT NULL REFERENCES app_secrets (id) ON DELETE CASCADE,
    version     BIGINT NOT NULL,
    key_id      TEXT NOT NULL,
    ciphertext  TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    UNIQUE (secret_id, version)
);

-- Rotation: find versions not yet under the current key.
CREATE INDEX app_secret_versions_key_id_idx ON app_secret_versions (key_id);
