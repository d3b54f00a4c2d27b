-- Retention of price feed snapshots (`SNAPSHOT_RETENTION`): the oldest first, across
-- feeds, without reading every feed's history.
CREATE INDEX app_price_feed_snapshots_collected_at_idx
    ON app_price_feed_snapshots (collected_at);
