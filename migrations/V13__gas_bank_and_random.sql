-- Gas bank (CONTRACT.md §2.9, §3.8, §6) and signed random (§3.10). Money is BIGINT base
-- units (1 GAS = 10^8).
CREATE TABLE app_gas_accounts (
    id             UUID PRIMARY KEY,
    account_id     UUID NOT NULL UNIQUE REFERENCES app_accounts (id) ON DELETE CASCADE,
    wallet_address TEXT,
    balance        BIGINT NOT NULL,
    available      BIGINT NOT NULL,
    pending        BIGINT NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL,
    -- The sum is computed in BIGINT: a balance past its range cannot be stored either.
    CHECK (available >= 0 AND pending >= 0 AND balance = available + pending)
);

-- Wallets are stored as given and unique across owners whatever their case.
CREATE UNIQUE INDEX app_gas_accounts_wallet_idx
    ON app_gas_accounts (lower(wallet_address)) WHERE wallet_address IS NOT NULL;

CREATE TABLE app_gas_transactions (
    id               UUID PRIMARY KEY,
    gas_account_id   UUID NOT NULL REFERENCES app_gas_accounts (id) ON DELETE CASCADE,
    account_id       UUID NOT NULL REFERENCES app_accounts (id) ON DELETE CASCADE,
    type             TEXT NOT NULL CHECK (type IN ('deposit', 'withdrawal')),
    amount           BIGINT NOT NULL CHECK (amount > 0),
    net_amount       BIGINT NOT NULL CHECK (net_amount >= 0 AND net_amount <= amount),
    status           TEXT NOT NULL CHECK (status IN ('pending', 'completed', 'failed')),
    blockchain_tx_id TEXT,
    from_address     TEXT,
    to_address       TEXT,
    error            TEXT,
    attempts         INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    -- When the settler may call the resolver next: the creation time at first, the
    -- lease's end while a call is under way, the retry time after one; NULL once settled.
    next_attempt_at  TIMESTAMPTZ,
    lease_owner      TEXT,
    lease_until      TIMESTAMPTZ,
    completed_at     TIMESTAMPTZ,
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL,
    CHECK ((status = 'pending') = (completed_at IS NULL)),
    CHECK (type = 'withdrawal' OR (status = 'completed' AND blockchain_tx_id IS NOT NULL))
);

-- A deposit's tx_id credits once, service-wide, whatever its case.
CREATE UNIQUE INDEX app_gas_transactions_deposit_idx
    ON app_gas_transactions (lower(blockchain_tx_id)) WHERE type = 'deposit';
-- The ledger, newest first per account.
CREATE INDEX app_gas_transactions_account_created_at_id_idx
    ON app_gas_transactions (account_id, created_at DESC, id DESC);
-- The settler's due withdrawals.
CREATE INDEX app_gas_transactions_due_idx
    ON app_gas_transactions (next_attempt_at) WHERE status = 'pending';
-- The per-account quota of pending withdrawals.
CREATE INDEX app_gas_transactions_pending_idx
    ON app_gas_transactions (account_id) WHERE status = 'pending';
-- The cascade from a gas account.
CREATE INDEX app_gas_transactions_gas_account_idx ON app_gas_transactions (gas_account_id);

-- Money in flight is never deleted: deleting an account (whose cascade reaches its
-- withdrawals) fails while one is pending, and the service answers 409 invalid_state.
CREATE FUNCTION app_gas_keep_pending() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the account has a pending withdrawal; delete it once the withdrawal is settled'
        USING ERRCODE = 'restrict_violation';
END;
$$;

CREATE TRIGGER app_gas_transactions_keep_pending
    BEFORE DELETE ON app_gas_transactions
    FOR EACH ROW WHEN (OLD.status = 'pending')
    EXECUTE FUNCTION app_gas_keep_pending();

-- Signing keys (the random signer's), encrypted under the secret key ring.
CREATE TABLE app_signing_keys (
    id         UUID PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    key_id     TEXT NOT NULL,
    ciphertext TEXT NOT NULL,
    public_key BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);

-- The signed random counter: increasing and unique across replicas.
CREATE SEQUENCE app_random_counter AS BIGINT MINVALUE 1;
