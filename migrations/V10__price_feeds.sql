-- Price feeds (CONTRACT.md §2.7, §6). A feed keeps its latest snapshot and the highest
-- round beside its settings, so reading a feed needs no snapshot query and a snapshot's
-- round is taken by one row update (`rounds = rounds + 1 … RETURNING`), which also
-- serialises the snapshots of one feed.
CREATE TABLE app_price_feeds (
    id                    UUID PRIMARY KEY,
    account_id            UUID NOT NULL REFERENCES app_accounts (id) ON DELETE CASCADE,
    base_asset            TEXT NOT NULL,
    quote_asset           TEXT NOT NULL,
    pair                  TEXT NOT NULL,
    update_interval_ms    BIGINT NOT NULL CHECK (update_interval_ms >= 1000),
    heartbeat_interval_ms BIGINT NOT NULL CHECK (heartbeat_interval_ms >= update_interval_ms),
    deviation_percent     DOUBLE PRECISION NOT NULL
                          CHECK (deviation_percent > 0 AND deviation_percent <= 100),
    active                BOOLEAN NOT NULL,
    sources               TEXT[] NOT NULL,
    rounds                BIGINT NOT NULL DEFAULT 0,
    latest_round          BIGINT,
    latest_price          DOUBLE PRECISION,
    latest_at             TIMESTAMPTZ,
    -- When the refresher polls the feed next; NULL while inactive.
    next_refresh_at       TIMESTAMPTZ,
    created_at            TIMESTAMPTZ NOT NULL,
    updated_at            TIMESTAMPTZ NOT NULL,
    UNIQUE (account_id, pair)
);

-- Keyset pagination per account: ORDER BY created_at, id.
CREATE INDEX app_price_feeds_account_created_at_id_idx
    ON app_price_feeds (account_id, created_at, id);
-- The refresher's due feeds.
CREATE INDEX app_price_feeds_due_idx ON app_price_feeds (next_refresh_at) WHERE active;

CREATE TABLE app_price_feed_snapshots (
    id           UUID PRIMARY KEY,
    feed_id      UUID NOT NULL REFERENCES app_price_feeds (id) ON DELETE CASCADE,
    round        BIGINT NOT NULL,
    price        DOUBLE PRECISION NOT NULL CHECK (price > 0),
    source       TEXT NOT NULL,
    collected_at TIMESTAMPTZ NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    UNIQUE (feed_id, round)
);

-- A feed's snapshots newest first (and the cascade from the feed).
CREATE INDEX app_price_feed_snapshots_feed_collected_idx
    ON app_price_feed_snapshots (feed_id, collected_at DESC, id DESC);
